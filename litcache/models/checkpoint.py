"""Model checkpoints that record how to rebuild their model and load without unpickling code.

A litcache checkpoint is a plain dict of strings, numbers, lists and tensors written with ``torch.save`` and read
with ``torch.load(..., weights_only=True)``, so a checkpoint from anywhere cannot run code; the model factory it
names is imported only when it is litcache's, torchvision's or timm's, or the user's pipeline names it too.
A file whose pickles import anything else is refused as code, named by what it imports (:mod:`.pickles`), whatever
torch's wording. A teacher may also be a plain ``state_dict`` file (``.pt``/``.pth``/``.safetensors``) of the
pipeline's ``teacher.model``. Checkpoints are written whole or not at all (:mod:`litcache.outputs`), and record
the command that wrote them (``meta.command``), which is what makes a checkpoint a command's own output.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from litcache.errors import CheckpointError, CompatibilityError, ConfigError, UnsafeCheckpointError
from litcache.models.pickles import SAFE_GLOBALS, code_globals, holds_code_message, torch_free_safe
from litcache.models.registry import build_model, check_trusted
from litcache.models.sections import SectionedModel, state_mismatches
from litcache.models.specs import builtin, describe, resolve_spec
from litcache.outputs import write_bytes

FORMAT = "litcache-model"
VERSION = 2
NOT_A_CHECKPOINT = "it is not a PyTorch checkpoint (torch.save's .pt/.pth) or it is truncated or corrupt"


def model_record(model: SectionedModel, **meta: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model.spec,
        "mean": [float(v) for v in model.normalize.mean.flatten()],
        "std": [float(v) for v in model.normalize.std.flatten()],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Write ``obj`` to ``path`` whole or not at all: serialised in memory, then written to a temporary sibling that
    is renamed over ``path`` (and removed on any failure). A failed write (a full disk) is the ``OSError`` that
    says why, not torch's wording of it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getbuffer())


def save_model(model: SectionedModel, path: str | Path, **meta: Any) -> None:
    """Save ``model`` with what rebuilds it; ``meta`` holds JSON-like extras (epochs, accuracy, the ``command``
    that wrote it, ...)."""
    atomic_torch_save(model_record(model, **meta), path)


def made_by(path: str | Path) -> str | None:
    """The command that wrote the litcache checkpoint at ``path`` (``train-teacher``, ``kd``), None for any other
    file. Checkpoints from before ``meta.command`` say it by their ``mode`` (only ``kd`` writes one)."""
    try:
        obj = read_weights_file(path)
    except CheckpointError:
        return None
    if not is_litcache_checkpoint(obj):
        return None
    meta = obj.get("meta") or {}
    return str(meta.get("command") or ("kd" if "mode" in meta else "train-teacher"))


def _torch_safe() -> Callable[[str], bool]:
    """What ``torch.load(weights_only=True)`` allows: its default allow-list and the user's additions."""
    allowed = set(SAFE_GLOBALS)
    try:
        from torch import _weights_only_unpickler as unpickler

        allowed |= set(unpickler._get_allowed_globals())
    except (ImportError, AttributeError):  # private API: without it, torch's own globals count as safe
        return torch_free_safe
    for g in torch.serialization.get_safe_globals():
        allowed.add(g if isinstance(g, str) else f"{getattr(g, '__module__', '')}.{getattr(g, '__name__', '')}")
    return allowed.__contains__


