"""Per-boundary figures of a cache against its teacher (issue 22): the bytes each boundary takes, how far its stored
values are from the teacher's float32 values, and how fast one CPU core encodes it.

``boundary_report(cache, teacher)`` gives, for each stored boundary ``boundary/k``:

- ``bytes_per_element``: its stored bytes (the codes or floats, plus a quantised boundary's scales ``quant/k``)
  over the cache's rows x the boundary's elements a row;
- ``rel_rms_error``: RMS(stored - exact) / std(exact), where *stored* is what a reader decodes (dequantised to the
  store's dtype) and *exact* the teacher's float32 boundary, recomputed from the cached input, over the first rows;
- ``encode_mb_per_s``: what the extractor's encoding of one unit of it does, on one thread: quantise + pack into
  bit fields + compress (``store.bits`` > 0), or cast to the store's dtype (float16) + bit rounding + compress
  (``store.bits`` = 0), in MB (10^6 bytes) of the boundary *as float16* (2 bytes an element, whatever is stored)
  per second; the best of ``repeats`` runs (the machines are shared). Statistics, checksums and the write are not
  counted; ``compress_mb_per_s`` is the compression alone, what is left to the CPU when the teacher's GPU
  quantises.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import numcodecs.blosc
import numpy as np
import torch

from litcache.cache.reader import Cache
from litcache.data import to_unit_float
from litcache.extract.on_device import quantize_unit, round_mantissa
from litcache.models import SectionedModel

FLOAT16_BYTES = 2  # MB/s counts every element at float16's 2 bytes, the size a GPU hands over unquantised
ENCODE_NOTE = (
    "encode_mb_per_s: one unit of the boundary, encoded on one CPU thread as the extractor does (quantise + pack "
    "into bit fields + compress when store.bits > 0; cast to float16 + bit rounding + compress when 0), in MB "
    "(10^6 bytes) of the boundary as float16 (2 bytes an element) per second, best of the repeats; "
    "compress_mb_per_s: the compression alone, in the same MB; "
    "rel_rms_error: RMS(decoded - teacher's float32) / std(teacher's float32)"
)


class RelativeRms:
    """RMS(stored - exact) / std(exact) over every element added, batch by batch, in float64 (the std over all
    elements, ddof 0; batches merged with Chan et al.'s update, so a large mean does not cancel the variance)."""

    def __init__(self) -> None:
        self.n, self.err2, self.mean, self.m2 = 0, 0.0, 0.0, 0.0

    def add(self, stored: np.ndarray, exact: np.ndarray) -> RelativeRms:
        exact64 = np.asarray(exact, dtype=np.float64).ravel()
        nb = exact64.size
        self.err2 += float(np.sum((np.asarray(stored, dtype=np.float64).ravel() - exact64) ** 2))
        mb = float(exact64.mean())
        delta, n = mb - self.mean, self.n + nb
        self.m2 += float(np.sum((exact64 - mb) ** 2)) + delta**2 * self.n * nb / n
        self.mean += delta * nb / n
        self.n = n
        return self

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n)

    @property
    def value(self) -> float:
        return math.sqrt(self.err2 / self.n) / self.std


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and Blosc on one thread for the duration (restored after)."""
    threads, blosc = torch.get_num_threads(), numcodecs.blosc.use_threads
    torch.set_num_threads(1)
    numcodecs.blosc.use_threads = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        numcodecs.blosc.use_threads = blosc


def prepare(cache: Cache, exact: torch.Tensor) -> np.ndarray:
    """``exact`` (float32 rows of one unit) as the store holds them: codes as bit fields (``store.bits`` > 0), else
    the store's float dtype with its bit rounding."""
    store = cache.manifest["store"]
    if cache.quant_bits:
        return quantize_unit(exact, cache.quant_bits)[0].numpy()
    cast = exact.to(getattr(torch, store["dtype"]))
    return (round_mantissa(cast, store["bitround_keepbits"]) if store["bitround_keepbits"] else cast).numpy()


