from __future__ import annotations

import pytest
import torch

from litcache.errors import CompatibilityError, ConfigError
from litcache.models import available_archs, build_model, check_compatible, probe_boundaries

CIFAR_BOUNDARIES = [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]


@pytest.mark.parametrize("arch", available_archs())
def test_resnet_depths_and_sections(arch: str) -> None:
    model = build_model(arch)
    depth = int(arch.removeprefix("resnet"))
    assert model.arch == arch
    assert model.num_sections == 3
    assert [len(s) for s in model.sections] == [(depth - 2) // 6] * 3
    convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())
    assert convs + 1 == depth  # 3x3 convs + the classifier = the depth in the name


@pytest.mark.parametrize("arch", ["resnet8", "resnet20"])
def test_boundary_shapes_of_cifar_resnets(arch: str) -> None:
    assert probe_boundaries(build_model(arch), (3, 32, 32)) == CIFAR_BOUNDARIES


@pytest.mark.parametrize("arch", ["resnet9", "resnet2", "resnet", "vgg16", "ResNet20"])
def test_unknown_architecture_is_a_config_error(arch: str) -> None:
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_model(arch)


def test_forward_boundaries_is_one_pass_of_the_sections() -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=7).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        bounds, logits = model.forward_boundaries(x)
        assert len(bounds) == model.num_sections + 1
        assert torch.equal(bounds[0], model.stem(x))
        for k, section in enumerate(model.sections, start=1):
            assert torch.equal(bounds[k], section(bounds[k - 1]))
        assert torch.equal(logits, model.head(bounds[-1]))
        torch.testing.assert_close(logits, model(x))
    assert logits.shape == (4, 7)


def test_stem_normalises_its_input() -> None:
    model = build_model("resnet8", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((1, 3, 4, 4), 0.75)
    assert torch.allclose(model.stem[0](x), torch.ones_like(x))


def test_probe_boundaries_keeps_the_training_mode() -> None:
    model = build_model("resnet8").train()
    probe_boundaries(model, (3, 32, 32))
    assert model.training
    model.eval()
    probe_boundaries(model, (3, 32, 32))
    assert not model.training


def test_compatible_models_pass() -> None:
    teacher = probe_boundaries(build_model("resnet20"), (3, 32, 32))
    student = probe_boundaries(build_model("resnet8", num_classes=100), (3, 32, 32))
    check_compatible(teacher, student)


def test_mismatching_boundary_is_named_with_both_shapes() -> None:
    student = [(16, 32, 32), (16, 32, 32), (48, 16, 16), (64, 8, 8)]
    with pytest.raises(CompatibilityError) as exc:
        check_compatible(CIFAR_BOUNDARIES, student)
    msg = str(exc.value)
    assert "boundary 2" in msg
    assert "(32, 16, 16)" in msg and "(48, 16, 16)" in msg
    assert "boundary 1" not in msg and "boundary 3" not in msg  # only what differs


def test_different_section_counts_are_named() -> None:
    student = CIFAR_BOUNDARIES[:3]
    with pytest.raises(CompatibilityError) as exc:
        check_compatible(CIFAR_BOUNDARIES, student, expected_name="cache", actual_name="resnet-x")
    msg = str(exc.value)
    assert "number of sections: cache has 3, resnet-x has 2" in msg
    assert "boundary 3: cache (64, 8, 8), resnet-x None" in msg
