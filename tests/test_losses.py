from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from litcache.losses import ir_loss, kd_loss, lit_loss


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=gen) * 3
    teacher = torch.randn(16, 10, generator=gen) * 3
    labels = torch.randint(0, 10, (16,), generator=gen)
    return student, teacher, labels


def test_ir_loss_is_mean_squared_error() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 2.0)
    assert ir_loss(a, b).item() == pytest.approx(4.0)
    assert ir_loss(b, b).item() == 0.0


def test_kd_with_alpha_zero_is_cross_entropy(logits) -> None:
    student, teacher, labels = logits
    assert torch.equal(kd_loss(student, teacher, labels, 6.0, 0.0), F.cross_entropy(student, labels))


def test_kd_soft_part_vanishes_when_logits_match(logits) -> None:
    student, _, labels = logits
    soft_only = kd_loss(student, student.clone(), labels, 4.0, 1.0)
    assert abs(soft_only.item()) < 1e-5
    mixed = kd_loss(student, student.clone(), labels, 4.0, 0.25)
    torch.testing.assert_close(mixed, 0.75 * F.cross_entropy(student, labels), atol=1e-5, rtol=1e-5)


def test_kd_soft_part_is_t_squared_kl_of_softened_distributions(logits) -> None:
    student, teacher, labels = logits
    t, alpha = 3.0, 0.7
    p_teacher = F.softmax(teacher / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, dim=1))).sum(1).mean()
    expected = alpha * t * t * kl + (1 - alpha) * F.cross_entropy(student, labels)
    loss = kd_loss(student, teacher, labels, t, alpha)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    assert loss.item() > (1 - alpha) * F.cross_entropy(student, labels).item()  # differing logits cost something


def test_kd_loss_pulls_the_student_towards_the_teacher(logits) -> None:
    student, teacher, labels = logits
    student = student.clone().requires_grad_(True)
    kd_loss(student, teacher, labels, 6.0, 1.0).backward()
    moved = student - 0.5 * student.grad
    assert kd_loss(moved, teacher, labels, 6.0, 1.0) < kd_loss(student, teacher, labels, 6.0, 1.0)


def test_lit_loss_combines_kd_and_summed_ir() -> None:
    ir = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)]
    kd = torch.tensor(10.0)
    assert lit_loss(ir, kd, 0.75).item() == pytest.approx(0.75 * 10 + 0.25 * 7)
    assert lit_loss(ir, kd, 0.0).item() == pytest.approx(7.0)
    assert lit_loss(ir, kd, 1.0).item() == pytest.approx(10.0)
    assert lit_loss(ir, None, 0.3).item() == pytest.approx(0.7 * 7)
    assert lit_loss([], kd, 0.4).item() == pytest.approx(4.0)


def test_lit_loss_gradients_follow_the_weights() -> None:
    ir = torch.tensor(3.0, requires_grad=True)
    kd = torch.tensor(5.0, requires_grad=True)
    lit_loss([ir], kd, 0.75).backward()
    assert ir.grad.item() == pytest.approx(0.25) and kd.grad.item() == pytest.approx(0.75)


def test_lit_loss_needs_a_term() -> None:
    with pytest.raises(ValueError):
        lit_loss([], None, 0.5)
