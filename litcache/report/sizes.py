"""How big a model is: parameters, and multiply-accumulates (MACs) for one input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from litcache.models import SectionedModel

MAC_METHOD = (
    "MACs = FLOPs / 2 of one forward on one input, counted by torch.utils.flop_counter.FlopCounterMode: "
    "convolutions and matrix products (linear layers, attention), not element-wise operations (batch norm, "
    "activations, additions)"
)


@dataclass(frozen=True)
class ModelSize:
    """Parameters (all, and those outside the sections: the stem and head a LIT student copies) and MACs."""

    params: int
    params_outside_sections: int
    macs: int
    input_shape: tuple[int, ...]


@torch.no_grad()
def count_macs(model: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward of ``model`` on one input of ``input_shape`` (C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros((1, *input_shape), device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def measure(model: SectionedModel, input_shape: Sequence[int]) -> ModelSize:
    """Parameter counts and MACs of ``model`` for one input of ``input_shape``."""
    outside = sum(p.numel() for name, p in model.named_parameters() if not model.section_of(name))
    return ModelSize(
        params=sum(p.numel() for p in model.parameters()),
        params_outside_sections=outside,
        macs=count_macs(model, input_shape),
        input_shape=tuple(int(d) for d in input_shape),
    )
