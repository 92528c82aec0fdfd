from __future__ import annotations

from pathlib import Path

import pytest
import torch

from litcache.errors import CompatibilityError, ConfigError
from litcache.models import build_model, check_compatible, expand_section, probe, probe_boundaries, resolve_spec

CIFAR_BOUNDARIES = [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
TESTS = Path(__file__).parents[1]  # where user_models.py is


@pytest.fixture
def user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


def tower(**kwargs: object) -> dict[str, object]:
    return {"factory": "user_models:tower", "kwargs": kwargs, "sections": ["trunk.0:2", "trunk.2:4"]}


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 44, 56, 110])
def test_resnet_depths_and_sections(depth: int) -> None:
    model = build_model(f"resnet{depth}")
    assert model.spec["name"] == f"resnet{depth}" and model.section_paths == ("layer1", "layer2", "layer3")
    assert [len(model.section_modules(k)[0]) for k in (1, 2, 3)] == [(depth - 2) // 6] * 3
    convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())
    assert convs + 1 == depth  # 3x3 convs + the classifier = the depth in the name


@pytest.mark.parametrize("depth", [11, 20, 29])
def test_resnext_depths_keep_their_boundaries(depth: int) -> None:
    model = build_model(f"resnext{depth}")
    assert [len(model.section_modules(k)[0]) for k in (1, 2, 3)] == [(depth - 2) // 9] * 3
    assert probe_boundaries(model, (3, 32, 32)) == [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert any(isinstance(m, torch.nn.Conv2d) and m.groups == 8 for m in model.modules())  # grouped convolutions


def test_generators_of_any_even_depth_share_boundaries_and_output_images() -> None:
    teacher, student = build_model("generator6"), build_model("generator2")
    assert teacher.section_paths == ("blocks.0:3", "blocks.3:6") and student.section_paths == (
        "blocks.0:1",
        "blocks.1:2",
    )
    t, s = probe(teacher, (3, 32, 32)), probe(student, (3, 32, 32))
    assert t.boundary_shapes == s.boundary_shapes == [(32, 16, 16)] * 3
    assert t.output_kind == "image" and t.output_shape == (3, 32, 32)
    upscaler = build_model("generator6", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    x = torch.rand(2, 3, 32, 32) * 0.8 + 0.1
    # detail inside each 2x2 patch that sums to zero: the 2x2 means, all the generator sees, stay the same
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(16, 16) * 0.05
    with torch.no_grad():
        out = upscaler(x)
        torch.testing.assert_close(upscaler(x + checker), out, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(upscaler(x + 0.05), out, atol=1e-4)  # a brighter image gives another one
    means = torch.nn.functional.avg_pool2d(x, 2)
    bilinear = torch.nn.functional.interpolate(means, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, bilinear)  # untrained, the head adds nothing to the bilinear up-scaling
    assert not any(k.startswith("net.degrade") for k in teacher.state_dict())  # the degradation has no parameter


@pytest.mark.parametrize(
    "name", ["resnet9", "resnet2", "resnet", "vgg16", "ResNet20", "resnext12", "generator3", "generator0"]
)
def test_unknown_builtin_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown built-in model"):
        build_model(name)


def test_section_ranges_expand_to_module_paths() -> None:
    assert expand_section("blocks.4:7") == ["blocks.4", "blocks.5", "blocks.6"]
    assert expand_section("layer2") == ["layer2"]
    assert expand_section("encoder.layers.0:1") == ["encoder.layers.0"]
    with pytest.raises(ConfigError, match="a < b"):
        expand_section("blocks.4:4")


def test_forward_boundaries_are_the_sections_outputs_in_one_ordinary_forward() -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=7).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        bounds, logits = model.forward_boundaries(x)
        assert len(bounds) == model.num_sections + 1
        net = model.net
        b0 = net.relu(net.bn1(net.conv1(model.normalize(x))))
        assert torch.equal(bounds[0], b0) and torch.equal(model.stem_output(x), b0)
        for k, layer in enumerate((net.layer1, net.layer2, net.layer3), start=1):
            assert torch.equal(bounds[k], layer(bounds[k - 1]))
            assert torch.equal(model.run_section(k, bounds[k - 1]), bounds[k])
        assert torch.equal(logits, model(x))
    assert logits.shape == (4, 7)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks are removed


def test_normalisation_comes_first() -> None:
    model = build_model("resnet8", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((1, 3, 4, 4), 0.75)
    assert torch.allclose(model.normalize(x), torch.ones_like(x))


def test_probe_keeps_the_training_mode() -> None:
    model = build_model("resnet8").train()
    probe(model, (3, 32, 32))
    assert model.training
    model.eval()
    probe(model, (3, 32, 32))
    assert not model.training


def test_a_users_factory_by_module_path(user_models: None) -> None:
    model = build_model(tower(blocks=4), num_classes=5)
    shapes = probe(model, (3, 16, 16))
    assert shapes.boundary_shapes == [(8, 8, 8)] * 3 and shapes.output_shape == (5,)
    frozen = set(model.frozen_state())
    assert {
        "net.offset",
        "net.embed.0.weight",
        "net.classifier.weight",
        "normalize.mean",
    } <= frozen  # root parameter too
    assert not any(k.startswith("net.trunk.") for k in frozen)
    assert {k.split(".")[2] for k in model.section_state(2)} == {"2", "3"}


def test_a_factory_from_a_file_path() -> None:
    model = build_model({**tower(), "factory": f"{TESTS / 'user_models.py'}:tower"})
    assert model.num_sections == 2


def test_a_missing_section_path_is_named_with_the_modules_there_are(user_models: None) -> None:
    with pytest.raises(CompatibilityError, match=r"no module 'trunk.4'.*embed, trunk, classifier"):
        build_model({**tower(), "sections": ["trunk.0:2", "trunk.2:5"]})


def test_a_section_whose_forward_needs_more_than_one_tensor_is_refused(user_models: None) -> None:
    with pytest.raises(CompatibilityError, match=r"'trunk.0' \(MaskedBlock\) needs forward\(x, mask\)"):
        build_model({"factory": "user_models:masked_tower", "sections": ["trunk.0", "trunk.1"]})


def test_sections_that_do_not_follow_each_other_are_refused(user_models: None) -> None:
    model = build_model({"factory": "user_models:skipping_tower", "sections": ["trunk.0", "trunk.1"]})
    with pytest.raises(CompatibilityError, match=r"section 2 \('trunk.1'\) run alone on boundary 1 does not give"):
        probe(model, (3, 16, 16))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"factory": "no_such_module:build", "sections": ["a"]}, "cannot import model factory module 'no_such_module'"),
        ({"factory": "user_models:nothing", "sections": ["a"]}, "has no function 'nothing'"),
        ({"factory": "user_models:not_a_module", "sections": ["a"]}, "returned a str, not an nn.Module"),
        ({"factory": "user_models:tower", "kwargs": {"colour": 1}, "sections": ["a"]}, "the factory failed"),
        ({"factory": "user_models:tower"}, "give the module paths of its sections"),
        ({"factory": "user_models.tower", "sections": ["a"]}, "package.module:function"),
    ],
)
def test_factory_errors_say_what_is_wrong(user_models: None, spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(spec)


def test_torchvision_resnets_know_their_sections() -> None:
    assert resolve_spec({"factory": "torchvision.models:resnet50"})["sections"] == [
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert resolve_spec({"factory": "litcache.models.zoo:torchvision_resnet"})["sections"][-1] == "layer4"


def test_compatible_models_pass() -> None:
    teacher = probe_boundaries(build_model("resnet20"), (3, 32, 32))
    student = probe_boundaries(build_model("resnet8", num_classes=100), (3, 32, 32))
    check_compatible(teacher, student)


def test_mismatching_boundary_is_named_with_both_shapes_and_paths() -> None:
    student = [(16, 32, 32), (16, 32, 32), (48, 16, 16), (64, 8, 8)]
    paths = ["layer1", "layer2", "layer3"]
    with pytest.raises(CompatibilityError) as exc:
        check_compatible(CIFAR_BOUNDARIES, student, "teacher", "student", paths, ["s.0", "s.1", "s.2"])
    msg = str(exc.value)
    assert (
        "boundary 2 (output of section 2: teacher 'layer2', student 's.1'): teacher (32, 16, 16), student (48, 16, 16)"
        in msg
    )
    assert "boundary 1" not in msg and "boundary 3" not in msg  # only what differs


def test_different_section_counts_are_named() -> None:
    student = CIFAR_BOUNDARIES[:3]
    with pytest.raises(CompatibilityError) as exc:
        check_compatible(CIFAR_BOUNDARIES, student, expected_name="cache", actual_name="resnet-x")
    msg = str(exc.value)
    assert "number of sections: cache has 3, resnet-x has 2" in msg
    assert "boundary 3 (output of section 3): cache (64, 8, 8), resnet-x None" in msg


def test_the_datas_channel_count_reaches_a_factory_that_names_in_channels() -> None:
    grey = build_model("resnet8", mean=(0.5,), std=(0.25,))  # grayscale data: one value each
    assert grey.spec["kwargs"]["in_channels"] == 1 and probe(grey, (1, 32, 32)).output_shape == (10,)
    explicit = build_model({"name": "resnet8", "kwargs": {"in_channels": 3}}, mean=(0.5,), std=(0.25,))
    assert explicit.net.conv1.in_channels == 3  # the spec's own value wins
    # torchvision's ResNet takes **kwargs but no in_channels: nothing is passed
    assert "in_channels" not in build_model({"factory": "torchvision.models:resnet18"}).spec["kwargs"]
