"""Every model kind through extract -> train-sections -> kd -> evaluate, at tiny size on the CPU.

torchvision and timm networks, a user's own module by ``module:function``, the CIFAR ResNeXt and the residual
generator, each teacher with random weights (no download), 16 images of the generated 32 px data set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from litcache import build_model, open_cache, save_model
from litcache.config import PipelineConfig, builtin_pipelines, load_pipeline
from litcache.errors import CompatibilityError
from litcache.extract import extract
from litcache.recipe import run_pipeline
from litcache.train.supervised import evaluate_checkpoint
from litcache.train.trainer import train_end_to_end, train_sections

TESTS = Path(__file__).parents[1]  # where user_models.py is
TINY_RUN = (
    "extract.views=2",
    "extract.batch_size=16",
    "store.chunk_mb=0.5",
    "stream.batch_size=8",
    "stream.shuffle_buffer=16",
    "stream.workers=0",
    "train.epochs=1",
    "kd.epochs=1",
    "train.device=cpu",
    "teacher.epochs=1",
    "teacher.batch_size=8",
)

VIT = {"model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4}
PAIRS = {
    "torchvision-resnet50": (
        {"factory": "torchvision.models:resnet50"},
        {"factory": "litcache.models.zoo:torchvision_resnet", "kwargs": {"layers": [1, 1, 1, 1]}},
    ),
    "torchvision-resnext50": (
        {"factory": "torchvision.models:resnext50_32x4d"},
        {
            "factory": "litcache.models.zoo:torchvision_resnet",
            "kwargs": {"layers": [1, 1, 1, 1], "groups": 32, "width_per_group": 4},
        },
    ),
    "timm-vit": (
        {"factory": "timm:create_model", "kwargs": VIT, "sections": ["blocks.0:4", "blocks.4:8", "blocks.8:12"]},
        {
            "factory": "timm:create_model",
            "kwargs": {**VIT, "depth": 6},
            "sections": ["blocks.0:2", "blocks.2:4", "blocks.4:6"],
        },
    ),
    "timm-resnet": (
        {
            "factory": "timm:create_model",
            "kwargs": {"model_name": "resnet34"},
            "sections": ["layer1", "layer2", "layer3", "layer4"],
        },
        {
            "factory": "timm:create_model",
            "kwargs": {"model_name": "resnet18"},
            "sections": ["layer1", "layer2", "layer3", "layer4"],
        },
    ),
    "user-module": (
        {"factory": "user_models:tower", "kwargs": {"blocks": 4}, "sections": ["trunk.0:2", "trunk.2:4"]},
        {"factory": "user_models:tower", "kwargs": {"blocks": 2}, "sections": ["trunk.0", "trunk.1"]},
    ),
    "cifar-resnext": ("resnext20", "resnext11"),
    "generator": ("generator4", "generator2"),
}


@pytest.fixture(autouse=True)
def user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


def pair_cfg(make_cfg: Callable[..., PipelineConfig], teacher: Any, student: Any, *extra: str) -> PipelineConfig:
    return make_cfg(f"teacher.model={json.dumps(teacher)}", f"train.student={json.dumps(student)}", *TINY_RUN, *extra)


def random_teacher(cfg: PipelineConfig, path: Path) -> Path:
    """The teacher with random weights and batch-norm statistics moved off their defaults."""
    torch.manual_seed(0)
    model = build_model(cfg.teacher.model, 10, cfg.data.mean, cfg.data.std).train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))
    save_model(model.eval(), path)
    return path


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.slow) if k.startswith(("timm", "torchvision")) else k for k in PAIRS]
)
def test_every_model_kind_runs_through_lit(kind: str, make_cfg: Callable[..., PipelineConfig], tmp_path: Path) -> None:
    teacher_spec, student_spec = PAIRS[kind]
    cfg = pair_cfg(make_cfg, teacher_spec, student_spec)
    teacher = random_teacher(cfg, tmp_path / "teacher.pt")
    cache = str(tmp_path / "cache.zarr")
    assert extract(cfg, str(teacher), cache, limit=16, show_progress=False)["complete"]
    m = open_cache(cache).manifest
    assert m["teacher"]["sections"] == list(cfg.teacher.model.sections or m["teacher"]["model"]["sections"])
    image = kind == "generator"
    assert m["teacher"]["output"] == ("image" if image else "logits")
    records = train_sections(cfg, cache, tmp_path / "sections", show_progress=False)
    assert all(k in records[-1] for k in (f"ir/s{i}" for i in range(1, len(m["teacher"]["sections"]) + 1)))
    student = tmp_path / "student.pt"
    kd = train_end_to_end(cfg, cache, student, sections_dir=tmp_path / "sections", show_progress=False)
    assert kd[-1]["view"] == 1  # the KD pass reads the view the sections did not
    result = evaluate_checkpoint(student, cfg, limit=8)
    assert result["samples"] == 8
    if image:
        assert result["psnr"] > 0 and -1 <= result["ssim"] <= 1
    else:
        assert 0 <= result["accuracy"] <= 1


@pytest.mark.slow
def test_a_vit_cache_serves_several_students_with_stored_b0(
    make_cfg: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    teacher_spec, six = PAIRS["timm-vit"]
    three = {
        "factory": "timm:create_model",
        "kwargs": {**VIT, "depth": 3},
        "sections": ["blocks.0", "blocks.1", "blocks.2"],
    }
    cfg = pair_cfg(
        make_cfg, teacher_spec, six, "extract.b0=store", f"students=[{json.dumps(six)}, {json.dumps(three)}]"
    )
    teacher = random_teacher(cfg, tmp_path / "teacher.pt")
    results = run_pipeline(cfg, tmp_path / "run", teacher=str(teacher), limit=16, test_limit=8, show_progress=False)
    assert [r["name"] for r in results["models"]] == ["teacher", "lit-student1", "lit-student2"]
    cache = open_cache(str(tmp_path / "run" / "cache.zarr"))
    assert cache.b0_stored and cache.array("boundary/0").shape == (32, 65, 192)  # (tokens, width) rows
    assert [r["params"] for r in results["models"]] == sorted((r["params"] for r in results["models"]), reverse=True)


def test_a_student_with_other_boundaries_is_refused_naming_paths_and_shapes(
    make_cfg: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    teacher_spec, _ = PAIRS["timm-vit"]
    narrow = {
        "factory": "timm:create_model",
        "kwargs": {**VIT, "depth": 3, "embed_dim": 96, "num_heads": 3},
        "sections": ["blocks.0", "blocks.1", "blocks.2"],
    }
    cfg = pair_cfg(make_cfg, teacher_spec, narrow)
    cache = str(tmp_path / "cache.zarr")
    extract(cfg, str(random_teacher(cfg, tmp_path / "t.pt")), cache, limit=16, show_progress=False)
    expected = (
        r"boundary 1 \(output of section 1: the cached teacher 'blocks.0:4', student .* 'blocks.0'\): "
        r"the cached teacher \(65, 192\), student .* \(65, 96\)"
    )
    with pytest.raises(CompatibilityError, match=expected):
        train_sections(cfg, cache, tmp_path / "s", show_progress=False)
    two = {"factory": "timm:create_model", "kwargs": {**VIT, "depth": 2}, "sections": ["blocks.0", "blocks.1"]}
    with pytest.raises(CompatibilityError, match="number of sections: the cached teacher has 3, student .* has 2"):
        train_sections(pair_cfg(make_cfg, teacher_spec, two), cache, tmp_path / "s", show_progress=False)


@pytest.mark.slow
def test_a_plain_state_dict_teacher_extracts_like_its_litcache_checkpoint(
    make_cfg: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    teacher_spec, student_spec = PAIRS["torchvision-resnet50"]
    cfg = pair_cfg(make_cfg, teacher_spec, student_spec)
    ckpt = random_teacher(cfg, tmp_path / "teacher.pt")
    from litcache.models.checkpoint import load_model

    plain = tmp_path / "resnet50.pth"
    torch.save(load_model(ckpt)[0].net.state_dict(), plain)  # what a user of torchvision has
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    extract(cfg, str(ckpt), a, limit=16, show_progress=False)
    extract(cfg, str(plain), b, limit=16, show_progress=False)
    ca, cb = open_cache(a), open_cache(b)
    assert ca.manifest["teacher"]["fingerprint"] == cb.manifest["teacher"]["fingerprint"]
    for name in ca.data_arrays():
        assert (ca.array(name)[:] == cb.array(name)[:]).all(), name


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_pipelines())
def test_every_builtin_pipeline_runs_end_to_end_at_tiny_size(name: str, data_dir: Path, tmp_path: Path) -> None:
    # a ResNet-110 trained for two steps has batch-norm statistics far from its activations, which then overflow
    # float16 (a clean error, tested in test_extract): float32 keeps the point here, every pipeline's flow
    overrides = [f"data.source={json.dumps(str(data_dir))}", *TINY_RUN, "store.dtype=float32"]
    cfg = load_pipeline(name, overrides)
    results = run_pipeline(cfg, tmp_path, limit=16, test_limit=8, baselines=True, show_progress=False)
    names = [r["name"] for r in results["models"]]
    assert (
        names[0] == "teacher"
        and any(n.startswith("lit-") for n in names)
        and any(n.startswith("scratch-") for n in names)
    )
    assert open_cache(str(tmp_path / "cache.zarr")).complete


def test_the_readmes_bring_your_own_model_example_runs(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's factory file, pipeline and commands, as written (tiny sizes added with --set)."""
    import re

    import yaml
    from click.testing import CliRunner

    from litcache.cli.main import main

    readme = (TESTS.parent / "README.md").read_text().split("### Bring your own model", 1)[1]
    code, pipeline, commands = re.findall(r"```(?:python|yaml|bash)\n(.*?)```", readme, re.S)[:3]
    (tmp_path / "my_models.py").write_text(code)
    (tmp_path / "my-pipeline.yaml").write_text(pipeline)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = yaml.safe_load(pipeline)["teacher"]["model"]
    from my_models import tower  # type: ignore[import-not-found]

    torch.save(tower(**spec["kwargs"]).state_dict(), tmp_path / "tower8.pth")  # a user's plain state dict
    tiny = [a for item in TINY_RUN for a in ("--set", item)]
    for line in commands.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("litcache "):
            continue
        args = line.split()[1:]
        args = [str(data_dir) if a == "../shared/data/cifar10" else a for a in args]
        limit = ["--limit", "16"] if args[0] in ("extract", "evaluate") else []
        result = CliRunner().invoke(main, [*args, *limit, *tiny, *(["-q"] if args[0] != "evaluate" else [])])
        assert result.exit_code == 0, (line, result.output)
    assert "top-1" in result.output  # the last command evaluates the student
