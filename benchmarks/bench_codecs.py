"""The codecs stage: ``codec_table``, real boundaries extracted losslessly and rewritten with zarr under each codec;
bytes per element, write and read MB/s, and the error of the lossy rows."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from common import cpu_seconds, log, median, rmtree, timed_extract
from harness import Bench
from zarr.codecs import BloscCodec

from litcache.cache import quantize as q
from litcache.cache.codecs import bitround, build_codecs
from litcache.cache.reader import open_cache
from litcache.config import StoreConfig


def codec_settings() -> list[tuple[str, StoreConfig]]:
    """The table's rows: a label and the store settings it writes with."""
    float16 = dict(bits=0)  # the float rows: no quantisation (store.bits defaults to 4)
    return [
        ("blosc-zstd-1 shuffle 1MiB", StoreConfig(bitround_keepbits=0, **float16)),
        ("blosc-zstd-1 shuffle, Blosc blocks", StoreConfig(blosc_blocksize=0, bitround_keepbits=0, **float16)),
        ("blosc-lz4-1 shuffle 1MiB", StoreConfig(codec="blosc-lz4", bitround_keepbits=0, **float16)),
        ("zstd-1", StoreConfig(codec="zstd", bitround_keepbits=0, **float16)),
        ("zstd-3", StoreConfig(codec="zstd", level=3, bitround_keepbits=0, **float16)),
        ("blosc-zstd-1 shuffle 1MiB + bitround 7 (float16 default)", StoreConfig(**float16)),
        ("blosc-zstd-1 shuffle 1MiB + bitround 5", StoreConfig(bitround_keepbits=5, **float16)),
        ("none", StoreConfig(codec="none", bitround_keepbits=0, **float16)),
        *[(label, StoreConfig(bits=bits)) for label, bits in QUANTIZED + BYTE_CODES],
    ]


QUANTIZED = [(f"int{b} codes, bit fields + blosc-zstd-1 1MiB", b) for b in (8, 6, 4)]  # the store.bits rows
# the alternative packing the codes is measured against: one code a byte, bit-shuffled by Blosc on the host
BYTE_CODES = [(f"int{b} codes, a byte each + blosc-zstd-1 bitshuffle 1MiB", b) for b in (8, 4)]


