"""LIT's losses: the IR loss per section, KD on the logits, and their β-weighted combination."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ir_loss(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """Intermediate-representation loss: mean squared error between boundaries."""
    return F.mse_loss(student_out, teacher_out)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch mean of −Σ softmax(teacher/T)·log softmax(student/T): the soft-target term of LIT's reference loss.

    It differs from KL(teacher_T ‖ student_T) by the teacher's entropy, a constant: same gradients, but the
    logged values are the reference's.
    """
    targets = F.softmax(teacher_logits / temperature, dim=1)
    return -(targets * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    temperature: float,
    label_weight: float,
    soft_weight: float,
) -> torch.Tensor:
    """LIT's ``AlphaDistillationLoss``: ``label_weight·CE(student, labels) + soft_weight·T²·softCE(student_T,
    teacher_T)``, each a batch mean.

    The reference code's α weights the labels: its α = 0.95, T = 6 is ``label_weight=0.95, soft_weight=0.05``
    (1.8 on the soft term after T²). ``soft_weight=0`` is plain cross-entropy on the labels (training from
    scratch); ``teacher_logits`` may be None then.
    """
    loss = label_weight * F.cross_entropy(student_logits, labels) if label_weight else None
    if soft_weight:
        assert teacher_logits is not None, "KD with soft_weight > 0 needs teacher logits"
        soft = soft_weight * temperature * temperature * soft_cross_entropy(student_logits, teacher_logits, temperature)
        loss = soft if loss is None else loss + soft
    if loss is None:
        raise ValueError("kd_loss needs label_weight > 0 or soft_weight > 0")
    return loss


def lit_loss(ir_parts: list[torch.Tensor], kd: torch.Tensor | None, *, beta: float) -> torch.Tensor:
    """LIT's combined objective β·KD + (1−β)·ΣIR (either term may be absent).

    The reference code also halves this sum every step (``full_loss /= 2``); litcache does not. Under SGD with
    momentum and weight decay, halving the loss equals halving the learning rate and doubling the weight
    decay (the update is lr·(∇loss/2 + wd·w) = (lr/2)·(∇loss + 2wd·w)), so the reference's lr 0.1 and weight
    decay 1e-4 are litcache's lr 0.05 and weight decay 2e-4.
    """
    total = torch.stack(ir_parts).sum() * (1 - beta) if ir_parts else None
    if kd is not None:
        total = kd * beta if total is None else total + kd * beta
    if total is None:
        raise ValueError("lit_loss needs at least one IR part or a KD term")
    return total


def pixel_loss(
    student_out: torch.Tensor,
    teacher_out: torch.Tensor | None,
    truth: torch.Tensor,
    *,
    label_weight: float,
    soft_weight: float,
) -> torch.Tensor:
    """The finishing loss of an image-to-image student: ``label_weight·L1(student, truth) + soft_weight·L1(student,
    teacher)``, the pixel counterpart of :func:`kd_loss` (the ground truth plays the labels, the teacher's output
    the soft targets). LIT fine-tuned its StarGAN student against the teacher's images."""
    loss = label_weight * F.l1_loss(student_out, truth) if label_weight else None
    if soft_weight:
        assert teacher_out is not None, "a pixel loss with soft_weight > 0 needs the teacher's output"
        soft = soft_weight * F.l1_loss(student_out, teacher_out.to(student_out.dtype))
        loss = soft if loss is None else loss + soft
    if loss is None:
        raise ValueError("pixel_loss needs label_weight > 0 or soft_weight > 0")
    return loss
