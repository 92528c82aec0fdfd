from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from litcache.train.losses import ir_loss, kd_loss, lit_loss, pixel_loss


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


def reference_alpha_distillation(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """LIT's reference ``AlphaDistillationLoss`` (lit-code ``vdcnn/distillation_loss.py``), step for step.

    Summed hard cross-entropy, summed soft cross-entropy scaled by T², combined as
    ``(1 - alpha) * soft + alpha * hard`` and divided by the batch size (``size_average``).
    """
    hard_loss = F.cross_entropy(student, labels, reduction="sum")
    hi_temp_inputs = F.log_softmax(student / temperature, dim=1)
    soft_targets = F.softmax(teacher / temperature, dim=1)
    soft_loss = (-(hi_temp_inputs * soft_targets).sum(1)).sum() * temperature**2
    return ((1 - alpha) * soft_loss + alpha * hard_loss) / student.size(0)


@pytest.mark.parametrize("alpha", [0.95, 0.5, 0.05])
def test_kd_loss_is_the_reference_alpha_distillation_loss(logits, alpha: float) -> None:
    student, teacher, labels = logits
    got = kd_loss(student, teacher, labels, temperature=6.0, label_weight=alpha, soft_weight=1 - alpha)
    torch.testing.assert_close(got, reference_alpha_distillation(student, teacher, labels, 6.0, alpha))


def test_kd_loss_by_hand_on_fixed_logits() -> None:
    """Two rows, three classes, every term written out: alpha weights the labels, as in the reference."""
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[4.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    t = 2.0

    def softmax(row: list[float], temp: float) -> list[float]:
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    ce = [-math.log(softmax(s, 1.0)[y]) for s, y in zip(student.tolist(), labels.tolist(), strict=True)]
    soft = [
        -sum(p * math.log(q) for p, q in zip(softmax(tt, t), softmax(s, t), strict=True))
        for s, tt in zip(student.tolist(), teacher.tolist(), strict=True)
    ]
    by_hand = (0.95 * sum(ce) + 0.05 * t * t * sum(soft)) / 2  # alpha = 0.95 on the labels
    assert kd_loss(
        student, teacher, labels, temperature=t, label_weight=0.95, soft_weight=0.05
    ).item() == pytest.approx(by_hand, rel=1e-6)
    # the weights are not interchangeable: swapping them is another loss
    swapped = (0.05 * sum(ce) + 0.95 * t * t * sum(soft)) / 2
    assert kd_loss(
        student, teacher, labels, temperature=t, label_weight=0.05, soft_weight=0.95
    ).item() == pytest.approx(swapped, rel=1e-6)
    assert abs(by_hand - swapped) > 1.0


def test_kd_without_soft_weight_is_cross_entropy(logits) -> None:
    student, teacher, labels = logits
    assert torch.equal(
        kd_loss(student, None, labels, temperature=6.0, label_weight=1.0, soft_weight=0.0),
        F.cross_entropy(student, labels),
    )


def test_kd_soft_part_is_minimal_when_logits_match(logits) -> None:
    student, teacher, labels = logits
    # soft cross-entropy is the teacher's entropy plus KL: with matching logits only the entropy is left
    p = F.softmax(student / 4.0, dim=1)
    entropy = -(p * p.log()).sum(1).mean()
    soft_only = kd_loss(student, student.clone(), labels, temperature=4.0, label_weight=0.0, soft_weight=1.0)
    torch.testing.assert_close(soft_only, 16.0 * entropy)
    assert kd_loss(student, teacher, labels, temperature=4.0, label_weight=0.0, soft_weight=1.0) > soft_only


def test_kd_loss_pulls_the_student_towards_the_teacher(logits) -> None:
    student, teacher, labels = logits
    student = student.clone().requires_grad_(True)
    kd_loss(student, teacher, labels, temperature=6.0, label_weight=0.0, soft_weight=1.0).backward()
    moved = student - 0.5 * student.grad
    assert kd_loss(moved, teacher, labels, temperature=6.0, label_weight=0.0, soft_weight=1.0) < kd_loss(
        student, teacher, labels, temperature=6.0, label_weight=0.0, soft_weight=1.0
    )


def test_kd_loss_needs_a_weight(logits) -> None:
    student, teacher, labels = logits
    with pytest.raises(ValueError, match="label_weight > 0 or soft_weight > 0"):
        kd_loss(student, teacher, labels, temperature=6.0, label_weight=0.0, soft_weight=0.0)


def test_lit_loss_combines_kd_and_summed_ir() -> None:
    ir = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)]
    kd = torch.tensor(10.0)
    assert lit_loss(ir, kd, beta=0.75).item() == pytest.approx(0.75 * 10 + 0.25 * 7)
    assert lit_loss(ir, kd, beta=0.0).item() == pytest.approx(7.0)
    assert lit_loss(ir, kd, beta=1.0).item() == pytest.approx(10.0)
    assert lit_loss(ir, None, beta=0.3).item() == pytest.approx(0.7 * 7)
    assert lit_loss([], kd, beta=0.4).item() == pytest.approx(4.0)


def test_lit_loss_gradients_follow_the_weights() -> None:
    ir = torch.tensor(3.0, requires_grad=True)
    kd = torch.tensor(5.0, requires_grad=True)
    lit_loss([ir], kd, beta=0.75).backward()
    assert ir.grad.item() == pytest.approx(0.25) and kd.grad.item() == pytest.approx(0.75)


def test_lit_loss_needs_a_term() -> None:
    with pytest.raises(ValueError):
        lit_loss([], None, beta=0.5)


def test_the_weights_are_keyword_only() -> None:
    """Weights by position once read the KD weights backwards (alpha on the soft targets): they are refused."""
    student, teacher, labels = torch.randn(4, 10), torch.randn(4, 10), torch.arange(4)
    with pytest.raises(TypeError):
        kd_loss(student, teacher, labels, 6.0, 0.95, 0.05)  # type: ignore[misc]
    with pytest.raises(TypeError):
        lit_loss([torch.tensor(1.0)], None, 0.5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pixel_loss(torch.zeros(1, 3, 4, 4), None, torch.zeros(1, 3, 4, 4), 1.0, 0.0)  # type: ignore[misc]