def quantized_write_and_read(
    path: Path, x: np.ndarray, chunk: int, bits: int, cfg: StoreConfig, packed_fields: bool = True
) -> tuple[float, float, int, np.ndarray]:
    """``x`` quantised chunk by chunk (per unit and channel, as the extractor does; here with the numpy reference
    quantiser on the host, where the extractor uses torch on the teacher's device), its bit fields written to a
    zarr array under ``cfg``'s codec, then read and dequantised: write s, read s, stored bytes, x decoded."""
    t = time.perf_counter()
    units = [q.quantize(x[s : s + chunk].astype(np.float32), bits) for s in range(0, len(x), chunk)]
    if packed_fields:
        packed = np.concatenate([q.pack_codes(codes, bits) for codes, _ in units])
        codecs = build_codecs(cfg)
    else:
        packed = np.concatenate([codes.reshape(len(codes), -1) for codes, _ in units])
        codecs = {"compressors": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", blocksize=1 << 20)}
    arr = zarr.create_array(
        str(path), shape=packed.shape, chunks=(chunk, packed.shape[1]), dtype="uint8", fill_value=0, **codecs
    )
    arr[:] = packed
    write = time.perf_counter() - t
    stored = arr.nbytes_stored() + sum(params.nbytes for _, params in units)  # the scales, uncompressed
    back_arr = zarr.open_array(str(path), mode="r")
    t = time.perf_counter()
    codes = back_arr[:]
    if not packed_fields:
        codes = q.pack_codes(codes.reshape(len(codes), *x.shape[1:]), bits)  # the reader's path from here on
    back = np.concatenate(
        [
            q.dequantize(codes[s : s + chunk], params, bits, x.shape[1:], "float16")
            for s, (_, params) in zip(range(0, len(x), chunk), units, strict=True)
        ]
    )
    read = time.perf_counter() - t
    return write, read, stored, back


def write_and_read(path: Path, x: np.ndarray, chunk: int, cfg: StoreConfig) -> tuple[float, float, int, np.ndarray]:
    """``x`` written to a zarr array at ``path`` under ``cfg`` and read back: write s, read s, stored bytes, x read."""
    arr = zarr.create_array(
        str(path),
        shape=x.shape,
        chunks=(chunk, *x.shape[1:]),
        dtype=x.dtype,
        fill_value=0,
        **build_codecs(cfg),
    )
    t = time.perf_counter()
    arr[:] = bitround(x, cfg.bitround_keepbits) if cfg.bitround_keepbits else x  # as the writer
    write = time.perf_counter() - t
    stored = arr.nbytes_stored()
    back_arr = zarr.open_array(str(path), mode="r")
    t = time.perf_counter()
    back = back_arr[:]
    read = time.perf_counter() - t
    return write, read, stored, back


def measure_codec(
    label: str, cfg: StoreConfig, data: dict[str, np.ndarray], chunk: int, folder: Path, reps: int
) -> dict[str, Any]:
    """One row of the table: every array of ``data`` written and read ``reps`` times under ``cfg`` (quantised when
    ``cfg.bits``)."""
    raw = sum(x.nbytes for x in data.values())
    elements = sum(x.size for x in data.values())
    writes, reads, stored, err_max, err_rms = [], [], 0, 0.0, 0.0
    for rep in range(reps):
        rmtree(folder)
        w = r = 0.0
        stored = 0
        for name, x in data.items():
            if cfg.bits:
                in_fields = label not in dict(BYTE_CODES)
                w_s, r_s, stored_s, back = quantized_write_and_read(folder / name, x, chunk, cfg.bits, cfg, in_fields)
            else:
                w_s, r_s, stored_s, back = write_and_read(folder / name, x, chunk, cfg)
            w += w_s
            r += r_s
            stored += stored_s
            if rep == 0 and (cfg.bitround_keepbits or cfg.bits):
                x32, d = x.astype(np.float32), back.astype(np.float32) - x.astype(np.float32)
                err_max = max(err_max, float(np.abs(d).max()) / (float(np.abs(x32).max()) or 1.0))
                err_rms = max(err_rms, float(np.sqrt(np.mean(d**2) / (np.mean(x32**2) or 1.0))))
            elif rep == 0 and not np.array_equal(back, x):
                raise AssertionError(f"codec {label} is not lossless on {name}")
        writes.append(w)
        reads.append(r)
    return {
        "codec": label,
        "dtype": "float16",
        "store": {k: getattr(cfg, k) for k in ("codec", "level", "blosc_blocksize", "bitround_keepbits", "bits")},
        "bytes_per_element": stored / elements,
        "ratio_vs_float16": raw / stored,
        "write_MBps": raw / 1e6 / median(writes),
        "read_MBps": raw / 1e6 / median(reads),
        "write_seconds": writes,
        "read_seconds": reads,
        "stored_bytes": stored,
        "max_abs_error_rel_to_absmax": err_max,
        "rms_error_rel": err_rms,
    }


def own_vs_zarr_read(cache_path: Path, reps: int) -> dict[str, Any]:
    """Every chunk of the boundaries read by litcache's own chunk codec (``Cache.read``: the store's bytes fetched
    concurrently, decoded by numcodecs) and by zarr's public slicing (``arr[s:e]``, its codec pipeline),
    alternating: the case for the private door (``litcache/cache/_zarr.py``)."""
    cache = open_cache(str(cache_path))
    names = [n for n in cache.data_arrays() if n.startswith("boundary/")]
    ranges = cache.chunk_ranges()
    own, public, own_cpu, public_cpu = [], [], [], []
    for _ in range(reps):
        t, c = time.perf_counter(), cpu_seconds()
        for s, e in ranges:
            cache.read(names, s, e)
        own.append(time.perf_counter() - t)
        own_cpu.append(cpu_seconds() - c)
        t, c = time.perf_counter(), cpu_seconds()
        for s, e in ranges:
            for n in names:
                cache.array(n)[s:e]
        public.append(time.perf_counter() - t)
        public_cpu.append(cpu_seconds() - c)
    return {
        "own_seconds": own,
        "zarr_public_seconds": public,
        "own_cpu_seconds": own_cpu,
        "zarr_public_cpu_seconds": public_cpu,
        "speedup": median(public) / median(own),
        "cpu_ratio": median(public_cpu) / median(own_cpu),  # the stream's workers are bound by CPU
    }


def bench_codecs(bench: Bench) -> None:
    """codec_table: real boundaries, extracted losslessly, rewritten under each codec; bytes/element and MB/s."""
    rows = 1024 if bench.mode == "quick" else 4096  # whole chunks: a multiple of 128
    lossless = bench.cfg.replace(
        extract=dataclasses.replace(bench.cfg.extract, views=1),
        store=dataclasses.replace(bench.cfg.store, bitround_keepbits=0, bits=0),  # exact float16 to start from
    )
    source = bench.work / "codec-source.zarr"
    timed_extract(lossless, bench.real_teacher[0], source, rows)
    src = open_cache(str(source))
    own_read = own_vs_zarr_read(source, bench.size["codec_reps"])
    log(
        f"whole-chunk reads: zarr's public slicing takes {own_read['speedup']:.2f}x the wall time and "
        f"{own_read['cpu_ratio']:.2f}x the CPU of litcache's own codec"
    )
    chunk = src.rows_per_chunk
    data = {n: src.array(n)[:] for n in src.data_arrays() if n.startswith("boundary/")}
    table = []
    folder = bench.work / "codecs"
    for label, cfg in codec_settings():
        table.append(measure_codec(label, cfg, data, chunk, folder, bench.size["codec_reps"]))
        log(
            f"codec {label}: {table[-1]['bytes_per_element']:.3f} B/elem, "
            f"write {table[-1]['write_MBps']:.0f} MB/s, read {table[-1]['read_MBps']:.0f} MB/s"
        )
    rmtree(folder)
    rmtree(source)
    bench.results["codec_table"] = {
        "value": table,
        "target": "measured",
        "met": None,
        "raw_bytes": sum(x.nbytes for x in data.values()),
        "elements": sum(x.size for x in data.values()),
        "rows": rows,
        "rows_per_chunk": chunk,
        "own_codec_vs_zarr_read": own_read,
        "note": "real ResNet-20 boundaries 1..S of one lossless extraction (float16), written with zarr to "
        "local disk, same chunks as the cache; MB/s of decoded bytes through zarr's codec pipeline (the stream "
        "decodes whole chunks itself, faster); errors are max over boundaries (lossy rows only); the int rows "
        "include quantising (numpy, on the host) in their write time and dequantising to float16 in their read time",
    }
