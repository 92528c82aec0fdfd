"""Train a LIT student from a litcache cache in a plain PyTorch loop: no teacher, no litcache trainer.

    python examples/train_from_cache.py runs/cache.zarr --student resnet8 --epochs 4 -o runs/mine.pt
    litcache evaluate -m runs/mine.pt -d ../shared/data/cifar10

IR epochs first (student section k learns to map the teacher's boundary k-1 to its boundary k), then KD epochs of
the whole student against the cached logits and labels, as LIT's "IR first, short KD after". A classifier's cache.
"""

import argparse

import torch

import litcache

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("cache", help="a cache written by `litcache extract`")
parser.add_argument("--student", default="resnet8", help="a built-in model whose boundaries fit the cache")
parser.add_argument("--epochs", type=int, default=4, help="IR epochs")
parser.add_argument("--kd-epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("-o", "--output", default="student.pt")
args = parser.parse_args()

cache = litcache.open_cache(args.cache)
student = litcache.build_student(cache, args.student).to(args.device)  # the teacher's stem and head, frozen
bounds = [f"boundary/{k}" for k in cache.stored_boundaries()]  # b1..bS (and b0 when the cache stores it)
data = litcache.CacheDataset(cache, ["input", *bounds, "logits", "rows/label"], batch_size=args.batch_size)
trainable = [p for p in student.parameters() if p.requires_grad]  # the sections only
optimizer = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)

for epoch in range(args.epochs + args.kd_epochs):
    data.set_epoch(epoch)  # epoch e reads view e mod K: the inputs the teacher saw, in a new order
    student.set_train_mode()  # the sections train; the frozen stem and head stay in eval mode
    total = 0.0
    for batch in data:
        batch = {k: v.to(args.device) for k, v in batch.items()}
        x = batch["input"].float() / 255  # the exact pixels of the view, as the models expect them
        if epoch < args.epochs:
            with torch.no_grad():  # b0 is stored, or the frozen stem's output on the input
                b0 = batch["boundary/0"] if cache.b0_stored else student.stem_output(x)
            b = [b0.float(), *(batch[f"boundary/{k}"].float() for k in range(1, cache.num_sections + 1))]
            ir = [litcache.ir_loss(student.run_section(k, b[k - 1]), b[k]) for k in range(1, len(b))]
            loss = litcache.lit_loss(ir, None, beta=0.0)  # beta=0: the IR terms only
        else:
            labels, logits = batch["rows/label"].long(), batch["logits"]
            loss = litcache.kd_loss(student(x), logits, labels, temperature=6.0, label_weight=0.95, soft_weight=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    print(f"epoch {epoch} (view {data.view}): {'IR' if epoch < args.epochs else 'KD'} loss {total / len(data):.4f}")

litcache.save_model(student.cpu(), args.output, mode="lit-kd", note="examples/train_from_cache.py")
print(f"student -> {args.output}")
