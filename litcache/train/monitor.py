"""Where training reports go besides ``metrics.jsonl``: a monitor the trainer hands to the loop.

A monitor gets the loss parts of every step (it decides which to read: each reading waits for the device) and
the record of every epoch. :class:`TensorBoardMonitor` writes them as TensorBoard scalars:

- ``epoch/<key>`` for every number of an epoch record (``loss``, ``ir/s1``, ``kd``, ``lr``, ``samples_per_s``,
  ``seconds``, ``view``), at the run's epoch (``run_epoch``, so the KD pass continues the sections' axis);
- ``step/<key>`` for the loss parts and ``step/lr`` every ``log.every_steps`` steps of the stage.

:func:`open_monitor` gives one only when ``log.tensorboard`` is on and the ``tensorboard`` package is installed
(``pip install 'litcache[tensorboard]'``); otherwise training runs exactly as without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from litcache.config import LogConfig

log = logging.getLogger(__name__)
NOT_SCALARS = ("epoch", "run_epoch")  # the axes, not values


class Monitor(Protocol):
    """What a training loop reports to, besides the records it returns."""

    def on_step(self, step: int, parts: Mapping[str, torch.Tensor], lr: float) -> None:
        """After step ``step`` of the stage (0-based, over all its epochs): its loss parts and learning rate."""

    def on_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        """After epoch ``epoch`` of the run: the record written to ``metrics.jsonl``."""

    def close(self) -> None:
        """Flush and release files."""


class TensorBoardMonitor:
    """TensorBoard scalars in ``folder``: every epoch record, and the loss parts every ``every_steps`` steps."""

    def __init__(self, folder: str | Path, every_steps: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.every_steps = every_steps
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def on_step(self, step: int, parts: Mapping[str, torch.Tensor], lr: float) -> None:
        if not self.every_steps or step % self.every_steps:
            return
        for key, value in parts.items():
            self.writer.add_scalar(f"step/{key}", float(value.detach()), step)
        self.writer.add_scalar("step/lr", lr, step)

    def on_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()  # an epoch is worth seeing while the next one runs

    def close(self) -> None:
        self.writer.close()


def tensorboard_installed() -> bool:
    """Whether the ``tensorboard`` package (the optional extra) can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


def open_monitor(cfg: LogConfig, folder: str | Path, fresh: bool = True) -> TensorBoardMonitor | None:
    """A TensorBoard monitor writing into ``folder``, or None when ``cfg.tensorboard`` is off or the package is
    missing (then nothing is written and nothing changes).

    ``fresh`` removes the event files an earlier run left there (as a new run starts its ``metrics.jsonl`` anew);
    a resumed stage keeps them and adds its own.
    """
    if not cfg.tensorboard or not tensorboard_installed():
        return None
    if fresh:
        for old in Path(folder).glob("events.out.tfevents.*"):
            old.unlink()
    try:
        return TensorBoardMonitor(folder, cfg.every_steps)
    except ImportError as exc:  # installed but broken (a protobuf that does not fit, say): train without it
        log.warning("TensorBoard event files are off: torch.utils.tensorboard cannot be imported (%s)", exc)
        return None


def monitored(
    cfg: LogConfig, folder: str | Path, enabled: bool = True, fresh: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """:func:`open_monitor` as a context that closes it; yields None when there is none (or not ``enabled``: the
    ranks other than 0)."""
    monitor = open_monitor(cfg, folder, fresh) if enabled else None
    return contextlib.closing(monitor) if monitor is not None else contextlib.nullcontext()


__all__ = ["Monitor", "TensorBoardMonitor", "monitored", "open_monitor", "tensorboard_installed"]
