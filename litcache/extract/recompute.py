"""``litcache verify --teacher``: a seeded fraction of the cache's rows recomputed by its teacher and compared with
what is stored, within each boundary's error bound (:func:`litcache.cache.verify.tolerance`).

The teacher is stage one's, so this check lives here; the checks that need no network are
:mod:`litcache.cache.verify`'s.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from litcache.cache.quantize import channel_axis, error_bound
from litcache.cache.reader import Cache
from litcache.cache.verify import ATOL_OF_MAX, Report, sample_rows, tolerance, verify_cache
from litcache.config import DataConfig
from litcache.data import to_unit_float
from litcache.errors import CacheError, CompatibilityError
from litcache.inputs import ROW_ARRAYS, RegeneratedInputs
from litcache.models import SectionedModel
from litcache.models.checkpoint import fingerprint_state, load_teacher
from litcache.models.registry import check_trusted
from litcache.progress import progress_bar


def quantization_bound(cache: Cache, name: str, unit: int, row_shape: tuple[int, ...]) -> torch.Tensor:
    """Half a quantisation step of each channel of boundary ``name`` in ``unit``, shaped to broadcast over rows."""
    params = cache.read([cache.quant_params_name(name)], *cache.unit_rows(unit), decode=False)
    steps = torch.from_numpy(error_bound(next(iter(params.values()))[0]).astype(np.float32))
    axis = channel_axis(row_shape)
    return steps.reshape([1] + [-1 if i == axis else 1 for i in range(len(row_shape))])


@torch.inference_mode()
def check_teacher(
    cache: Cache,
    teacher: SectionedModel,
    rows: np.ndarray,
    device: torch.device,
    report: Report,
    show_progress: bool,
    inputs: RegeneratedInputs | None = None,
) -> None:
    """Check 3: recompute ``rows`` from the cached inputs (or, ``inputs``, the views made again from the data)
    and compare with what is stored."""
    layout = torch.channels_last if cache.manifest.get("compute", {}).get("channels_last") else torch.contiguous_format
    teacher.to(device).to(memory_format=layout).eval()
    stored = [f"boundary/{k}" for k in cache.stored_boundaries()] + [cache.output_name]
    worst = {name: 0.0 for name in stored}
    units = (rows // cache.rows_per_unit).astype(np.int64)
    with progress_bar(total=len(rows), desc="verify rows", unit="row", enabled=show_progress) as bar:
        for u in np.unique(units):
            s, e = cache.unit_rows(int(u))
            picked = rows[units == u]
            if inputs is None:
                data = cache.read_unit(int(u), ["input", *stored])
                pixels = data["input"][picked - s]
            else:  # the cache keeps no pixels: the picked rows' views, made again and checked
                data = cache.read_unit(int(u), [*ROW_ARRAYS, *stored])
                pixels = inputs.views({k: data[k][picked - s] for k in ROW_ARRAYS}, s)
            x = to_unit_float(torch.from_numpy(pixels).to(device))
            bounds, out = teacher.forward_boundaries(x.contiguous(memory_format=layout))
            fresh = {f"boundary/{k}": bounds[k] for k in cache.stored_boundaries()} | {cache.output_name: out}
            for name in stored:
                got = torch.from_numpy(data[name][picked - s].astype(np.float32)).to(device)
                want = fresh[name].float()
                bound = tolerance(cache, name) * want.abs() + ATOL_OF_MAX * float(want.abs().max())
                if cache.is_quantized(name):  # plus half a step of each channel's scale in this unit
                    bound = bound + quantization_bound(cache, name, int(u), tuple(want.shape[1:])).to(device)
                excess = ((got - want).abs() - bound).flatten(1).amax(1)
                error = (got - want).abs().flatten(1).amax(1)
                worst[name] = max(worst[name], float((error / (want.abs().flatten(1).amax(1) + 1e-12)).max()))
                for i in torch.nonzero(excess > 0).flatten().tolist():
                    row = int(picked[i])
                    report.add(
                        "teacher",
                        f"row {row} (unit {int(u)})",
                        f"{name} differs from the teacher's by up to {float(error[i]):.4g} (beyond the rounding bound)",
                        row=row,
                        array=name,
                    )
            bar.update(len(picked))
    report.checked["rows_recomputed"] = len(rows)
    report.checked["worst_relative_error"] = worst  # per array, of the largest value in the row


def verify_with_teacher(
    cache: Cache,
    teacher_path: str,
    *,
    fraction: float = 0.01,
    seed: int = 0,
    device: torch.device | None = None,
    trusted: Collection[str] = (),
    show_progress: bool = True,
    data: DataConfig | None = None,
) -> Report:
    """Every check of :func:`litcache.cache.verify.verify_cache`, then the teacher's (``teacher_path``: a litcache
    checkpoint or a plain state dict of the model the manifest names). ``trusted``: model factories the caller's
    pipeline names. ``data``: the data the cache was extracted from, when it keeps no pixels."""
    m = cache.manifest
    inputs = None
    if not cache.input_stored:
        if data is None:
            raise CacheError(
                f"cache {cache.url} keeps no pixels (store.input=crc32): recomputing its rows needs the data it was "
                f"extracted from ({m['data']['identity']}): pass it with --data"
            )
        inputs = RegeneratedInputs(cache, data)
        inputs.open()
    check_trusted(m["teacher"]["model"], trusted, f"cache {cache.url}")
    frozen = cache.frozen_arrays()  # the normalisation a plain state dict does not carry
    mean, std = (frozen[f"normalize.{k}"].flatten().tolist() for k in ("mean", "std"))
    spec, classes = m["teacher"]["model"], m["teacher"]["num_classes"]
    teacher = load_teacher(teacher_path, spec, classes, mean, std, trusted)
    if fingerprint_state(teacher.state_dict()) != m["teacher"]["fingerprint"]:
        raise CompatibilityError(
            f"{teacher_path} is not the teacher {cache.url} was extracted with (its weights' fingerprint differs)"
        )
    report = verify_cache(cache, show_progress=show_progress)
    rows = sample_rows(cache, fraction, seed)
    check_teacher(cache, teacher, rows, device or torch.device("cpu"), report, show_progress, inputs)
    report.checked["fraction"], report.checked["seed"] = fraction, seed
    return report