def unsafe_globals(path: str | Path) -> list[str]:
    """The globals of ``path``'s pickles that weights-only loading refuses: the code loading it would run."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if find is not None and zipfile.is_zipfile(path):
        try:
            return sorted(find(str(path)))
        except Exception:  # a zip torch.save did not write: read its pickles here
            pass
    return code_globals(path, _torch_safe())


def read_weights_file(path: str | Path) -> Any:
    """The object in a ``.pt``/``.pth`` file (tensors and plain containers only) or a ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: give the checkpoint file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise CheckpointError(f"{path}: reading .safetensors needs `pip install safetensors`") from exc
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for foreign files
            raise CheckpointError(f"cannot read checkpoint {path}: not a safetensors file ({exc})") from exc
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it was not written with: noise here
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt, foreign or unsafe files, in changing words
        names = unsafe_globals(path)  # the cause: globals that only code-running loading would import
        if names:
            raise UnsafeCheckpointError(holds_code_message(path, names)) from exc
        raise CheckpointError(f"cannot read checkpoint {path}: {NOT_A_CHECKPOINT}") from exc


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A litcache checkpoint, upgraded to the current version."""
    ckpt = read_weights_file(path)
    if not is_litcache_checkpoint(ckpt):
        raise CheckpointError(
            f"{path} is not a litcache model checkpoint (write one with `litcache train-teacher` or `litcache kd`)"
        )
    return _upgrade_v1(ckpt) if ckpt.get("version") == 1 else ckpt


def is_litcache_checkpoint(obj: Any) -> bool:
    """A litcache model checkpoint: its format, the model it records (``arch`` in version 1) and its weights."""
    return (
        isinstance(obj, dict)
        and obj.get("format") == FORMAT
        and ("model" in obj or "arch" in obj)
        and isinstance(obj.get("state_dict"), dict)
    )


def _upgrade_v1(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (CIFAR ResNets as stem/sections/head Sequentials) as version 2: same weights, new names."""
    spec = builtin(ckpt["arch"])
    if spec is None:
        raise CheckpointError(f"checkpoint of unknown architecture {ckpt['arch']!r}")
    spec["kwargs"]["num_classes"] = ckpt["num_classes"]
    renames = {"stem.0.": "normalize.", "stem.1.": "net.conv1.", "stem.2.": "net.bn1.", "head.2.": "net.fc."}
    state = {}
    for key, value in ckpt["state_dict"].items():
        old = next((o for o in renames if key.startswith(o)), None)
        if old is not None:
            state[renames[old] + key[len(old) :]] = value
        else:  # sections.{i}.{rest}
            _, i, rest = key.split(".", 2)
            state[f"net.layer{int(i) + 1}.{rest}"] = value
    return {**ckpt, "version": VERSION, "model": spec, "state_dict": state}


def load_model(path: str | Path, trusted: Collection[str] = ()) -> tuple[SectionedModel, dict[str, Any]]:
    """Rebuild the model a litcache checkpoint describes; returns it (in eval mode) and the checkpoint's meta.

    ``trusted``: model factories outside litcache, torchvision and timm that may be imported (the pipeline's).
    """
    return _from_record(read_checkpoint(path), path, trusted)


def _from_record(
    ckpt: dict[str, Any], path: str | Path, trusted: Collection[str]
) -> tuple[SectionedModel, dict[str, Any]]:
    try:
        check_trusted(ckpt["model"], trusted, f"checkpoint {path}")
        model = build_model(ckpt["model"], mean=ckpt["mean"], std=ckpt["std"])
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    _load_state(model, ckpt["state_dict"], path, describe(ckpt["model"]))
    model.eval()
    return model, dict(ckpt.get("meta", {}))


def _load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, what: str) -> None:
    """``module.load_state_dict(state)`` with an error that lists what does not match."""
    lines = state_mismatches(module.state_dict(), state, "the file", "the model")
    if lines:
        more = f"; and {len(lines) - 3} more" if len(lines) > 3 else ""
        raise CheckpointError(f"checkpoint {path} does not fit model {what}: " + "; ".join(lines[:3]) + more)
    module.load_state_dict(dict(state))


