"""LIT's losses: the IR loss per section, KD on the logits, and their β-weighted combination."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ir_loss(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """Intermediate-representation loss: mean squared error between boundaries."""
    return F.mse_loss(student_out, teacher_out)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton KD as in LIT's reference code: α·T²·KL(teacher_T ‖ student_T) + (1−α)·CE(student, labels).

    ``alpha=0`` is plain cross-entropy on the labels (training from scratch); ``teacher_logits`` may be None then.
    """
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    assert teacher_logits is not None, "KD with alpha > 0 needs teacher logits"
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    )
    return alpha * temperature * temperature * soft + (1 - alpha) * hard


def lit_loss(ir_parts: list[torch.Tensor], kd: torch.Tensor | None, beta: float) -> torch.Tensor:
    """LIT's combined objective β·KD + (1−β)·ΣIR (either term may be absent)."""
    total = torch.stack(ir_parts).sum() * (1 - beta) if ir_parts else None
    if kd is not None:
        total = kd * beta if total is None else total + kd * beta
    if total is None:
        raise ValueError("lit_loss needs at least one IR part or a KD term")
    return total
