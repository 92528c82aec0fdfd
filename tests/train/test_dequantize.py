"""Quantised boundaries dequantised in torch past the stream's workers: the very values of the format's numpy
reference and of ``Cache.read``, bit for bit, whatever the code width, layout and block."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import litcache.train.dequantize as dq
from litcache.cache import quantize as q
from litcache.cache.reader import Cache, open_cache
from litcache.config import PipelineConfig, StreamConfig
from litcache.extract import extract
from litcache.train.stream import ROW, CacheStream, dequantize_batches

UNIT = 5  # rows per unit of the generated rows


def generated_units(bits: int, row_shape: tuple[int, ...], units: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed rows of ``units`` units and each unit's (2, C) scales: signed and post-ReLU channels, an all-zero one."""
    rng = np.random.default_rng(seed)
    packed, params = [], []
    for u in range(units):
        x = (rng.standard_normal((UNIT, *row_shape)) * (u + 1)).astype(np.float32)
        axis = q.channel_axis(row_shape) + 1
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, 1)
        x[tuple(index)] = 0.0  # a channel that is all zeros (scale 1)
        index[axis] = slice(1, None, 2)
        x[tuple(index)] = np.maximum(x[tuple(index)], 0)  # channels after a ReLU (zero point 0)
        codes, p = q.quantize(x, bits)
        packed.append(q.pack_codes(codes, bits))
        params.append(p)
    return np.concatenate(packed), np.stack(params)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize(
    "row_shape",
    [(16, 8, 8), (3, 5, 5), (12, 16), (7, 9), (40,)],
    ids=["chw", "chw-odd", "tokens-width", "tokens-odd-width", "vector"],
)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_values_are_the_references_bit_for_bit(
    bits: int, row_shape: tuple[int, ...], dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed, params = generated_units(bits, row_shape, units=4, seed=bits)
    expected = np.concatenate(
        [q.dequantize(packed[u * UNIT : (u + 1) * UNIT], params[u], bits, row_shape, dtype) for u in range(4)]
    )
    shipped = np.concatenate([dq.with_scales(packed[u * UNIT : (u + 1) * UNIT], params[u]) for u in range(4)])
    order = np.random.default_rng(0).permutation(len(packed))  # a batch's rows come from several units
    spec = dq.QuantizedArray(bits, row_shape, q.channel_axis(row_shape), getattr(torch, dtype))
    monkeypatch.setattr(dq, "_BLOCK_ELEMENTS", 3 * int(np.prod(row_shape)))  # blocks of 3 rows: the last one short
    decode = dq.Dequantizer(spec)
    for rows in (order, order[:7], order):  # the kept buffers serve batches of other sizes
        got = decode(torch.from_numpy(shipped[rows]))
        assert got.dtype == getattr(torch, dtype) and got.shape == (len(rows), *row_shape)
        assert np.array_equal(got.numpy().view(np.uint8), expected[rows].view(np.uint8))


def test_a_shipped_row_is_its_codes_then_its_units_scales() -> None:
    packed, params = generated_units(4, (16, 8, 8), units=1, seed=0)
    shipped = dq.with_scales(packed, params[0])
    assert shipped.dtype == np.uint8 and shipped.shape == (UNIT, packed.shape[1] + params[0].nbytes)
    assert np.array_equal(shipped[:, : packed.shape[1]], packed)
    assert all(np.array_equal(row[packed.shape[1] :].view(np.float32).reshape(2, 16), params[0]) for row in shipped)


def test_the_words_hold_the_references_codes() -> None:
    packed, _ = generated_units(4, (16, 8, 8), units=1, seed=0)
    spec = dq.QuantizedArray(4, (16, 8, 8), 0, torch.float16)
    words = dq.Dequantizer(spec).words(torch.from_numpy(packed)).words
    codes = words.view(torch.uint8).numpy().reshape(UNIT, 16, 8, 8)
    assert np.array_equal(codes, q.unpack_codes(packed, 4, (16, 8, 8)))


def test_batches_come_dequantised_in_order_and_a_failure_reaches_the_consumer() -> None:
    packed, params = generated_units(4, (16, 8, 8), units=3, seed=1)
    spec = dq.QuantizedArray(4, (16, 8, 8), 0, torch.float16)
    batches = [
        {
            "boundary/1": torch.from_numpy(dq.with_scales(packed[u * UNIT : (u + 1) * UNIT], params[u])),
            ROW: torch.arange(u, u + 1),
        }
        for u in range(3)
    ]
    out = list(dequantize_batches(iter(batches), {"boundary/1": spec}))
    for u, b in enumerate(out):
        assert list(b) == ["boundary/1", ROW] and b[ROW].tolist() == [u]
        expected = q.dequantize(packed[u * UNIT : (u + 1) * UNIT], params[u], 4, (16, 8, 8))
        assert np.array_equal(b["boundary/1"].numpy().view(np.uint16), expected.view(np.uint16))
    broken = [*batches[:2], {"boundary/1": batches[2]["boundary/1"][:, :100], ROW: batches[2][ROW]}]
    stream = dequantize_batches(iter(broken), {"boundary/1": spec})
    assert [b[ROW].tolist() for b in itertools.islice(stream, 2)] == [[0], [1]]
    with pytest.raises(RuntimeError):
        next(stream)
    early = dequantize_batches(iter(batches), {"boundary/1": spec})
    next(early)
    early.close()  # a consumer that stops early


@pytest.mark.skipif(not dq._per_thread_settings(), reason="torch's native thread pool has one size for the process")
def test_one_thread_leaves_the_threads_as_they_were() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with dq.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def quantized_cache(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Cache:
    """4-bit codes, 3 views of 40 samples in units of 6 rows: views 1 and 2 start and end inside a unit."""
    out = tmp_path_factory.mktemp("q4-stream") / "cache.zarr"
    extract(make_cfg("store.bits=4", "extract.views=3", "store.chunk_mb=0.1875"), str(teacher_path), str(out), limit=40)
    cache = open_cache(str(out))
    assert cache.quant_bits == 4 and cache.samples % cache.rows_per_unit != 0
    return cache


@pytest.mark.parametrize(("workers", "verify"), [(0, True), (0, False), (2, True)])
def test_the_stream_gives_what_cache_read_gives(quantized_cache: Cache, workers: int, verify: bool) -> None:
    cache = quantized_cache
    names = ["input", "boundary/1", "rows/sample", "boundary/3"]
    whole = cache.read(names, 0, cache.rows)
    cfg = StreamConfig(batch_size=8, shuffle_buffer=16, workers=workers, seed=0, verify=verify)
    threads = torch.get_num_threads()
    for epoch in (0, 1):
        batches = list(CacheStream(cache, names, cfg, rank=0, world=1).epoch(epoch))
        assert len(batches) == cache.samples // 8
        for batch in batches:
            assert list(batch) == [*names, ROW]
            assert torch.get_num_threads() == threads  # the consumer runs with its own threads
            rows = batch[ROW].numpy()
            assert set(rows // cache.samples) == {epoch}
            for name in names:
                assert batch[name].dtype == torch.from_numpy(whole[name][:1]).dtype
                assert np.array_equal(batch[name].numpy().view(np.uint8), whole[name][rows].view(np.uint8))


def test_read_unit_gives_codes_and_the_units_scales_as_stored(quantized_cache: Cache) -> None:
    cache = quantized_cache
    s, e = cache.unit_rows(2)
    stored = cache.read_unit(2, ["boundary/2", "input"], decode=False)
    assert list(stored) == ["boundary/2", "input", "quant/2"]
    channels = cache.boundary_shapes()[2][0]
    assert stored["boundary/2"].dtype == np.uint8 and stored["quant/2"].shape == (1, 2, channels)
    assert np.array_equal(stored["boundary/2"], np.asarray(cache.array("boundary/2")[s:e]))
    assert np.array_equal(stored["quant/2"], np.asarray(cache.array("quant/2")[2:3]))
