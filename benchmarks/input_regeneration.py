"""What a cache without pixels costs the stream: views stored (``store.input=pixels``) against views made again
from the data in the stream's workers and checked by CRC-32 (``store.input=crc32``), at 32 px and at 224 px.

    python benchmarks/input_regeneration.py          # a few minutes on a 2-core CPU -> results/input_regeneration.json

- 32 px: the real CIFAR-10 training shards (JPEG), pad-crop-flip, the first ``--rows-32`` images, one view.
- 224 px: the generated shards of ``data_scaling.py`` (JPEGs of sides 192-320), random-resized-crop at 224,
  the first ``--rows-224`` images, one view.

For each size, two caches of the same rows with a small teacher (a strided convolution stem and two blocks:
small boundaries, so the stream's cost is the input's), quantised to 4 bits; then whole epochs of
``CacheStream`` over ``input`` and ``boundary/1`` (what section 1 and its target read), the default stream
settings (batch 128, 2 workers, CRC-32 check of every unit), the two caches alternating, ``--repeats`` pairs.
Reported: rows/s of each and their ratio (crc32 / pixels; below 1 means regenerating is slower), and the bytes
a row's input takes in the store (pixels, compressed, against 4 bytes of CRC) beside a row's boundaries.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from litcache.cache.reader import open_cache
from litcache.cache.summary import summarize
from litcache.config import load_pipeline
from litcache.extract import extract
from litcache.models.checkpoint import save_model
from litcache.models.registry import build_model
from litcache.train.stream import CacheStream

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "input-regeneration"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"
FACTORY = f"{Path(__file__).resolve()}:tiny_net"


def tiny_net(num_classes: int = 10) -> nn.Module:
    """A stem that divides the side by 8, two blocks (the sections ``1`` and ``2``), a linear head."""

    def block() -> nn.Module:
        return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())

    return nn.Sequential(
        nn.Conv2d(3, 16, 8, stride=8),
        block(),
        block(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def pipeline(source: Path, size: int, store_input: str) -> Any:
    model = f"{{factory: {json.dumps(FACTORY)}, sections: ['1', '2']}}"
    view = ["data.transform=random-resized-crop", f"data.size={size}"] if size != 32 else []
    return load_pipeline(
        "tiny",
        [
            f"data.source={json.dumps(str(source))}",
            f"teacher.model={model}",
            f"train.student={model}",
            "extract.views=1",
            "store.bits=4",
            f"store.input={store_input}",
            "store.chunk_mb=4",
            "stream.batch_size=128",
            "stream.shuffle_buffer=2048",
            "stream.workers=2",
            *view,
        ],
    )


def epoch_rows_per_s(cache_path: Path, cfg: Any) -> float:
    cache = open_cache(str(cache_path))
    stream = CacheStream(cache, ["input", "boundary/1"], cfg.stream, rank=0, world=1, data=cfg.data)
    started = time.perf_counter()
    rows = sum(len(batch["row"]) for batch in stream.epoch(0))
    return rows / (time.perf_counter() - started)


def measure(source: Path, size: int, rows: int, repeats: int) -> dict[str, Any]:
    folder = WORK / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    caches = {}
    for store_input in ("pixels", "crc32"):
        cfg = pipeline(source, size, store_input)
        teacher = folder / "teacher.pt"
        if not teacher.is_file():
            torch.manual_seed(0)
            save_model(build_model(cfg.teacher.model, 10, cfg.data.mean, cfg.data.std), teacher)
        out = folder / f"cache-{store_input}.zarr"
        kept = out.exists() and open_cache(str(out))
        if not (kept and kept.complete and kept.samples == rows):  # a cache of other rows is made again
            extract(cfg, str(teacher), str(out), limit=rows, overwrite=out.exists(), show_progress=False)
        caches[store_input] = (out, cfg)
    speeds: dict[str, list[float]] = {"pixels": [], "crc32": []}
    for _ in range(repeats):
        for name, (path, cfg) in caches.items():
            speeds[name].append(epoch_rows_per_s(path, cfg))
    sizes = {name: summarize(open_cache(str(path))) for name, (path, _) in caches.items()}
    pixels, crc = statistics.median(speeds["pixels"]), statistics.median(speeds["crc32"])
    n = sizes["pixels"]["rows"]
    return {
        "rows": n,
        "input_shape": sizes["pixels"]["arrays"]["input"]["shape"][1:],
        "rows_per_s": {"pixels": pixels, "crc32": crc},
        "rows_per_s_each": speeds,
        "ratio_crc32_over_pixels": crc / pixels,
        "input_bytes_per_row": {
            "pixels": sizes["pixels"]["arrays"]["input"]["stored_bytes"] / n,
            "crc32": sizes["crc32"]["arrays"]["rows/input_crc"]["stored_bytes"] / n,
        },
        "cache_bytes_per_row": {name: s["stored_bytes"] / n for name, s in sizes.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows-32", type=int, default=8192)
    ap.add_argument("--rows-224", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "input_regeneration.json"))
    args = ap.parse_args()
    from data_scaling import WORK as LARGE
    from data_scaling import generate

    large = generate(LARGE, 2 * 1000)
    results = {
        "32px": measure(CIFAR, 32, args.rows_32, args.repeats),
        "224px": measure(large, 224, args.rows_224, args.repeats),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    Path(args.output).write_text(json.dumps(results, indent=2))
    for size in ("32px", "224px"):
        r = results[size]
        print(
            f"{size}: pixels {r['rows_per_s']['pixels']:.0f} rows/s, crc32 {r['rows_per_s']['crc32']:.0f} rows/s "
            f"(ratio {r['ratio_crc32_over_pixels']:.2f}); input {r['input_bytes_per_row']['pixels']:.0f} B/row "
            f"stored, or 4 B of CRC; whole cache {r['cache_bytes_per_row']['pixels']:.0f} against "
            f"{r['cache_bytes_per_row']['crc32']:.0f} B/row"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
