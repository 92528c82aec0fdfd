"""LIT's objective over one batch, for every training mode (see :mod:`litcache.train`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from litcache.cache.layout import boundary_name
from litcache.data import to_unit_float
from litcache.models import SectionedModel
from litcache.train.losses import ir_loss, kd_loss, lit_loss, pixel_loss


@contextlib.contextmanager
def batch_stats_only(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Batch norm normalises with the batch's statistics but leaves the running statistics alone.

    The combined objective runs every section twice a step: on the teacher's boundary (IR) and inside the
    student's own forward (KD). Inference sees only the second distribution, so only it may update the
    running statistics; letting both in leaves a blend that fits neither (it cost the combined objective 11.6
    points of CIFAR-10 test accuracy in the quality run, see BENCHMARKS.md).
    """
    norms = [
        m
        for module in modules
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    for m in norms:
        m.track_running_stats = False  # in train mode: batch statistics, running buffers neither read nor written
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class LitObjective(nn.Module):
    """Every training mode's loss: ``forward(batch) -> {"loss": total, "ir/s1": ..., "kd": ...}``.

    ``sections`` (1-based) get the IR loss; ``beta > 0`` adds the finishing loss on the student's end-to-end output:
    KD on logits (:func:`~litcache.losses.kd_loss`), or for an image model (``output="output"``) the pixel loss
    against the teacher's image and the ground truth, which is the input view itself
    (:func:`~litcache.losses.pixel_loss`). Targets come from the batch (the cache) unless a ``teacher`` is given
    (online LIT). ``b0_stored``: the cache holds ``boundary/0``; else section 1's input is the frozen stem's output.
    ``ir_running_stats``: with ``beta > 0``, the IR passes update the running statistics too, after the student's
    own forward, as LIT's reference does (by default they use batch statistics only, see :func:`batch_stats_only`).
    """

    def __init__(
        self,
        student: SectionedModel,
        sections: Sequence[int],
        *,
        beta: float,
        temperature: float,
        label_weight: float,
        soft_weight: float,
        teacher: SectionedModel | None = None,
        output: str = "logits",
        b0_stored: bool = False,
        ir_running_stats: bool = False,
    ) -> None:
        super().__init__()
        self.student = student
        self.sections = list(sections)
        self.beta, self.temperature = beta, temperature
        self.label_weight, self.soft_weight = label_weight, soft_weight
        self.output, self.b0_stored = output, b0_stored
        self.ir_running_stats = ir_running_stats
        self._teacher = [teacher] if teacher is not None else []  # not a submodule: never trained or synced

    def required_arrays(self) -> list[str]:
        """The cache arrays one step reads (just what the job needs)."""
        if self._teacher:
            return ["input", "rows/label"]
        names = set()
        if self.beta > 0:
            names.add("input")
        for k in self.sections:
            names.add(boundary_name(k))
            names.add(boundary_name(k - 1) if k > 1 or self.b0_stored else "input")
        if self.beta > 0:
            names.add("rows/label")
            if self.soft_weight:
                names.add(self.output)
        return sorted(names)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = to_unit_float(batch["input"]) if "input" in batch else None
        bounds: list[torch.Tensor] | dict[int, torch.Tensor]  # the teacher's b0..bS, or the cached ones by index
        t_out: torch.Tensor | None  # None when the batch has no teacher outputs (IR only, or labels only)
        if self._teacher:
            assert x is not None, "online LIT reads 'input' (see required_arrays)"
            with torch.no_grad():
                bounds, t_out = self._teacher[0].forward_boundaries(x)
        else:
            bounds = {
                k: batch[boundary_name(k)].float()
                for k in range(self.student.num_sections + 1)
                if boundary_name(k) in batch
            }
            t_out = batch.get(self.output)
            if 0 not in bounds and 1 in self.sections:
                assert x is not None, "section 1 reads 'input' when the cache does not store b0"
                with torch.no_grad():
                    bounds[0] = self.student.stem_output(x)  # the frozen stem is the teacher's
        kd = None
        if self.beta > 0 and self.ir_running_stats:  # the reference's order: the end-to-end forward first
            kd = self._end_to_end(x, t_out, batch)
        parts: dict[str, torch.Tensor] = {}
        sections = [m for k in range(1, self.student.num_sections + 1) for m in self.student.section_modules(k)]
        # with KD in the objective, the end-to-end forward owns the running statistics (see batch_stats_only)
        only_batch_stats = self.beta > 0 and not self.ir_running_stats
        with batch_stats_only(sections) if only_batch_stats else contextlib.nullcontext():
            for k in self.sections:
                parts[f"ir/s{k}"] = ir_loss(self.student.run_section(k, bounds[k - 1]), bounds[k])
        if self.beta > 0 and kd is None:
            kd = self._end_to_end(x, t_out, batch)
        if kd is not None:
            parts["kd"] = kd
        return {"loss": lit_loss(list(parts.values())[: len(self.sections)], kd, beta=self.beta), **parts}

    def _end_to_end(
        self, x: torch.Tensor | None, t_out: torch.Tensor | None, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The finishing term on the student's own output: KD on logits, or the pixel loss of an image model."""
        assert x is not None, "the end-to-end term reads 'input' (see required_arrays)"
        out = self.student(x)
        if self.output == "logits":
            return kd_loss(
                out,
                t_out,
                batch["rows/label"].long(),
                temperature=self.temperature,
                label_weight=self.label_weight,
                soft_weight=self.soft_weight,
            )
        return pixel_loss(out, t_out, x, label_weight=self.label_weight, soft_weight=self.soft_weight)
