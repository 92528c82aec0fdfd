"""What runs on the teacher's device: the forward over a batch of views, the cast to the store's dtype, the
rounding of the boundaries, and each unit's statistics, so only the stored values are copied to the host."""

from __future__ import annotations

import numpy as np
import torch

from litcache.cache.layout import boundary_name, float_error
from litcache.cache.quantize import channel_axis, fields, padded_size, quant_name
from litcache.config import MANTISSA_BITS, StoreConfig
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


def check_outputs(outputs: torch.Tensor, bounds: list[torch.Tensor], first: int, where: str, name: str) -> None:
    """Refuse a unit whose outputs hold NaN or Inf, naming the first boundary that does (where it began)."""
    if bool(torch.isfinite(outputs).all()):
        return
    for k, t in enumerate(bounds, start=first):  # Inf in float16 is an overflow of the cast: unit_stats says so
        check_finite(t if t.dtype != torch.float16 else t[~torch.isinf(t)], f"boundary {k}{where}")
    check_finite(outputs, f"{name}{where}")


@torch.inference_mode()
def unit_stats(
    bounds: list[torch.Tensor],
    first: int = 1,
    where: str = "",
    mantissa_bits: int = 0,
    steps: list[torch.Tensor] | None = None,
    decoded: str = "",
) -> np.ndarray:
    """(B, 4) float64: sum, sum of squares, max |x| and the error bound of each stored boundary (b_first ...) of one
    unit, of the values as stored (dequantised, when quantised).

    Computed where the tensors are (the GPU, when there is one). The max is exact and doubles as the overflow
    check of the cast; the sums add float32 partial sums per row (exact widening of the stored values, relative
    error about 1e-8) in float64, several times cheaper on a CPU than float64 throughout. The error bound is half
    a step of the unit's coarsest channel (``steps``: each boundary's scales, when quantised) plus the rounding of
    floats of ``mantissa_bits`` bits at the unit's peak (the stored dtype, or ``decoded``, what readers decode to).
    """
    rows = []
    for i, (k, t) in enumerate(enumerate(bounds, start=first)):
        lo, hi = torch.aminmax(t)
        peak = torch.maximum(-lo, hi).double()
        if not torch.isfinite(peak):
            check_finite(t if t.dtype != torch.float16 else t[~torch.isinf(t)], f"boundary {k}{where}")
            raise CacheError(f"boundary {k}{where} does not fit {t.dtype} (it overflows); set store.dtype=float32")
        if decoded == "float16" and float(peak) > float(torch.finfo(torch.float16).max):
            raise CacheError(f"boundary {k}{where} does not fit float16 (it overflows); set store.dtype=float32")
        x = t.float().reshape(len(t), -1)
        step = steps[i].max().double() / 2 if steps is not None else torch.zeros((), dtype=torch.float64)
        rows.append(torch.stack([x.sum(1).double().sum(), x.square().sum(1).double().sum(), peak, step]))
    out = torch.stack(rows).cpu().numpy()
    bits = mantissa_bits or MANTISSA_BITS[decoded or str(bounds[0].dtype).removeprefix("torch.")]
    out[:, 3] += [float_error(peak, bits) for peak in out[:, 2]]
    return out


def encode_unit(
    bounds: list[torch.Tensor], first: int, where: str, store: StoreConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One unit's stored boundaries (b_first ...), on the host, and their statistics (:func:`unit_stats`).

    ``bounds`` are what :func:`teacher_rows` gave: already cast (and rounded) to the store's dtype, or, when the
    store quantises, float32, which is quantised here, on their device.
    """
    arrays: dict[str, np.ndarray] = {}
    if not store.bits:
        stats = unit_stats(bounds, first, where, store.bitround_keepbits)
        arrays.update({boundary_name(k): b.cpu().numpy() for k, b in enumerate(bounds, start=first)})
        return arrays, stats
    values, steps = [], []
    for k, b in enumerate(bounds, start=first):
        packed, qparams, decoded = quantize_unit(b, store.bits)
        arrays[boundary_name(k)] = packed.cpu().numpy()
        arrays[quant_name(k)] = qparams.cpu().numpy()
        values.append(decoded)
        steps.append(qparams[0])
    return arrays, unit_stats(values, first, where, steps=steps, decoded=store.dtype)


@torch.inference_mode()
def quantize_unit(t: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One unit's boundary ``t`` (N, *row_shape), float, quantised where it lies (``litcache.cache.quantize``).

    Returns the codes as bit fields (N, packed_row_bytes) uint8, the unit's scales and zero points (2, C) float32,
    and the dequantised values (N, *row_shape) float32, whose statistics the cache records. Bit for bit the codes
    of the format's reference quantiser.
    """
    row_shape = tuple(t.shape[1:])
    axis = channel_axis(row_shape) + 1
    x = t.float().movedim(axis, 1)
    moved = x.shape
    x = x.reshape(len(t), moved[1], -1)  # (N, C, rest)
    levels = float(2**bits - 1)
    lo = torch.clamp(x.amin(dim=(0, 2)), max=0.0)
    hi = torch.clamp(x.amax(dim=(0, 2)), min=0.0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, levels)
    s, z = scale[None, :, None], zero[None, :, None]
    # in place, one buffer: a unit's temporaries are fresh memory (page faults), which cost as much as the arithmetic
    q = torch.div(x, s).round_().add_(z).clamp_(0, levels)
    codes = q.to(torch.uint8).reshape(moved).movedim(1, axis).reshape(len(t), -1)
    values = q.sub_(z).mul_(s).reshape(moved).movedim(1, axis)  # (q - z)·s: the values readers decode
    return pack_codes(codes, bits), torch.stack([scale, zero]), values


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (N, n) uint8 packed as bit fields (N, packed_row_bytes), on their device: the widest field first, each
    the padded row cut into 8 / w parts, part j in bits j·w of every byte (``litcache.cache.quantize.pack_codes``)."""
    n = codes.shape[1]
    if (padded := padded_size((n,))) != n:
        codes = torch.nn.functional.pad(codes, (0, padded - n))
    out = []
    for width, offset in fields(bits):
        parts = ((codes >> offset) & ((1 << width) - 1)).view(len(codes), 8 // width, -1)
        packed = parts[:, 0].clone()
        for j in range(1, 8 // width):
            packed |= parts[:, j] << (j * width)
        out.append(packed)
    return torch.cat(out, dim=1)
