"""The student an IR stage alone assembles: its test accuracy with the BatchNorm statistics it trained with
(gathered on the teacher's boundaries) and with statistics recomputed on its own forward pass.

    python benchmarks/ir_student.py --cache W/cache.zarr --sections W/.../sections --pipeline cifar10-resnet20-resnet8

Each section's BatchNorm layers learn their running statistics from the teacher's input to that section; the
assembled student feeds each section its own previous section's output instead. The gap between the two
accuracies is what that mismatch costs, apart from the sections' errors themselves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from litcache.cache.reader import open_cache
from litcache.config import load_pipeline
from litcache.data import load_images, to_unit_float
from litcache.data.loader import eval_batches
from litcache.train.loop import evaluate
from litcache.train.students import assemble_student

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--sections", required=True, help="a train-sections output folder")
    ap.add_argument("--pipeline", default="cifar10-resnet20-resnet8")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--samples", type=int, default=10000, help="training images the statistics are recomputed on")
    args = ap.parse_args()

    cfg = load_pipeline(args.pipeline, [f'data.source="{args.data}"'])
    model = assemble_student(open_cache(args.cache), args.sections, cfg.factories())
    device = torch.device("cpu")
    test = load_images(cfg.data, "test")
    trained = evaluate(model, test, device)["accuracy"]
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over every batch
    model.train()
    with torch.no_grad():
        for x, _ in eval_batches(load_images(cfg.data, "train", args.samples), 500):
            model(to_unit_float(x.to(device)))
    recomputed = evaluate(model, test, device)["accuracy"]
    print(
        f"after the IR stage: {trained:.4f} with its trained BatchNorm statistics, {recomputed:.4f} with "
        f"statistics of its own forward over {args.samples} training images"
    )


if __name__ == "__main__":
    main()
