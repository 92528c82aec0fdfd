"""The layout's rules (shared/DESIGN.md, "Layout"): which package may import which, no import circles, stage two
never loads stage one, ``import litcache`` is lazy, and zarr's private API stays behind one door."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "litcache"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The litcache modules ``path`` imports anywhere (functions included, ``if TYPE_CHECKING:`` blocks not)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("litcache"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("litcache"):
            for a in node.names:  # `from pkg import sub` imports the submodule, `from mod import name` the module
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in LIBRARY.rglob("*.py")}
    return {name: imports_of(path, set(files)) & set(files) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_library_has_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# what each package may not import (the arrows of DESIGN.md run one way: cli -> train/extract -> cache, models, data)
FORBIDDEN = {
    # the cache names its teacher's model with the torch-free spec helpers, and knows no other part of models
    "litcache.cache": ("litcache.extract", "litcache.train", "litcache.models", "litcache.data", "litcache.report"),
    "litcache.train": ("litcache.extract", "litcache.report", "litcache.recipe"),
    "litcache.extract": ("litcache.train", "litcache.report", "litcache.recipe"),
    "litcache.models": ("litcache.cache", "litcache.extract", "litcache.train", "litcache.data", "litcache.report"),
    "litcache.data": ("litcache.cache", "litcache.extract", "litcache.train", "litcache.models", "litcache.report"),
    "litcache.config": ("litcache.cache", "litcache.extract", "litcache.train", "litcache.data", "litcache.report"),
}

ALLOWED = {"litcache.cache": ("litcache.models.specs",)}


def test_imports_run_one_way() -> None:
    broken = []
    for module, imported in import_graph().items():
        for package, forbidden in FORBIDDEN.items():
            if module == package or module.startswith(package + "."):
                allowed = ALLOWED.get(package, ())
                broken += [
                    f"{module} imports {m}" for m in sorted(imported) if m.startswith(forbidden) and m not in allowed
                ]
        if module != "litcache.__main__":  # the library never imports the command line
            broken += [f"{module} imports {m}" for m in sorted(imported) if m.startswith("litcache.cli")]
    assert not broken, "\n".join(broken)


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# every entry point of stage two, in one fresh interpreter: none of them may load stage one
STAGE_TWO = "; ".join(
    [
        "import litcache",
        "litcache.CacheDataset, litcache.LitObjective, litcache.build_student, litcache.kd_loss",
        "import litcache.train.stream, litcache.train.dataset, litcache.train.objective",
        "import litcache.train.trainer, litcache.train.supervised",
        "from litcache.cli.main import main",
        "main(['train-sections', '--help'], standalone_mode=False)",
        "main(['kd', '--help'], standalone_mode=False)",
    ]
)


def test_stage_two_never_loads_stage_one() -> None:
    loaded = loaded_after(STAGE_TWO)
    assert "litcache.train.trainer" in loaded and "litcache.cli.train" in loaded  # the probe reached them
    stage_one = [m for m in loaded if m.startswith("litcache.extract")]
    assert not stage_one, f"stage two loaded {stage_one}"


def test_the_stage_check_sees_stage_one_when_it_is_loaded() -> None:
    assert "litcache.extract" in loaded_after("import litcache.extract")  # the package alone: no torch, quick


def test_import_litcache_is_lazy() -> None:
    loaded = loaded_after("import litcache; litcache.__version__")
    assert [m for m in loaded if m.startswith("litcache")] == ["litcache", "litcache._lazy"]
    assert "torch" not in loaded and "zarr" not in loaded


def test_the_cache_package_knows_no_networks() -> None:
    loaded = loaded_after(
        "import litcache.cache.reader, litcache.cache.writer, litcache.cache.verify, litcache.cache.summary"
    )
    assert "torch" not in loaded
    assert not [m for m in loaded if m.startswith(("litcache.train", "litcache.extract", "litcache.data"))]
    assert [m for m in loaded if m.startswith("litcache.models")] == ["litcache.models", "litcache.models.specs"]


def test_zarrs_private_api_is_used_in_one_module() -> None:
    door = LIBRARY / "cache" / "_zarr.py"
    users = []
    for path in LIBRARY.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n.startswith("zarr.core") for n in names) and path != door:
                users.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not users, f"zarr.core is imported outside {door.relative_to(ROOT)}: {users}"


def test_no_file_is_over_the_size_limit() -> None:
    big = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for folder in ("litcache", "cli", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if "work" not in p.relative_to(ROOT).parts  # benchmarks/work holds caches, not code
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not big, f"over {MAX_LINES} lines: {big}"
