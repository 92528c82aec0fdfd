from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litcache.errors import CheckpointError
from litcache.models import build_model
from litcache.models.checkpoint import fingerprint_state, load_model, load_teacher, read_checkpoint, save_model

TESTS = Path(__file__).parents[1]  # where user_models.py is
CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


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
    assert loaded.spec == model.spec and loaded.spec["kwargs"] == {"depth": 8, "num_classes": 100, "in_channels": 3}
    assert not loaded.training
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
    assert raw["format"] == "litcache-model" and raw["version"] == 2 and raw["model"]["name"] == "resnet8"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # the atomic save leaves no temporary file


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_torch_file_that_is_not_a_litcache_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(build_model("resnet8").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a litcache model checkpoint"):
        load_model(path)


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint", b"PK\x03\x04 a broken zip", bytes(range(256)) * 4],
    ids=["text", "zip", "bytes"],
)
def test_garbage_file_is_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    expected = "it is not a PyTorch checkpoint (torch.save's .pt/.pth) or it is truncated or corrupt"
    assert str(exc.value) == f"cannot read checkpoint {path}: {expected}"  # not torch's own cryptic text


def test_a_truncated_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_model("resnet8"), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)


def test_pickled_objects_are_refused_as_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "litcache-model", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"holds pickled Python code \(.* run test_checkpoint\.Payload\)") as exc:
        read_checkpoint(path)
    assert "weights_only=False" not in str(exc.value)  # never the advice to run the file's code


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(build_model("resnet8"), path)
    record = torch.load(path, weights_only=True)
    record["model"] = build_model("resnet14").spec
    torch.save(record, path)
    with pytest.raises(CheckpointError, match=r"does not fit model resnet14: missing in the file: net.layer1.1"):
        load_model(path)


def test_version_1_checkpoints_of_cifar_resnets_still_load(tmp_path: Path) -> None:
    """Version 1 named the parts stem.0 (normalisation), stem.1/stem.2 (conv, bn), sections.i and head.2."""
    model = _trained_looking_model()
    renames = {"normalize.": "stem.0.", "net.conv1.": "stem.1.", "net.bn1.": "stem.2.", "net.fc.": "head.2."}
    v1_state = {}
    for key, value in model.state_dict().items():
        new = next((renames[p] + key[len(p) :] for p in renames if key.startswith(p)), None)
        if new is None:  # net.layer{i}.rest -> sections.{i-1}.rest
            layer, rest = key.removeprefix("net.layer").split(".", 1)
            new = f"sections.{int(layer) - 1}.{rest}"
        v1_state[new] = value
    record = {"format": "litcache-model", "version": 1, "arch": "resnet8", "num_classes": 100, "mean": [0.5, 0.4, 0.3]}
    path = tmp_path / "v1.pt"
    torch.save({**record, "std": [0.2, 0.25, 0.3], "state_dict": v1_state, "meta": {"epochs": 10}}, path)
    loaded, meta = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)) and meta == {"epochs": 10}


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_a_plain_state_dict_is_a_teacher_of_the_pipelines_model(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    spec = {"factory": "litcache.models.zoo:torchvision_resnet", "kwargs": {"layers": [1, 1, 1, 1]}}
    net = build_model(spec, num_classes=10).net  # a torchvision ResNet as a user would have it, no normalisation
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(path))
    else:  # the common wrappings: a bare state dict, or one under "state_dict" with DDP's "module." prefix
        state = (
            net.state_dict()
            if suffix == ".pt"
            else {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
        )
        torch.save(state, path)
    teacher = load_teacher(path, spec, 10, *CIFAR)
    assert not teacher.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(teacher(x), net.eval()(teacher.normalize(x)))


def test_a_plain_state_dict_of_another_model_names_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "teacher.pth"
    torch.save(build_model("resnet8").net.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit model resnet14: missing in the file: layer1.1.conv1"):
        load_teacher(path, "resnet14", 10, *CIFAR)
    torch.save({"weights": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match="neither a litcache checkpoint nor a state_dict"):
        load_teacher(path, "resnet8", 10, *CIFAR)


def test_a_checkpoint_naming_a_foreign_factory_is_not_imported_unless_the_pipeline_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    spec = {"factory": "user_models:tower", "sections": ["trunk.0", "trunk.1"], "kwargs": {"blocks": 2}}
    path = tmp_path / "user.pt"
    save_model(build_model(spec), path)
    with pytest.raises(CheckpointError, match="names the model factory 'user_models:tower'; litcache does not import"):
        load_model(path)
    model, _ = load_model(path, trusted={"user_models:tower"})
    assert model.section_paths == ("trunk.0", "trunk.1")


def test_fingerprint_changes_with_any_weight() -> None:
    state = {k: v.clone() for k, v in build_model("resnet8").state_dict().items()}
    before = fingerprint_state(state)
    state["net.fc.bias"][0] += 1e-3
    assert fingerprint_state(state) != before
