"""The cache format without a network: quantised codes, bit fields, units and their checksums, and caches of the
previous format version. Torch-free: ``.ci/zarr-newest`` runs these against the newest zarr 3.x."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from litcache.cache import quantize as q
from litcache.cache.layout import ArraySpec, float_error
from litcache.cache.reader import open_cache
from litcache.cache.verify import verify_cache
from litcache.cache.writer import create_cache
from litcache.config import StoreConfig
from litcache.errors import CacheError

pytestmark = pytest.mark.zarr_only
FIXTURES = Path(__file__).parents[1] / "fixtures"
SHAPES = {1: (4, 6, 6), 2: (10, 12)}  # a convolution's (C, H, W) and a transformer's (tokens, width)


def activations(rng: np.random.Generator, n: int, shape: tuple[int, ...], signed: bool) -> np.ndarray:
    x = rng.standard_normal((n, *shape)).astype(np.float32) * 3
    return x if signed else np.maximum(x, 0)


@pytest.mark.parametrize("bits", q.BITS)
@pytest.mark.parametrize("shape", SHAPES.values())
@pytest.mark.parametrize("signed", [False, True])
def test_codes_are_within_half_a_step_and_zero_is_exact(bits: int, shape: tuple[int, ...], signed: bool) -> None:
    x = activations(np.random.default_rng(bits), 8, shape, signed)
    x[:, ..., 0] = 0.0  # exact zeros in every channel
    codes, params = q.quantize(x, bits)
    assert codes.dtype == np.uint8 and codes.shape == x.shape and codes.max() < 2**bits
    axis = q.channel_axis(shape)
    assert params.shape == (2, shape[axis])
    back = q.dequantize(q.pack_codes(codes, bits), params, bits, shape, "float32")
    step = np.expand_dims(params[0], [i for i in range(len(shape) + 1) if i != axis + 1])
    assert (np.abs(back - x) <= step / 2 * (1 + 1e-6)).all()
    assert (back[x == 0] == 0).all()  # zero stays exact
    if not signed:
        assert (params[1] == 0).all()  # a channel that is never negative has no offset
    half = q.dequantize(q.pack_codes(codes, bits), params, bits, shape, "float16").astype(np.float32)
    bound = step / 2 + np.vectorize(lambda v: float_error(abs(v), 10))(back)
    assert (np.abs(half - x) <= bound * (1 + 1e-6)).all()  # and the float16 the readers decode to rounds on top


def test_a_code_is_split_into_fields_of_powers_of_two_the_widest_first() -> None:
    assert [q.fields(b) for b in q.BITS] == [
        ((2, 0),),
        ((2, 1), (1, 0)),
        ((4, 0),),
        ((4, 1), (1, 0)),
        ((4, 2), (2, 0)),
        ((4, 3), (2, 1), (1, 0)),
        ((8, 0),),
    ]


def test_four_bit_codes_are_nibbles_the_rows_second_half_in_the_high_ones() -> None:
    codes = np.arange(70, dtype=np.uint8)[None] % 16  # 70 elements: padded to 128, 64 bytes
    packed = q.pack_codes(codes, 4)
    assert packed.shape == (1, q.packed_row_bytes((70,), 4)) == (1, 64)
    padded = np.concatenate([codes[0], np.zeros(58, np.uint8)])
    assert packed[0].tolist() == (padded[:64] | padded[64:] << 4).tolist()  # byte i: element i, element 64 + i
    np.testing.assert_array_equal(q.unpack_codes(packed, 4, (70,)), codes)


@pytest.mark.parametrize("bits", [2, 6])
def test_each_field_holds_its_bits_of_every_code_in_its_parts(bits: int) -> None:
    """2 bits: four parts a byte, part j at bits 2j; 6 bits: the top four bits as nibbles, then the low two."""
    codes = np.random.default_rng(bits).integers(0, 2**bits, size=(3, 64), dtype=np.uint8)
    packed = q.pack_codes(codes, bits)
    assert packed.shape == (3, 8 * bits)
    if bits == 2:
        expected = sum(codes[:, 16 * j : 16 * (j + 1)] << 2 * j for j in range(4))
    else:
        high, low = codes >> 2, codes & 3
        expected = np.concatenate(
            [high[:, :32] | high[:, 32:] << 4, sum(low[:, 16 * j : 16 * (j + 1)] << 2 * j for j in range(4))], axis=1
        )
    np.testing.assert_array_equal(packed, expected.astype(np.uint8))


@pytest.mark.parametrize("bits", q.BITS)
@pytest.mark.parametrize("shape", [*SHAPES.values(), (3, 5, 7), (300,), (2, 40, 40)])
def test_unpacking_and_dequantising_follow_the_formula_element_by_element(bits: int, shape: tuple[int, ...]) -> None:
    """The readers' unpacking against each code's bits read one at a time from where the format puts them, and
    (q - z)·s in float32 for every element."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, size=(6, *shape), dtype=np.uint8)
    packed = q.pack_codes(codes, bits)
    n, padded = codes[0].size, q.padded_size(shape)
    one_bit_at_a_time = np.zeros((6, padded), dtype=np.uint8)
    start = 0
    for width, offset in q.fields(bits):  # element e of the padded row is element e % L of part e // L
        part_len = padded * width // 8
        field = packed[:, start : start + part_len]
        start += part_len
        for e in range(padded):
            part, i = divmod(e, part_len)
            for bit in range(width):
                one_bit_at_a_time[:, e] |= ((field[:, i] >> (part * width + bit)) & 1) << (offset + bit)
    assert start == packed.shape[1] and not one_bit_at_a_time[:, n:].any()
    np.testing.assert_array_equal(q.unpack_codes(packed, bits, shape), one_bit_at_a_time[:, :n].reshape(codes.shape))
    axis = q.channel_axis(shape)
    params = np.stack([rng.uniform(0.01, 1.0, shape[axis]), rng.integers(0, 2**bits, shape[axis])]).astype(np.float32)
    broadcast = [i for i in range(len(shape) + 1) if i != axis + 1]
    s, z = np.expand_dims(params[0], broadcast), np.expand_dims(params[1], broadcast)
    for dtype in ("float16", "float32"):
        expected = ((codes.astype(np.float32) - z) * s).astype(dtype)
        np.testing.assert_array_equal(q.dequantize(packed, params, bits, shape, dtype), expected)