def compress(cache: Cache, name: str, rows: np.ndarray) -> int:
    """Compress prepared ``rows`` chunk by chunk with boundary ``name``'s codec; the stored bytes."""
    codec = cache.codec(name)
    if codec is None:
        raise ValueError(f"{name} of {cache.url} is sharded or not chunked by rows: time it with zarr instead")
    step = cache.rows_per_chunk
    return sum(len(codec.encode(rows[s : s + step])) for s in range(0, len(rows), step))


def encode_rate(cache: Cache, name: str, exact: torch.Tensor, repeats: int) -> dict[str, Any]:
    """MB/s (float16-equivalent) of encoding ``exact`` on one thread, the best of ``repeats`` runs: the whole
    encode, and its compression alone (what is left to the CPU when the teacher's GPU quantises)."""
    whole, compressing = [], []
    with one_thread():
        compress(cache, name, prepare(cache, exact))  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            rows = prepare(cache, exact)
            prepared = time.perf_counter()
            compress(cache, name, rows)
            done = time.perf_counter()
            whole.append(done - started)
            compressing.append(done - prepared)
    mb = exact.numel() * FLOAT16_BYTES / 1e6
    return {
        "encode_mb_per_s": mb / min(whole),
        "compress_mb_per_s": mb / min(compressing),
        "encode_mb": mb,
        "encode_rows": len(exact),
        "encode_seconds": whole,
        "compress_seconds": compressing,
    }


@torch.inference_mode()
def boundary_report(
    cache: Cache, teacher: SectionedModel, rows: int = 128, repeats: int = 5, batch_size: int = 32
) -> list[dict[str, Any]]:
    """One dict per stored boundary of ``cache``: its shape, bytes per element, relative RMS error against
    ``teacher`` (the cache's own, on the CPU) over the first whole units holding ``rows`` rows, and its encode rate
    on one CPU thread over the first unit. The cache must hold its views' pixels (``store.input=pixels``)."""
    if not cache.input_stored:
        raise ValueError(f"{cache.url} keeps no pixels: boundary_report recomputes rows from the stored input")
    names = [f"boundary/{k}" for k in cache.stored_boundaries()]
    shapes = cache.boundary_shapes()
    layout = torch.channels_last if cache.manifest.get("compute", {}).get("channels_last") else torch.contiguous_format
    teacher.cpu().to(memory_format=layout).eval()
    stop = min(cache.rows, math.ceil(rows / cache.rows_per_unit) * cache.rows_per_unit)
    errors = {name: RelativeRms() for name in names}
    first_unit: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        data = cache.read(["input", *names], start, end)
        x = to_unit_float(torch.from_numpy(data["input"]))
        bounds, _ = teacher.forward_boundaries(x.contiguous(memory_format=layout))
        for name in names:
            exact = bounds[int(name.rsplit("/", 1)[1])].float().contiguous()
            errors[name].add(data[name], exact.numpy())
            if start < cache.rows_per_unit:
                first_unit[name].append(exact[: cache.rows_per_unit - start])
    report = []
    for name in names:
        k = int(name.rsplit("/", 1)[1])
        per_row = int(np.prod(shapes[k], dtype=np.int64))
        stored = cache.array(name).nbytes_stored()
        if cache.is_quantized(name):
            stored += cache.array(cache.quant_params_name(name)).nbytes_stored()
        report.append(
            {
                "boundary": name,
                "shape": list(shapes[k]),
                "elements_per_row": per_row,
                "stored_bytes": int(stored),
                "bytes_per_element": stored / (cache.rows * per_row),
                "rel_rms_error": errors[name].value,
                "value_std": errors[name].std,
                "error_rows": stop,
                **encode_rate(cache, name, torch.cat(first_unit[name]), repeats),
            }
        )
    return report
