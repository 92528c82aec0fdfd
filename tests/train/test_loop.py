from __future__ import annotations

import pytest
import torch

from litcache.train.loop import train_one_epoch


def test_an_epoch_reads_its_losses_from_the_device_once_not_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each float(tensor) waits for a GPU; the loop must not do it per step (with the progress bar off)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(12)]

    seen_losses = []

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        mse = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        seen_losses.append(mse.detach().clone())
        return {"loss": 2 * mse, "mse": mse}

    reads = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(1) or real_float(t))
    rec = train_one_epoch(step, optimizer, scheduler, batches, total=len(batches), show_progress=False)
    assert len(reads) == 2  # one per reported part, at the end of the epoch
    monkeypatch.undo()
    assert rec["samples"] == 96
    assert rec["mse"] == pytest.approx(torch.stack(seen_losses).mean().item(), rel=1e-6)  # equal batches: plain mean
    assert rec["loss"] == pytest.approx(2 * rec["mse"], rel=1e-6)
