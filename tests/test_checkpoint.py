from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litcache.checkpoint import fingerprint_state, load_model, read_checkpoint, save_model
from litcache.errors import CheckpointError
from litcache.models import build_model


class Payload:
    """Any class: unpickling it could run code, so weights_only loading refuses it."""


def _trained_looking_model() -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model("resnet8", num_classes=100, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))  # non-default BatchNorm buffers
    return model.eval()


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = _trained_looking_model()
    path = tmp_path / "m.pt"
    save_model(model, path, epochs=3, accuracy=0.5)
    loaded, meta = load_model(path)
    assert meta == {"epochs": 3, "accuracy": 0.5}
    assert loaded.arch == "resnet8" and not loaded.training
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert fingerprint_state(loaded_state) == fingerprint_state(state)


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_model("resnet8"), path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code inside
    assert raw["format"] == "litcache-model" and raw["arch"] == "resnet8"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # the atomic save leaves no temporary file


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_torch_file_that_is_not_a_litcache_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(build_model("resnet8").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a litcache model checkpoint"):
        load_model(path)


def test_garbage_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "litcache-model", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(path)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_model("resnet8"), path)
    record = torch.load(path, weights_only=True)
    record["arch"] = "resnet14"
    torch.save(record, path)
    with pytest.raises(CheckpointError, match="does not match architecture resnet14"):
        load_model(path)


def test_fingerprint_changes_with_any_weight() -> None:
    state = {k: v.clone() for k, v in build_model("resnet8").state_dict().items()}
    before = fingerprint_state(state)
    state["head.2.bias"][0] += 1e-3
    assert fingerprint_state(state) != before