def quantized_cache(path: Path, bits: int = 4, units: int = 3, rows_per_unit: int = 5) -> dict[str, np.ndarray]:
    """A cache of ``units`` units whose boundaries are the codes of random activations; returns what went in."""
    rng = np.random.default_rng(0)
    rows = units * rows_per_unit
    shapes = {k: SHAPES[k] for k in (1, 2)}
    specs = [ArraySpec(f"rows/{name}", (), "int32") for name in ("sample", "view", "label")]
    specs += [ArraySpec(f"boundary/{k}", (q.packed_row_bytes(s, bits),), "uint8") for k, s in shapes.items()]
    unit_specs = [ArraySpec(q.quant_name(k), (2, s[q.channel_axis(s)]), "float32") for k, s in shapes.items()]
    manifest = {
        "rows": rows,
        "views": 1,
        "data": {"samples": rows},
        "teacher": {"sections": ["a", "b"], "boundary_shapes": [[1], *map(list, shapes.values())], "b0": "recomputed"},
        "quantization": {
            "bits": bits,
            "decoded_dtype": "float32",
            "params": {f"boundary/{k}": q.quant_name(k) for k in shapes},
        },
    }
    chunk_mb = rows_per_unit * max(s.row_bytes for s in specs) / 2**20
    cache = create_cache(str(path), manifest, specs, StoreConfig(chunk_mb=chunk_mb, bits=bits), {}, None, unit_specs)
    assert cache.rows_per_unit == rows_per_unit
    values = {f"boundary/{k}": activations(rng, rows, s, signed=k == 2) for k, s in shapes.items()}
    decoded = {name: np.empty_like(x) for name, x in values.items()}
    for u in range(units):
        s, e = cache.unit_rows(u)
        arrays = {"rows/sample": np.arange(s, e, dtype=np.int32), "rows/view": np.zeros(e - s, dtype=np.int32)}
        arrays["rows/label"] = np.zeros(e - s, dtype=np.int32)
        for k, shape in shapes.items():
            codes, params = q.quantize(values[f"boundary/{k}"][s:e], bits)
            arrays[f"boundary/{k}"] = q.pack_codes(codes, bits)
            arrays[q.quant_name(k)] = params
            decoded[f"boundary/{k}"][s:e] = q.dequantize(arrays[f"boundary/{k}"], params, bits, shape, "float32")
        cache.write_unit(u, arrays, stats=np.zeros((2, 4)))
    return decoded