def _plain_state(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a plain weights file: the dict itself, or its ``state_dict``/``model`` entry."""
    for candidate in (obj, *(obj.get(k) for k in ("state_dict", "model") if isinstance(obj, dict))):
        if isinstance(candidate, dict) and candidate and all(isinstance(v, torch.Tensor) for v in candidate.values()):
            keys = list(candidate)
            if all(k.startswith("module.") for k in keys):  # saved from DistributedDataParallel
                return {k.removeprefix("module."): v for k, v in candidate.items()}
            return dict(candidate)
    raise CheckpointError(f"{path} is neither a litcache checkpoint nor a state_dict (a mapping of names to tensors)")


FILLED_KWARGS = ("num_classes", "in_channels")  # filled from the data when the pipeline's kwargs leave them out


def spec_differences(recorded: Mapping[str, Any], wanted: Any) -> list[str]:
    """How the model a checkpoint records differs from the model spec ``wanted``: factory, kwargs, sections.

    A kwarg the spec leaves out counts only when the data cannot fill it (``num_classes``, ``in_channels`` can)."""
    want = resolve_spec(wanted)
    out = []
    if recorded.get("factory") != want["factory"]:
        out.append(f"factory {recorded.get('factory')} (pipeline: {want['factory']})")
    rec_kwargs = dict(recorded.get("kwargs") or {})
    for key in sorted(set(rec_kwargs) | set(want["kwargs"])):
        if key in want["kwargs"] and rec_kwargs.get(key) != want["kwargs"][key]:
            out.append(f"{key}={rec_kwargs.get(key)!r} (pipeline: {want['kwargs'][key]!r})")
        elif key not in want["kwargs"] and key not in FILLED_KWARGS:
            out.append(f"{key}={rec_kwargs[key]!r} (pipeline: not set)")
    if list(recorded.get("sections") or []) != list(want["sections"]):
        out.append(f"sections {list(recorded.get('sections') or [])} (pipeline: {list(want['sections'])})")
    return out


def load_teacher(
    path: str | Path,
    spec: Any,
    num_classes: int | Callable[[], int],
    mean: Sequence[float],
    std: Sequence[float],
    trusted: Collection[str] = (),
    *,
    require_spec: bool = False,
) -> SectionedModel:
    """A teacher from a litcache checkpoint, or from a plain state dict of the model ``spec`` names (its factory's
    module, without litcache's input normalisation, which ``mean``/``std`` give). In eval mode.

    ``num_classes`` (or a function that finds it, e.g. by reading the data) is only needed for a plain state dict,
    and asked for only after the file has been read. ``require_spec``: a litcache checkpoint must record the model
    ``spec`` names (factory, kwargs, section paths), else it is refused naming both (``extract``).
    """
    obj = read_weights_file(path)
    if is_litcache_checkpoint(obj):
        record = _upgrade_v1(obj) if obj.get("version") == 1 else obj
        differs = spec_differences(record["model"], spec) if require_spec else []
        if differs:
            raise CompatibilityError(
                f"teacher {path} is {describe(record['model'])}, the pipeline's teacher.model is "
                f"{describe(resolve_spec(spec))}: its {', '.join(differs)}; give the checkpoint of the pipeline's "
                "teacher, or set teacher.model to the checkpoint's model (--set teacher.model=...)"
            )
        return _from_record(record, path, trusted)[0]
    state = _plain_state(obj, path)
    model = build_model(spec, num_classes() if callable(num_classes) else num_classes, mean, std)
    _load_state(model.net, state, path, describe(model.spec))
    return model.eval()


def finished_epochs(state_path: str | Path) -> int:
    """How many epochs the training state file at ``state_path`` holds (0 when there is none)."""
    if not Path(state_path).is_file():
        return 0
    try:
        return int(read_weights_file(state_path)["epoch"]) + 1
    except (CheckpointError, KeyError, TypeError, ValueError):
        return 0


def saved_epochs(state_path: str | Path, epochs: int) -> str:
    """What a training state file keeps, for a message: ``epochs 1-2 of 3 are saved in PATH``."""
    done = finished_epochs(state_path)
    if not done:
        return f"no epoch of {epochs} had finished (nothing saved in {state_path})"
    return f"epochs 1-{done} of {epochs} are saved in {state_path}"


def fingerprint_state(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over names, shapes, dtypes and bytes of a state dict, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()
