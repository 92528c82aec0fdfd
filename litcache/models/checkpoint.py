"""Model checkpoints that record how to rebuild their model and load without unpickling code.

A litcache checkpoint is a plain dict of strings, numbers, lists and tensors written with ``torch.save`` and read
with ``torch.load(..., weights_only=True)``, so a checkpoint from anywhere cannot run code; the model factory it
names is imported only when it is litcache's, torchvision's or timm's, or the user's pipeline names it too.
A teacher may also be a plain ``state_dict`` file (``.pt``/``.pth``/``.safetensors``) of the pipeline's
``teacher.model``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from litcache.errors import CheckpointError, ConfigError
from litcache.models.registry import build_model, check_trusted
from litcache.models.sections import SectionedModel, state_mismatches
from litcache.models.specs import builtin, describe

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
    """Write ``obj`` to ``path`` via a temporary file, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: SectionedModel, path: str | Path, **meta: Any) -> None:
    """Save ``model`` with what rebuilds it; ``meta`` holds JSON-like extras (epochs, accuracy, ...)."""
    atomic_torch_save(model_record(model, **meta), path)


def read_weights_file(path: str | Path) -> Any:
    """The object in a ``.pt``/``.pth`` file (tensors and plain containers only) or a ``.safetensors`` file."""
    path = Path(path)
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a well-formed pickle of objects other than tensors: code
            raise CheckpointError(
                f"checkpoint {path} holds Python objects besides tensors (code runs when it is unpickled); "
                "litcache loads weights only: save the model's state_dict (or a litcache checkpoint) instead"
            ) from exc
        raise CheckpointError(f"cannot read checkpoint {path}: {NOT_A_CHECKPOINT}") from exc
    except Exception as exc:  # torch raises several types for corrupt or foreign files, with cryptic texts
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
    return isinstance(obj, dict) and obj.get("format") == FORMAT


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
        more = f"\n  ... and {len(lines) - 12} more" if len(lines) > 12 else ""
        raise CheckpointError(f"checkpoint {path} does not fit model {what}:\n  " + "\n  ".join(lines[:12]) + more)
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


def load_teacher(
    path: str | Path,
    spec: Any,
    num_classes: int | Callable[[], int],
    mean: Sequence[float],
    std: Sequence[float],
    trusted: Collection[str] = (),
) -> SectionedModel:
    """A teacher from a litcache checkpoint, or from a plain state dict of the model ``spec`` names (its factory's
    module, without litcache's input normalisation, which ``mean``/``std`` give). In eval mode.

    ``num_classes`` (or a function that finds it, e.g. by reading the data) is only needed for a plain state dict,
    and asked for only after the file has been read.
    """
    obj = read_weights_file(path)
    if is_litcache_checkpoint(obj):
        return _from_record(_upgrade_v1(obj) if obj.get("version") == 1 else obj, path, trusted)[0]
    state = _plain_state(obj, path)
    model = build_model(spec, num_classes() if callable(num_classes) else num_classes, mean, std)
    _load_state(model.net, state, path, describe(model.spec))
    return model.eval()


def fingerprint_state(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over names, shapes, dtypes and bytes of a state dict, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()
