"""What one forward of a model shows: its boundary and output shapes, and whether two models' boundaries fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from litcache.errors import CompatibilityError
from litcache.models.sections import SectionedModel

OUTPUT_KINDS = {2: "logits", 4: "image"}  # the model's output rank -> what the cache stores


@dataclass(frozen=True)
class Probe:
    """What one forward of a model on an input of a given shape shows."""

    boundary_shapes: list[tuple[int, ...]]  # b0..bS without the batch axis
    output_shape: tuple[int, ...]

    @property
    def output_kind(self) -> str:
        """``"logits"`` (N, classes) for a classifier, ``"image"`` (N, C, H, W) for an image-to-image model."""
        return OUTPUT_KINDS[len(self.output_shape) + 1]


@torch.no_grad()
def probe(model: SectionedModel, input_shape: Sequence[int], check_sections: bool = True) -> Probe:
    """Boundary and output shapes for an input of ``input_shape``; with ``check_sections``, also that each section
    run alone reproduces the boundary the full forward computed (else the model does work between sections that a
    student section could not learn, and the section paths are wrong)."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
        bounds, out = model.forward_boundaries(x)
        if out.dim() not in OUTPUT_KINDS:
            raise CompatibilityError(
                f"the model's output has shape {tuple(out.shape)}; litcache caches logits (N, classes) or images "
                "(N, C, H, W)"
            )
        for k in range(1, model.num_sections + 1) if check_sections else ():
            alone = model.run_section(k, bounds[k - 1])
            same = alone.shape == bounds[k].shape and torch.allclose(alone, bounds[k], 1e-4, 1e-5, equal_nan=True)
            if not same:
                raise CompatibilityError(
                    f"section {k} ({model.section_paths[k - 1]!r}) run alone on boundary {k - 1} does not give the "
                    f"boundary {k} of the model's own forward: the forward does more between its sections than "
                    "the section modules (a skip over them, a reshape); choose section paths that follow each other"
                )
    finally:
        model.train(was_training)
    return Probe([tuple(b.shape[1:]) for b in bounds], tuple(out.shape[1:]))


def probe_boundaries(model: SectionedModel, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes (without the batch axis) of boundaries b0..bS for one input of ``input_shape``."""
    return probe(model, input_shape, check_sections=False).boundary_shapes


def check_compatible(
    expected: Sequence[Sequence[int]],
    actual: Sequence[Sequence[int]],
    expected_name: str = "teacher",
    actual_name: str = "student",
    expected_paths: Sequence[str] = (),
    actual_paths: Sequence[str] = (),
) -> None:
    """Raise :class:`CompatibilityError` unless both have as many sections and the same boundary shapes."""
    expected = [tuple(s) for s in expected]
    actual = [tuple(s) for s in actual]
    lines = []
    if len(expected) != len(actual):
        lines.append(
            f"number of sections: {expected_name} has {len(expected) - 1}, {actual_name} has {len(actual) - 1}"
        )
    for k in range(max(len(expected), len(actual))):
        e = expected[k] if k < len(expected) else None
        a = actual[k] if k < len(actual) else None
        if e != a:
            where = "input of section 1" if k == 0 else f"output of section {k}"
            if 0 < k <= min(len(expected_paths), len(actual_paths)):
                where += f": {expected_name} {expected_paths[k - 1]!r}, {actual_name} {actual_paths[k - 1]!r}"
            lines.append(f"boundary {k} ({where}): {expected_name} {e}, {actual_name} {a}")
    if lines:
        raise CompatibilityError(
            f"{actual_name} does not fit {expected_name}; LIT needs as many sections and the same boundary shapes: "
            + "; ".join(lines)
        )
