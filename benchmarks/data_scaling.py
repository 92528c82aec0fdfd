"""Streamed data, measured: extraction's memory does not grow with the data set, and decoding keeps up.

    python benchmarks/data_scaling.py            # a few minutes on a shared 2-core CPU -> results/data_scaling.json

1. Generates shards of JPEGs of mixed sizes around 256 px (sides drawn from 192-320, smooth content, about
   20 KB each), 1,000 images a shard, once (kept under benchmarks/work/large-images/). The smaller set is the
   first shards of the larger one.
2. ``peak_rss``: ``litcache.extract.extract`` over the first 5,000 and over all 20,000 images, each in a fresh
   subprocess with an empty index folder (so the peak includes indexing the shards), random-resized-crop
   views at ``--size`` px, one view, a ResNet-8 teacher with random weights; the peak RSS (VmHWM) of each
   process, side by side. Target: the difference under 10 %.
3. ``data_vs_teacher``: images/s of the data side alone (read + decode + random-resized-crop view, through
   ``iter_views`` as extraction uses it) with 0, 1 and 2 decoding threads, against images/s of the teacher's
   forward (``forward_boundaries``, inference mode, channels-last, batch 256) over the same views.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "large-images"
RESULTS = ROOT / "benchmarks" / "results"
PER_SHARD = 1000
TEACHER = "resnet8"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_image(rng: np.random.Generator) -> bytes:
    """A JPEG of random size around 256 px: smooth colour fields plus a little noise, like a photo compresses."""
    from PIL import Image

    h, w = (int(s) for s in rng.integers(192, 321, 2))
    coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = np.clip(smooth + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def generate(folder: Path, images: int, seed: int = 0) -> Path:
    """Shards train-0.tar ... of ``images`` images (labels 0..9), made once; returns the folder."""
    marker = folder / f"done-{images}-{seed}.json"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started, total = time.perf_counter(), 0
    for shard in range(-(-images // PER_SHARD)):
        rng = np.random.default_rng([seed, shard])  # one stream per shard: a smaller set is a prefix
        with tarfile.open(folder / f"train-{shard}.tar", "w") as tar:
            for j in range(min(PER_SHARD, images - shard * PER_SHARD)):
                key = f"img_{shard * PER_SHARD + j:06d}"
                for ext, payload in (("jpg", make_image(rng)), ("cls", str(int(rng.integers(10))).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                    total += len(payload)
        log(f"shard {shard}: {min((shard + 1) * PER_SHARD, images)} images")
    marker.write_text(json.dumps({"images": images, "bytes": total, "seconds": time.perf_counter() - started}))
    return folder


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def settings(source: str, size: int, index_dir: str) -> list[str]:
    return [
        f"data.source={json.dumps(source)}",
        f"data.index_dir={json.dumps(index_dir)}",
        "data.transform=random-resized-crop",
        f"data.size={size}",
        f"data.eval_resize={size}",
        "data.num_classes=10",
        "extract.views=1",
    ]


def probe_extract(source: str, size: int, teacher: str, out: str, index_dir: str) -> None:
    """Subprocess body: one extraction; its peak RSS and timings as one JSON line."""
    from litcache import extract, load_pipeline

    cfg = load_pipeline(None, settings(source, size, index_dir))
    before = _vm_hwm_mb()
    started = time.perf_counter()
    summary = extract(cfg, teacher, out, show_progress=False)
    call = time.perf_counter() - started
    print(
        json.dumps(
            {
                "peak_rss_mb": _vm_hwm_mb(),
                "peak_rss_before_extract_mb": before,
                "call_seconds": call,
                "loop_seconds": summary["seconds"],
                "rows": summary["rows"],
                "stored_bytes": summary["stored_bytes"],
                "data_workers": cfg.data.workers,
                "batch_size": cfg.extract.batch_size,
            }
        )
    )


def run_probe(source: str, size: int, teacher: Path, tag: str) -> dict[str, Any]:
    import shutil

    out, index_dir = WORK / f"cache-{tag}.zarr", WORK / f"index-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(index_dir, ignore_errors=True)
    cmd = [sys.executable, __file__, "--probe", source, str(size), str(teacher), str(out), str(index_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        raise RuntimeError(f"probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_teacher(path: Path) -> Path:
    from litcache import build_model, save_model

    torch.manual_seed(0)
    save_model(build_model(TEACHER, 10).eval(), path, note="random weights: a speed and memory benchmark")
    return path


@torch.inference_mode()
def data_vs_teacher(source: str, size: int, teacher: Path, images: int, batch: int, reps: int) -> dict[str, Any]:
    """Images/s of read + decode + view (0, 1, 2 threads) and of the teacher's forward over the same views."""
    import dataclasses

    from litcache import load_model, load_pipeline
    from litcache.data import iter_views, load_images, to_unit_float

    cfg = load_pipeline(None, settings(source, size, str(WORK / "index-throughput")))
    data = load_images(cfg.data, "train", images)
    steps = [
        (s, np.arange(s, min(s + batch, images)), np.zeros(min(batch, images - s), dtype=np.int64))
        for s in range(0, images, batch)
    ]
    rates: dict[str, list[float]] = {}
    made = [x for _, x in iter_views(data, cfg.data, 0, steps)]  # warm-up: page cache, decoders, threads
    for _ in range(reps):
        for workers in (0, 1, 2):
            data_cfg = dataclasses.replace(cfg.data, workers=workers)
            started = time.perf_counter()
            made = [x for _, x in iter_views(data, data_cfg, 0, steps)]
            rates.setdefault(f"data_workers_{workers}", []).append(images / (time.perf_counter() - started))
        model, _ = load_model(teacher)
        model = model.to(memory_format=torch.channels_last).eval()
        model.forward_boundaries(to_unit_float(made[0][:32]).contiguous(memory_format=torch.channels_last))  # warm-up
        started = time.perf_counter()
        for x in made:
            model.forward_boundaries(to_unit_float(x).contiguous(memory_format=torch.channels_last))
        rates.setdefault("teacher_forward", []).append(images / (time.perf_counter() - started))
        log("images/s: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    best = max((0, 1, 2), key=lambda w: med[f"data_workers_{w}"])
    return {
        "images_per_s": med,
        "repeats": rates,
        "best_data_workers": best,
        "data_over_teacher": med[f"data_workers_{best}"] / med["teacher_forward"],
        "data_over_teacher_default_workers": med[f"data_workers_{cfg.data.workers}"] / med["teacher_forward"],
        "default_workers": cfg.data.workers,
        "images": images,
        "batch": batch,
        "teacher": f"{TEACHER} (random weights), {size} px views, channels-last, inference mode, torch threads "
        f"{torch.get_num_threads()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, nargs=2, default=[5000, 20000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--size", type=int, default=64, help="output side of the views (px)")
    ap.add_argument("--throughput-images", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=2, help="repeats of the throughput measurement")
    ap.add_argument("--output", default=str(RESULTS / "data_scaling.json"))
    ap.add_argument("--probe", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        source, size, teacher, out, index_dir = args.probe
        probe_extract(source, int(size), teacher, out, index_dir)
        return
    small, large = args.images
    started = time.perf_counter()
    folder = generate(WORK / "shards", large)
    teacher = make_teacher(WORK / f"teacher-{TEACHER}-random.pt")
    sources = {small: f"{folder}/train-{{0..{small // PER_SHARD - 1}}}.tar", large: str(folder)}
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
            "torch": torch.__version__,
        }
    }
    log("data side vs teacher")
    results["data_vs_teacher"] = data_vs_teacher(
        sources[small], args.size, teacher, args.throughput_images, 256, args.reps
    )
    probes = {}
    for n in (small, large):
        log(f"extract {n} images in a fresh process")
        probes[n] = run_probe(sources[n], args.size, teacher, str(n))
        log(f"{n} images: peak RSS {probes[n]['peak_rss_mb']:.0f} MB, {probes[n]['call_seconds']:.0f} s")
    diff = (probes[large]["peak_rss_mb"] - probes[small]["peak_rss_mb"]) / probes[small]["peak_rss_mb"]
    decoded_gb = {n: n * 256 * 256 * 3 / 1e9 for n in (small, large)}
    results["peak_rss"] = {
        "value": diff,
        "target": "< 0.10 (relative difference of the peaks)",
        "met": abs(diff) < 0.10,
        "peak_rss_mb": {str(n): probes[n]["peak_rss_mb"] for n in probes},
        "probes": {str(n): p for n, p in probes.items()},
        "decoded_data_set_gb_at_256px": decoded_gb,
        "note": "each extraction in a fresh subprocess, index built in it (empty index folder); VmHWM of the process",
    }
    results["settings"] = {
        "images": [small, large],
        "size": args.size,
        "views": 1,
        "teacher": TEACHER,
        "transform": "random-resized-crop",
        "wall_seconds": time.perf_counter() - started,
        "shards": json.loads((folder / f"done-{large}-0.json").read_text()),
    }
    results["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    t = results["data_vs_teacher"]
    print(
        f"\npeak RSS of extract: {small} images {probes[small]['peak_rss_mb']:.0f} MB, {large} images "
        f"{probes[large]['peak_rss_mb']:.0f} MB: {diff * 100:+.1f} % (target < 10 %)"
    )
    print("images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in t["images_per_s"].items()))
    print(f"data side / teacher forward: {t['data_over_teacher']:.2f} with {t['best_data_workers']} decoding threads")
    print(f"wall {results['settings']['wall_seconds']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
