"""Trained models shipped inside the package, so that a first run starts from a real teacher.

``resnet56-cifar10.pt``: the quickstart's teacher, a CIFAR ResNet-56 (0.86 M parameters, 1x1-conv shortcuts)
trained 12 epochs on all 50,000 CIFAR-10 training images (cosine schedule, weight decay 5e-4) on a 2-core CPU:
84.08 % on the test set (3.5 MB). It is the teacher of BENCHMARKS.md's "ResNet-56 -> ResNet-20" table, kept with
its resolved config and per-epoch metrics in the repository's ``benchmarks/results/teachers/``. It has seen every
training image, the held-out ones of a ``data.holdout`` split included.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from litcache.config import ModelConfig
from litcache.errors import CheckpointError

QUICKSTART_TEACHER = "resnet56-cifar10.pt"
SHIPPED_TEACHERS = ((ModelConfig(name="resnet56"), QUICKSTART_TEACHER),)  # each shipped teacher and its model


def shipped_teacher(model: ModelConfig) -> Path | None:
    """The shipped teacher that is ``model``, if litcache ships one (the quickstart starts from it rather than
    train one); None for any other model."""
    return next((asset_path(name) for shipped, name in SHIPPED_TEACHERS if shipped == model), None)


def asset_path(name: str) -> Path:
    """The file of the shipped asset ``name`` (e.g. :data:`QUICKSTART_TEACHER`)."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise CheckpointError(f"litcache ships no asset {name!r} (looked in {path.parent}): reinstall litcache")
    return path
