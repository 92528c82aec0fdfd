"""What runs on the teacher's device: the forward over a batch of views, the cast to the store's dtype, the
rounding of the boundaries, and each unit's statistics, so only the stored values are copied to the host."""

from __future__ import annotations

import numpy as np
import torch

from litcache.config import MANTISSA_BITS
from litcache.data import to_unit_float
from litcache.errors import CacheError
from litcache.models import SectionedModel

SAME_WIDTH_INT = {torch.float16: torch.int16, torch.float32: torch.int32}


def round_mantissa(t: torch.Tensor, keepbits: int) -> torch.Tensor:
    """``t`` rounded to ``keepbits`` mantissa bits, half to even: numcodecs BitRound, bit for bit, on ``t``'s device.

    Rounding where the boundaries are computed lets the statistics and checksums be of the stored values.
    """
    drop = MANTISSA_BITS[str(t.dtype).removeprefix("torch.")] - keepbits
    if drop <= 0:
        return t
    b = t.view(SAME_WIDTH_INT[t.dtype])  # two's-complement adds wrap like BitRound's, so the bits agree
    b = b + (((b >> drop) & 1) + ((1 << (drop - 1)) - 1)).to(b.dtype)
    return (b & ~((1 << drop) - 1)).view(t.dtype)


@torch.inference_mode()
def teacher_rows(
    teacher: SectionedModel,
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format = torch.contiguous_format,
    keepbits: int = 0,
    first: int = 1,
    output_dtype: torch.dtype = torch.float32,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Boundaries b_first..bS (cast to ``dtype``, contiguous) and the outputs (``output_dtype``) of uint8 inputs
    ``x`` (B, C, H, W).

    ``memory_format`` is the layout the teacher computes in (its weights must be in it already); ``keepbits``
    > 0 rounds the boundaries to that many mantissa bits (``store.bitround_keepbits``).
    """
    bounds: list[list[torch.Tensor]] = []
    logits = []
    for start in range(0, len(x), batch_size):
        xb = to_unit_float(x[start : start + batch_size].to(device, non_blocking=True))
        b, out = teacher.forward_boundaries(xb.contiguous(memory_format=memory_format))
        # one pass casts and lays out as the store expects (a no-op layout change when computed in NCHW)
        cast = [t.to(dtype=dtype, memory_format=torch.contiguous_format) for t in b[first:]]
        bounds.append([round_mantissa(t, keepbits) for t in cast] if keepbits else cast)
        logits.append(out.to(dtype=output_dtype, memory_format=torch.contiguous_format))
    if len(bounds) == 1:
        return bounds[0], logits[0]
    return [torch.cat(parts) for parts in zip(*bounds, strict=True)], torch.cat(logits)


def check_finite(t: torch.Tensor, what: str) -> None:
    """Refuse NaN and Inf coming out of the teacher: a cache of them would train nothing (and silently)."""
    if not bool(torch.isfinite(t).all()):
        kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise CacheError(
            f"the teacher's {what} holds {kind} values: the checkpoint is broken or the teacher diverged; check it "
            "with `litcache evaluate`"
        )


@torch.inference_mode()
def unit_stats(bounds: list[torch.Tensor], first: int = 1, where: str = "") -> np.ndarray:
    """(B, 3) float64: sum, sum of squares and max |x| of each stored boundary (b_first ...) of one unit, of the
    stored values.

    Computed where the tensors are (the GPU, when there is one). The max is exact and doubles as the overflow
    check of the cast; the sums add float32 partial sums per row (exact widening of the stored values, relative
    error about 1e-8) in float64, several times cheaper on a CPU than float64 throughout.
    """
    rows = []
    for k, t in enumerate(bounds, start=first):
        lo, hi = torch.aminmax(t)
        peak = torch.maximum(-lo, hi).double()
        if not torch.isfinite(peak):
            check_finite(t if t.dtype != torch.float16 else t[~torch.isinf(t)], f"boundary {k}{where}")
            raise CacheError(f"boundary {k}{where} does not fit {t.dtype} (it overflows); set store.dtype=float32")
        x = t.float().reshape(len(t), -1)
        rows.append(torch.stack([x.sum(1).double().sum(), x.square().sum(1).double().sum(), peak]))
    return torch.stack(rows).cpu().numpy()

