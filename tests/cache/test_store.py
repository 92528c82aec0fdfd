from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import litcache.cache.codecs
import litcache.cache.writer
from litcache import load_model, open_cache
from litcache.cache.layout import ArraySpec, rows_per_chunk
from litcache.cache.writer import CacheWriter, open_writer, prepare_output
from litcache.config import PipelineConfig, StoreConfig
from litcache.data import to_unit_float
from litcache.errors import CacheError
from litcache.extract import extract


def test_layout_chunks_along_rows_only(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    assert (cache.rows_per_chunk, cache.rows_per_unit, cache.num_units) == (16, 16, 8)
    assert cache.data_arrays() == [
        "rows/sample",
        "rows/view",
        "rows/label",
        "input",
        "boundary/1",
        "boundary/2",
        "boundary/3",
        "logits",
    ]
    for name in cache.data_arrays():
        arr = cache.array(name)
        assert arr.shape[0] == cache.rows
        assert arr.chunks == (cache.rows_per_chunk, *arr.shape[1:]), name  # whole rows in every chunk
        assert arr.shards is None
        assert arr.dtype.kind in "iuf", name  # plain numbers: no object dtype, no pickle
        assert list(arr.shape[1:]) == cache.manifest["arrays"][name]["row_shape"]
        assert str(arr.dtype) == cache.manifest["arrays"][name]["dtype"]
    assert cache.array("progress/units").shape == (8, 1 + len(cache.data_arrays()))
    assert cache.array("progress/stats").shape == (8, 3, 4)  # sum, sum of squares, max |x|, error bound
    assert [cache.array(f"boundary/{k}").shape[1:] for k in (1, 2, 3)] == cache.boundary_shapes()[1:]


def test_the_store_holds_json_and_chunks_only(cache_path: Path) -> None:
    for path in cache_path.rglob("*"):
        if path.is_file() and path.name == "zarr.json":
            meta = json.loads(path.read_text())  # valid JSON
            assert "pickle" not in json.dumps(meta).lower()
            assert meta.get("data_type") != "object"


def test_progress_record_holds_a_crc32_per_array_and_unit(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    record = cache.array("progress/units")[:]
    assert (record[:, 0] == 1).all()
    for u in range(cache.num_units):
        s, e = cache.unit_rows(u)
        for j, name in enumerate(cache.data_arrays()):
            raw = np.ascontiguousarray(cache.array(name)[s:e]).tobytes()
            assert record[u, 1 + j] == zlib.crc32(raw), (u, name)


def test_boundary_stats_match_the_arrays(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    for k, st in enumerate(cache.manifest["boundary_stats"], start=1):
        x = cache.array(f"boundary/{k}")[:].astype(np.float64)
        assert st["mean"] == pytest.approx(x.mean(), rel=1e-7)  # float32 partial sums per row
        assert st["std"] == pytest.approx(x.std(), rel=1e-6)
        assert st["abs_max"] == np.abs(x).max()
    assert cache.boundary_stats() == cache.manifest["boundary_stats"]


def test_verify_finds_nothing_in_a_clean_cache(cache_path: Path) -> None:
    assert open_cache(str(cache_path)).verify() == []


def test_verify_finds_a_tampered_unit(cache_copy: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    chunk = group["boundary/2"][32:48]
    chunk[0, 0, 0, 0] += 1  # one value of unit 2, written back as a whole chunk after the record vouched for it
    group["boundary/2"][32:48] = chunk
    problems = open_cache(str(cache_copy)).verify()
    assert problems == ["unit 2 (rows 32..47): boundary/2 does not match its checksum"]
    assert open_cache(str(cache_copy)).verify(units=[0, 1, 3]) == []


@pytest.mark.parametrize(
    "setting",
    [
        "store.codec=blosc-zstd",
        "store.codec=zstd",
        "store.codec=blosc-lz4",
        "store.codec=none",
        "store.bitround_keepbits=5",
        "store.shard_chunks=2",
    ],
)
def test_chunks_written_and_read_by_litcache_are_zarrs(
    setting: str, make_cfg: Callable[..., PipelineConfig], teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cache.zarr"
    extract(make_cfg(setting, "store.chunk_mb=0.3"), str(teacher_path), str(out), show_progress=False)
    cache = open_cache(str(out))
    names = cache.data_arrays()
    step = cache.rows_per_chunk
    assert 1 < step < cache.rows and cache.rows % cache.rows_per_unit  # a short last unit, padded in its chunk
    # litcache's own chunk codec writes and reads every unsharded array; zarr writes and reads sharded ones
    assert all((cache.codec(n) is None) == ("shard_chunks" in setting) for n in names)
    ranges = [(0, step), (step, 2 * step), (3, step + 5), (step - 1, 3 * step + 1), (cache.rows - 7, cache.rows)]
    for start, stop in ranges:
        got = cache.read(names, start, stop)
        assert list(got) == names
        for name in names:
            want = cache.array(name)[start:stop]
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, (name, start, stop)
            assert np.array_equal(got[name], want), (name, start, stop)
            assert got[name].flags.writeable
    default = open_cache(str(cache_path))  # the same rows under the default settings, through zarr
    for name in names:
        want, got = default.array(name)[:], cache.array(name)[:]
        if name.startswith("boundary/"):  # other batch sizes in the forward, or another rounding
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2**-4, atol=1e-3)
        elif name == "logits":  # other chunk sizes batch the forward differently: float32 sums in another order
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        else:
            assert np.array_equal(got, want), name


def test_read_refuses_a_missing_chunk(cache_copy: Path) -> None:
    (cache_copy / "logits" / "c" / "5" / "0").unlink()  # zarr would read it as the fill value
    cache = open_cache(str(cache_copy))
    assert cache.read(["logits"], 0, 80)["logits"].shape == (80, 10)
    with pytest.raises(CacheError, match=r"corrupt: cannot read logits rows 80..95 \(chunk logits/c/5/0 is missing"):
        cache.read(["input", "logits"], 80, 96)


def test_verify_finds_a_lost_chunk(cache_copy: Path) -> None:
    (cache_copy / "logits" / "c" / "5" / "0").unlink()  # reads back as the fill value
    problems = open_cache(str(cache_copy)).verify()
    assert len(problems) == 1 and problems[0].startswith("unit 5") and "logits" in problems[0]


def test_units_missing_make_the_cache_incomplete(tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.zarr"
    extract(tiny_cfg, str(teacher_path), str(out), max_units=3, show_progress=False)
    cache = open_cache(str(out))
    assert cache.complete is False
    assert cache.done_units().tolist() == [True] * 3 + [False] * 5
    with pytest.raises(CacheError, match="3 of 8 units") as exc:
        cache.require_complete()
    assert "--resume" in str(exc.value)
    assert cache.verify() == [f"unit {u} (rows {16 * u}..{16 * u + 15}): not written" for u in range(3, 8)]
    writer = open_writer(str(out))
    assert isinstance(writer, CacheWriter)
    with pytest.raises(CacheError, match="incomplete"):
        writer.finish()
    assert open_cache(str(out)).manifest["complete"] is False


def test_a_unit_cut_short_is_not_counted_and_resume_rewrites_it(
    cache_path: Path, tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_crc32 = litcache.cache.writer.crc32

    def crash_in_unit_two(x: np.ndarray) -> int:
        calls["n"] += 1
        if calls["n"] == 2 * 8 + 5:  # unit 2 (the third written), after 5 of its 8 arrays
            raise OSError("disk went away")
        return real_crc32(x)

    cfg = tiny_cfg.replace(extract=dataclasses.replace(tiny_cfg.extract, writers=1))  # units in order
    monkeypatch.setattr(litcache.cache.writer, "crc32", crash_in_unit_two)
    out = tmp_path / "crashed.zarr"
    with pytest.raises(CacheError, match="cannot write unit 2 of .*: disk went away; what was written before is kept"):
        extract(cfg, str(teacher_path), str(out), show_progress=False)
    monkeypatch.setattr(litcache.cache.writer, "crc32", real_crc32)

    cache = open_cache(str(out))
    assert not cache.done_units()[2]
    assert cache.array("progress/units")[2].tolist() == [0] * 9  # no record for half a unit
    extract(cfg, str(teacher_path), str(out), resume=True, show_progress=False)
    for name in [*cache.data_arrays(), "progress/units", "progress/stats"]:
        assert np.array_equal(cache.array(name)[...], open_cache(str(cache_path)).array(name)[...]), name


def test_sharded_cache_writes_whole_shards(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    cfg = make_cfg("store.shard_chunks=2", "store.chunk_mb=0.25")
    whole, resumed = tmp_path / "whole.zarr", tmp_path / "resumed.zarr"
    extract(cfg, str(teacher_path), str(whole), limit=50, show_progress=False)  # 100 rows: a ragged last shard
    extract(cfg, str(teacher_path), str(resumed), limit=50, max_units=2, show_progress=False)
    extract(cfg, str(teacher_path), str(resumed), limit=50, resume=True, show_progress=False)
    a, b = open_cache(str(whole)), open_cache(str(resumed))
    assert (a.rows, a.rows_per_chunk, a.rows_per_unit, a.num_units) == (100, 8, 16, 7)
    assert a.unit_rows(6) == (96, 100)
    for name in a.data_arrays():
        arr = a.array(name)
        assert arr.chunks[0] == 8 and arr.shards is not None and arr.shards[0] == 16
        assert np.array_equal(arr[...], b.array(name)[...]), name
    assert a.verify() == [] and b.verify() == []
    assert a.complete and b.complete


def test_bitround_is_lossy_on_boundaries_only(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rounded.zarr"
    extract(make_cfg("store.bitround_keepbits=4"), str(teacher_path), str(out), show_progress=False)
    rounded, default = open_cache(str(out)), open_cache(str(cache_path))  # 4 and 7 mantissa bits
    for name in ("rows/sample", "rows/view", "rows/label", "input", "logits"):
        assert np.array_equal(rounded.array(name)[:], default.array(name)[:]), name
    b = rounded.array("boundary/1")[:].astype(np.float32)
    ref = default.array("boundary/1")[:].astype(np.float32)
    assert not np.array_equal(b, ref)
    np.testing.assert_allclose(b, ref, rtol=2**-4, atol=1e-4)  # subnormals round coarser
    assert rounded.verify() == []  # the checksums vouch for the rounded bytes that are stored
    x = b.astype(np.float64)
    assert rounded.manifest["boundary_stats"][0]["abs_max"] == np.abs(x).max()


def test_open_cache_is_read_only_by_default(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    with pytest.raises(ValueError, match="read-only"):
        cache.array("logits")[0:16] = 0


def test_open_cache_refuses_what_is_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no cache at"):
        open_cache(str(tmp_path / "missing.zarr"))
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(CacheError, match="not a litcache cache"):
        open_cache(str(tmp_path / "plain.zarr"))


def test_open_cache_refuses_another_format_version(cache_copy: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    group.attrs["litcache"] = {**group.attrs["litcache"], "format_version": 1}
    with pytest.raises(CacheError, match="format version 1; this litcache reads versions 2, 3, 4: re-extract"):
        open_cache(str(cache_copy))


def test_chunk_ranges_are_whole_chunks(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    assert cache.chunk_ranges() == [(s, s + 16) for s in range(0, 128, 16)]
    assert cache.chunk_ranges(range(20, 50)) == [(20, 32), (32, 48), (48, 50)]


def test_rows_per_chunk_follows_the_widest_array() -> None:
    specs = [ArraySpec("rows/sample", (), "int32"), ArraySpec("boundary/1", (16, 32, 32), "float16")]
    assert specs[1].row_bytes == 32768
    assert rows_per_chunk(specs, 4.0, 10_000) == 128
    assert rows_per_chunk(specs, 4.0, 50) == 50
    assert rows_per_chunk(specs, 0.001, 50) == 1


def test_prepare_output(tmp_path: Path, cache_path: Path) -> None:
    assert prepare_output(str(tmp_path / "new.zarr"), resume=True, overwrite=False, storage_options=None) is False
    assert prepare_output(str(cache_path), resume=True, overwrite=False, storage_options=None) is True
    with pytest.raises(CacheError, match="contradict"):
        prepare_output(str(cache_path), resume=True, overwrite=True, storage_options=None)
    stray = tmp_path / "file.zarr"
    stray.write_text("not a cache")
    with pytest.raises(CacheError, match="never overwrites"):
        prepare_output(str(stray), resume=False, overwrite=True, storage_options=None)
    assert stray.read_text() == "not a cache"


def test_store_config_codecs() -> None:
    for codec in ("zstd", "blosc-zstd", "blosc-lz4", "none"):
        codecs = litcache.cache.codecs.build_codecs(StoreConfig(codec=codec))
        assert (codecs["compressors"] is None) == (codec == "none")
        assert "filters" not in codecs  # bit rounding happens before the store: plain zarr v3 arrays


def test_rounded_boundaries_are_plain_zarr_arrays(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    assert cache.manifest["store"]["bitround_keepbits"] == 7  # the default
    for name in cache.data_arrays():
        meta = json.loads((cache_path / name / "zarr.json").read_text())
        assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc"], name  # no numcodecs filter
    b = cache.array("boundary/1")[:].view(np.uint16)
    assert not (b & 0b111).any()  # 10 - 7 mantissa bits dropped
    assert (cache.array("logits")[:].view(np.uint32) & 0xFFFF).any()  # logits are exact float32


FORMAT_DOC = Path(__file__).parents[2] / "docs" / "cache-format.md"


def test_format_doc_names_every_manifest_key_and_array(cache_path: Path) -> None:
    doc = FORMAT_DOC.read_text()
    cache = open_cache(str(cache_path))
    for key, value in cache.manifest.items():
        if isinstance(value, dict) and key not in ("store", "arrays", "pipeline", "transform"):
            for sub in value:
                assert f"`{key}.{sub}`" in doc, f"{key}.{sub}"
        else:
            assert f"`{key}`" in doc, key
    for name in [*cache.data_arrays(), "progress/units", "progress/stats", "teacher/frozen/<key>"]:
        assert f"`{'boundary/k' if name.startswith('boundary/') else name}`" in doc, name


def test_format_doc_snippet_reads_a_cache(cache_path: Path, teacher_path: Path) -> None:
    doc = FORMAT_DOC.read_text()
    code = doc.split("## Reading a cache with plain zarr\n\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code.replace('"runs/cache.zarr"', repr(str(cache_path))), namespace)  # the snippet's own asserts run
    cache = open_cache(str(cache_path))
    assert np.array_equal(namespace["labels"], cache.array("rows/label")[112:128])
    teacher, _ = load_model(teacher_path)
    with torch.no_grad():
        b0 = teacher.stem_output(to_unit_float(torch.from_numpy(cache.array("input")[: cache.rows_per_chunk])))
    torch.testing.assert_close(namespace["b0"], b0)
