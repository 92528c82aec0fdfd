"""Model checkpoints that record their architecture and load without unpickling code.

A checkpoint is a plain dict of strings, numbers, lists and tensors written with ``torch.save`` and read with
``torch.load(..., weights_only=True)``, so a checkpoint from anywhere cannot run code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, cast

import torch

from litcache.errors import CheckpointError
from litcache.models import Normalize, SectionedModel, build_model

FORMAT = "litcache-model"


def model_record(model: SectionedModel, **meta: Any) -> dict[str, Any]:
    stem_norm = cast(Normalize, model.stem[0])
    return {
        "format": FORMAT,
        "version": 1,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "mean": [float(v) for v in stem_norm.mean.flatten()],
        "std": [float(v) for v in stem_norm.std.flatten()],
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
    """Save ``model`` with its architecture; ``meta`` holds JSON-like extras (epochs, accuracy, ...)."""
    atomic_torch_save(model_record(model, **meta), path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a litcache model checkpoint (write one with `litcache train-teacher` or `litcache kd`)"
        )
    return ckpt


def load_model(path: str | Path) -> tuple[SectionedModel, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns it (in eval mode) and the checkpoint's meta."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["arch"], ckpt["num_classes"], ckpt["mean"], ckpt["std"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match architecture {ckpt['arch']}: {exc}") from exc
    model.eval()
    return model, dict(ckpt.get("meta", {}))


def fingerprint_state(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over names, shapes, dtypes and bytes of a state dict, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()
