"""Quantised boundaries and caches without pixels, end to end: quantised where the teacher runs, read back
dequantised by every reader, checked by ``verify --teacher`` within each boundary's own bound, and views made
again from the data in stage two."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from litcache.cache import quantize as q
from litcache.cache.codecs import crc32
from litcache.cache.layout import PROGRESS
from litcache.cache.reader import open_cache
from litcache.cache.summary import channel_stats, summarize
from litcache.cache.verify import verify_cache
from litcache.cli.main import main
from litcache.config import PipelineConfig
from litcache.errors import CacheError
from litcache.extract import extract
from litcache.extract.on_device import pack_codes, quantize_unit
from litcache.extract.recompute import verify_with_teacher
from litcache.train.stream import CacheStream
from litcache.train.trainer import train_sections


@pytest.mark.parametrize("bits", [8, 6, 5, 4, 2])
@pytest.mark.parametrize("shape", [(32, 16, 8, 8), (16, 65, 24), (9, 7, 3, 5)])
def test_the_device_quantiser_gives_the_reference_codes(bits: int, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(bits)) * 4
    if len(shape) == 4:
        x = torch.relu(x)
    codes, params = q.quantize(x.numpy(), bits)
    packed, got_params, values = quantize_unit(x, bits)
    np.testing.assert_array_equal(packed.numpy(), q.pack_codes(codes, bits))
    np.testing.assert_array_equal(got_params.numpy(), params)
    np.testing.assert_array_equal(values.numpy(), q.dequantize(packed.numpy(), params, bits, shape[1:], "float32"))
    # the packing on the device alone, on a row that is padded
    flat = torch.from_numpy(codes.reshape(len(codes), -1))
    np.testing.assert_array_equal(pack_codes(flat, bits).numpy(), q.pack_codes(codes, bits))


@pytest.fixture(scope="module")
def quantized(make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = make_cfg("store.bits=4")
    out = tmp_path_factory.mktemp("q4") / "cache.zarr"
    summary = extract(cfg, str(teacher_path), str(out), show_progress=False)
    assert summary["complete"]
    return cfg, out


def test_a_quantised_cache_is_smaller_and_verifies(quantized, cache_path: Path, teacher_path: Path) -> None:
    cfg, path = quantized
    cache, plain = open_cache(str(path)), open_cache(str(cache_path))
    assert cache.manifest["format_version"] == 4 and cache.quant_bits == 4
    assert cache.array("boundary/1").dtype == np.uint8 and cache.array("quant/1").shape == (cache.num_units, 2, 16)
    small, big = summarize(cache), summarize(plain)
    assert small["boundary_bytes_per_element"] < 0.5 * big["boundary_bytes_per_element"]
    assert verify_cache(cache, show_progress=False).ok
    report = verify_with_teacher(cache, str(teacher_path), fraction=0.5, show_progress=False)
    assert report.ok, report.lines()[:3]
    # the cache records each boundary's own bound: half its coarsest step, plus float16's rounding at its peak
    for st in cache.boundary_stats():
        steps = np.asarray(cache.array(q.quant_name(st["boundary"]))[:, 0])
        assert steps.max() / 2 <= st["error_bound"] <= steps.max() / 2 + st["abs_max"] * 2**-10
    # the decoded values are within that bound of the float cache's (itself float16, rounded to 7 mantissa bits)
    a, b = cache.read(["boundary/2"], 0, 32)["boundary/2"], plain.read(["boundary/2"], 0, 32)["boundary/2"]
    bound = cache.boundary_stats()[1]["error_bound"] + plain.boundary_stats()[1]["error_bound"]
    assert np.abs(a.astype(np.float32) - b.astype(np.float32)).max() <= bound


def test_verify_finds_codes_that_are_not_the_teachers(quantized, teacher_path: Path, tmp_path: Path) -> None:
    """A unit whose scales were doubled, with checksums that agree: only the teacher can tell."""
    _, path = quantized
    shutil.copytree(path, tmp_path / "c.zarr")
    arr = zarr.open_array(str(tmp_path / "c.zarr"), path="quant/1", mode="r+")
    params = np.asarray(arr[2])
    params[0] *= 2
    arr[2] = params
    record = zarr.open_array(str(tmp_path / "c.zarr"), path=PROGRESS, mode="r+")
    row = np.asarray(record[2])
    cache = open_cache(str(tmp_path / "c.zarr"))
    row[1 + (cache.data_arrays() + cache.unit_arrays()).index("quant/1")] = crc32(params)
    record[2] = row
    cache = open_cache(str(tmp_path / "c.zarr"))
    assert verify_cache(cache, show_progress=False).ok  # the checksums agree
    report = verify_with_teacher(cache, str(teacher_path), fraction=1.0, show_progress=False)
    assert {p["array"] for p in report.problems} == {"boundary/1"}
    assert {p["row"] // cache.rows_per_unit for p in report.problems} == {2}


def test_every_reader_dequantises(quantized) -> None:
    cfg, path = quantized
    cache = open_cache(str(path))
    names = ["boundary/1", "boundary/3"]
    stream = CacheStream(cache, names, cfg.stream, rank=0, world=1)
    batches = list(stream.epoch(0))
    whole = cache.read(names, 0, cache.rows)
    for batch in batches:
        rows = batch["row"].numpy()
        for name in names:
            assert batch[name].dtype == torch.float16
            np.testing.assert_array_equal(batch[name].numpy(), whole[name][rows])
    stats = channel_stats(cache)["boundary/3"]
    x = whole["boundary/3"].astype(np.float64)
    np.testing.assert_allclose(stats["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats["max"], x.max(axis=(0, 2, 3)))


def test_sections_train_from_a_quantised_cache(quantized, tmp_path: Path) -> None:
    cfg, path = quantized
    records = train_sections(cfg, str(path), tmp_path / "sections", show_progress=False)
    assert np.isfinite(records[-1]["loss"]) and (tmp_path / "sections" / "section-s3.pt").is_file()


@pytest.fixture(scope="module")
def without_pixels(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path_factory: pytest.TempPathFactory
):
    cfg = make_cfg("store.input=crc32")
    out = tmp_path_factory.mktemp("crc") / "cache.zarr"
    extract(cfg, str(teacher_path), str(out), show_progress=False)
    return cfg, out


def test_a_cache_without_pixels_regenerates_the_same_views(without_pixels, cache_path: Path) -> None:
    cfg, path = without_pixels
    cache, stored = open_cache(str(path)), open_cache(str(cache_path))
    assert not cache.input_stored and "input" not in cache.data_arrays()
    names = ["input", "boundary/1"]
    made = list(CacheStream(cache, names, cfg.stream, rank=0, world=1, data=cfg.data).epoch(1))
    kept = list(CacheStream(stored, names, cfg.stream, rank=0, world=1).epoch(1))
    assert len(made) == len(kept) > 0
    for a, b in zip(made, kept, strict=True):  # the same rows in the same order, bit for bit
        for name in [*names, "row"]:
            assert torch.equal(a[name], b[name])
    with pytest.raises(CacheError, match="keeps no pixels .* pass it with --data"):
        CacheStream(cache, names, cfg.stream, rank=0, world=1)


def test_sections_trained_without_pixels_are_those_trained_with_them(
    without_pixels, cache_path: Path, tiny_cfg: PipelineConfig, tmp_path: Path
) -> None:
    """No-input mode costs no accuracy, to the bit: the views made again train the very same weights."""
    cfg, path = without_pixels
    made = train_sections(cfg, str(path), tmp_path / "made", section=1, epochs=1, show_progress=False)
    kept = train_sections(tiny_cfg, str(cache_path), tmp_path / "kept", section=1, epochs=1, show_progress=False)
    assert made[-1]["loss"] == kept[-1]["loss"]
    a = torch.load(tmp_path / "made" / "section-s1.pt", weights_only=True)
    b = torch.load(tmp_path / "kept" / "section-s1.pt", weights_only=True)
    weights = [k for k, v in a["state_dict"].items() if v.is_floating_point()]
    assert weights and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in weights)


def test_a_view_that_does_not_match_is_named(without_pixels, tmp_path: Path) -> None:
    cfg, path = without_pixels
    shutil.copytree(path, tmp_path / "c.zarr")
    crcs = zarr.open_array(str(tmp_path / "c.zarr"), path="rows/input_crc", mode="r+")
    crcs[70] = int(crcs[70]) ^ 1
    # the progress record vouches for the changed CRC, so only the regenerated view can disagree
    cache = open_cache(str(tmp_path / "c.zarr"))
    record = zarr.open_array(str(tmp_path / "c.zarr"), path=PROGRESS, mode="r+")
    unit = 70 // cache.rows_per_unit
    row = np.asarray(record[unit])
    s, e = cache.unit_rows(unit)
    row[1 + cache.data_arrays().index("rows/input_crc")] = crc32(np.asarray(crcs[s:e]))
    record[unit] = row
    cache = open_cache(str(tmp_path / "c.zarr"))
    stream = CacheStream(cache, ["input"], cfg.stream, rank=0, world=1, data=cfg.data)
    with pytest.raises(CacheError, match=r"view 1 of sample 6 \(row 70\) .* does not match the view the teacher saw"):
        list(stream.epoch(1))


def test_inspect_says_a_cache_needs_its_data(without_pixels, teacher_path: Path) -> None:
    cfg, path = without_pixels
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0 and "regenerated from the data (the cache needs its data)" in result.output
    assert json.loads(CliRunner().invoke(main, ["inspect", str(path), "--json"]).output)["input"].startswith("regen")
    report = verify_with_teacher(
        open_cache(str(path)), str(teacher_path), fraction=0.2, show_progress=False, data=cfg.data
    )
    assert report.ok and report.checked["rows_recomputed"] > 0


def test_the_format_docs_decode_a_quantised_boundary_with_numpy(quantized) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "cache-format.md").read_text()
    snippet = doc.split("decoded with numpy: unit u's rows of `boundary/1`.\n\n```python\n", 1)[1].split("```", 1)[0]
    _, path = quantized
    g = zarr.open_group(str(path), mode="r")
    m = g.attrs["litcache"]
    cache = open_cache(str(path))
    u = 2
    s, e = cache.unit_rows(u)
    namespace = {"np": np, "g": g, "m": m, "u": u, "s": s, "e": e}
    exec(snippet, namespace)
    np.testing.assert_array_equal(namespace["b1"], cache.read(["boundary/1"], s, e)["boundary/1"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits", [8, 4])
def test_the_gpu_quantiser_gives_the_reference_codes(bits: int) -> None:
    """Where the teacher runs on a GPU, the codes are made and packed there."""
    x = torch.relu(torch.randn(64, 16, 8, 8, generator=torch.Generator().manual_seed(bits)) * 3)
    codes, params = q.quantize(x.numpy(), bits)
    packed, got_params, _ = quantize_unit(x.cuda(), bits)
    assert packed.device.type == "cuda"
    np.testing.assert_array_equal(packed.cpu().numpy(), q.pack_codes(codes, bits))
    np.testing.assert_array_equal(got_params.cpu().numpy(), params)


def test_a_sharded_quantised_cache_reads_as_the_unsharded_one(
    quantized, make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    cfg, plain = quantized
    sharded = tmp_path / "sharded.zarr"
    extract(make_cfg("store.bits=4", "store.shard_chunks=2"), str(teacher_path), str(sharded), show_progress=False)
    a, b = open_cache(str(sharded)), open_cache(str(plain))
    assert a.rows_per_unit == 2 * a.rows_per_chunk and a.array("boundary/1").shards is not None
    assert verify_cache(a, show_progress=False).ok
    names = ["boundary/1", "boundary/2", "boundary/3"]
    for name, x in a.read(names, 0, a.rows).items():  # per-unit scales: a unit is a shard here, a chunk there
        ref = b.read([name], 0, b.rows)[name]
        bound = (
            b.boundary_stats()[int(name[-1]) - 1]["error_bound"] + a.boundary_stats()[int(name[-1]) - 1]["error_bound"]
        )
        assert np.abs(x.astype(np.float32) - ref.astype(np.float32)).max() <= bound