def test_a_quantised_cache_reads_back_dequantised(tmp_path: Path) -> None:
    decoded = quantized_cache(tmp_path / "c.zarr")
    cache = open_cache(str(tmp_path / "c.zarr"))
    assert cache.quant_bits == 4 and cache.unit_arrays() == ["quant/1", "quant/2"]
    for start, stop in [(0, 15), (3, 12), (5, 10)]:  # ranges across units, and inside one
        got = cache.read(["boundary/1", "boundary/2"], start, stop)
        for name, x in got.items():
            np.testing.assert_array_equal(x, decoded[name][start:stop])
    stored = cache.read(["boundary/2", "quant/2"], 5, 10, decode=False)
    assert stored["boundary/2"].dtype == np.uint8 and stored["quant/2"].shape == (1, 2, 12)
    np.testing.assert_array_equal(cache.read_unit(1, ["boundary/1"])["boundary/1"], decoded["boundary/1"][5:10])
    assert verify_cache(cache, show_progress=False).ok


def test_a_changed_scale_is_caught_by_its_checksum(tmp_path: Path) -> None:
    quantized_cache(tmp_path / "c.zarr")
    arr = zarr.open_array(str(tmp_path / "c.zarr"), path="quant/2", mode="r+")
    arr[1, 0] = arr[1, 0] * 2  # every value of unit 1 would come back twice as large
    cache = open_cache(str(tmp_path / "c.zarr"))
    assert verify_cache(cache, show_progress=False).lines() == [
        "unit 1 (rows 5..9): quant/2 does not match its checksum"
    ]
    with pytest.raises(CacheError, match="quant/2 rows 5..9 do not match their checksum"):
        cache.read_unit(1, ["boundary/2"])
    cache.read_unit(0, ["boundary/2"])  # the other units are intact


def test_a_cache_of_format_version_2_reads_as_before() -> None:
    cache = open_cache(str(FIXTURES / "cache-v2.zarr"))  # written by litcache before version 3 (make_cache_v2.py)
    assert cache.manifest["format_version"] == 2 and cache.quant_bits == 0 and cache.unit_arrays() == []
    assert cache.input_stored and cache.data_arrays()[3] == "input"
    assert verify_cache(cache, show_progress=False).ok  # every unit against its checksums, as version 2 wrote them
    x = cache.read(["boundary/1", "boundary/2", "input"], 0, cache.rows)
    assert x["boundary/1"].dtype == np.float16 and x["boundary/1"].shape == (16, 4, 16, 16)
    stats = cache.boundary_stats()
    assert len(stats) == 3 and cache.b0_stored  # b0, b1, b2: the stem output is smaller than the pixels here
    assert all(set(s) == {"boundary", "mean", "std", "abs_max"} for s in stats)  # no error bound recorded
    assert stats[1]["mean"] == pytest.approx(float(x["boundary/1"].astype(np.float64).mean()), rel=1e-6)


def test_a_newer_format_version_is_refused_in_one_line(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "cache-v2.zarr", tmp_path / "c.zarr")
    meta = json.loads((tmp_path / "c.zarr" / "zarr.json").read_text())
    meta["attributes"]["litcache"]["format_version"] = 5
    (tmp_path / "c.zarr" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError) as err:
        open_cache(str(tmp_path / "c.zarr"))
    assert "format version 5; this litcache reads versions 2, 3, 4" in str(err.value) and "\n" not in str(err.value)


def relabel(path: Path, version: int) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["litcache"]["format_version"] = version
    (path / "zarr.json").write_text(json.dumps(meta))


def test_version_3_reads_where_its_boundaries_are_floats_and_is_refused_where_they_are_bit_planes(
    tmp_path: Path,
) -> None:
    """Version 4 changed only how quantised codes are packed: version 3's float caches are version 4's."""
    quantized_cache(tmp_path / "q.zarr")
    relabel(tmp_path / "q.zarr", 3)
    with pytest.raises(CacheError) as err:
        open_cache(str(tmp_path / "q.zarr"))
    assert "version 3, whose quantised codes are bit planes" in str(err.value) and "re-extract" in str(err.value)
    assert "\n" not in str(err.value)
    specs = [ArraySpec("rows/sample", (), "int32"), ArraySpec("boundary/1", SHAPES[1], "float16")]
    manifest = {"rows": 5, "views": 1, "data": {"samples": 5}, "teacher": {"boundary_shapes": [[1], list(SHAPES[1])]}}
    floats = create_cache(str(tmp_path / "f.zarr"), manifest, specs, StoreConfig(bits=0), {})
    x = activations(np.random.default_rng(0), 5, SHAPES[1], signed=True).astype(np.float16)
    floats.write_unit(0, {"rows/sample": np.arange(5, dtype=np.int32), "boundary/1": x}, stats=np.zeros((1, 4)))
    relabel(tmp_path / "f.zarr", 3)
    np.testing.assert_array_equal(open_cache(str(tmp_path / "f.zarr")).read(["boundary/1"], 0, 5)["boundary/1"], x)
