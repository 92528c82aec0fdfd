"""The built-in CIFAR ResNet against LIT's reference ResNets (lit-code ``cifar10/resnet.py``): option-A shortcuts,
whose output is the strided identity zero-padded on both sides, and the parameter counts the papers report."""

from __future__ import annotations

import pytest
import torch

from litcache.config import load_pipeline
from litcache.errors import ConfigError
from litcache.models import build_model, probe_boundaries
from litcache.models.resnet import BasicBlock, PadShortcut, cifar_resnet


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reference_param_count(depth: int) -> int:
    """Parameters of the reference's CIFAR ResNet of ``depth`` (option A), counted from its layers: a 3x3 stem
    conv and batch norm, n basic blocks per stage (two 3x3 convs, two batch norms, no shortcut parameters),
    a linear head on 64 channels."""
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # conv1, bn1
    c_in = 16
    for width in (16, 32, 64):
        for j in range(n):
            total += (c_in if j == 0 else width) * width * 9 + width * width * 9 + 2 * (2 * width)
        c_in = width
    return total + 64 * 10 + 10  # linear


@pytest.mark.parametrize(("c_in", "c_out"), [(16, 32), (32, 64)])
def test_option_a_shortcut_is_the_strided_identity_zero_padded_on_both_sides(c_in: int, c_out: int) -> None:
    # reference: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)), planes = c_out
    x = torch.randn(2, c_in, 8, 8)
    pad = torch.zeros(2, c_out // 4, 4, 4)
    expected = torch.cat([pad, x[:, :, ::2, ::2], pad], dim=1)
    shortcut = PadShortcut(c_in, c_out, 2)
    assert torch.equal(shortcut(x), expected)
    assert not list(shortcut.parameters())


def test_an_option_a_block_adds_the_padded_identity_to_its_residual() -> None:
    torch.manual_seed(0)
    block = BasicBlock(16, 32, 2, "A").eval()
    x = torch.randn(2, 16, 8, 8)
    residual = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    pad = torch.zeros(2, 8, 4, 4)
    assert torch.equal(block(x), torch.relu(residual + torch.cat([pad, x[:, :, ::2, ::2], pad], dim=1)))
    assert isinstance(BasicBlock(16, 16, 1, "A").shortcut, torch.nn.Identity)  # same shape: the identity


@pytest.mark.parametrize(("depth", "reported"), [(20, "0.27M"), (56, "0.85M"), (110, "1.7M")])
def test_option_a_resnets_have_the_reference_parameter_counts(depth: int, reported: str) -> None:
    count = params(cifar_resnet(depth, shortcut="A"))
    assert count == reference_param_count(depth)
    digits = len(reported.split(".")[1]) - 1  # 0.27M: two decimals, 1.7M: one
    assert f"{count / 1e6:.{digits}f}M" == reported  # as He et al. 2016 and LIT's reference report them
    # option B (the default) adds two 1x1 projections with batch norm: 16->32 and 32->64
    assert params(cifar_resnet(depth)) == count + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_the_default_is_still_option_b() -> None:
    model = build_model("resnet20")
    assert "net.layer2.0.shortcut.0.weight" in model.state_dict()
    assert params(model) == 272_474  # the ResNet-20 every measured table used


def test_option_a_students_fit_option_a_teachers_through_the_reference_pipeline() -> None:
    cfg = load_pipeline("cifar10-resnet110-resnet56-reference")
    teacher, student = build_model(cfg.teacher.model), build_model(cfg.train.student)
    assert teacher.spec["kwargs"]["shortcut"] == student.spec["kwargs"]["shortcut"] == "A"
    assert not any("shortcut" in name for name, _ in student.named_parameters())
    assert probe_boundaries(student, (3, 32, 32)) == probe_boundaries(teacher, (3, 32, 32))
    assert teacher.frozen_state().keys() == student.frozen_state().keys()  # the stem and head a student copies


def test_an_unknown_shortcut_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="shortcut must be one of"):
        build_model({"name": "resnet8", "kwargs": {"shortcut": "C"}})
