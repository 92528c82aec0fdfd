"""LIT's reference CIFAR trainer (lit-code ``cifar10/main.py``), replayed step by step on tiny models against
litcache's own pieces (``LitObjective``, ``build_optimizer``, ``build_scheduler``, ``train_one_epoch``) under the
settings that claim to reproduce it: the ``cifar10-resnet110-resnet56-reference`` pipeline.

The replays are written from the reference's code path (line numbers are lit-code's), not from litcache's: a
combined loss halved each step under plain-momentum SGD at lr 0.1 / weight decay 1e-4 (the LIT stage), and a
KD loss under ``student.train()`` at lr 0.01 (the fine-tuning stage). Each replay is also run against settings
that are *not* equivalent, which must then disagree: the comparison can fail.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from litcache import load_model, open_cache
from litcache.config import KDConfig, OptimizerSettings, PipelineConfig, TrainConfig, load_pipeline
from litcache.models import SectionedModel, build_model
from litcache.train.loop import train_one_epoch
from litcache.train.objective import LitObjective
from litcache.train.optim import build_optimizer, build_scheduler
from litcache.train.students import frozen_state
from litcache.train.trainer import train_end_to_end, train_sections

REFERENCE_PIPELINE = "cifar10-resnet110-resnet56-reference"
PAPER_PIPELINES = [
    "cifar10-resnet110-resnet20",
    "cifar10-resnet110-resnet56",
    "cifar10-resnet110-students",
    "cifar10-resnet56-resnet20",
]
# lit-code cifar10/main.py (and dataloaders.py, resnet.py), as written there
LIT_LR, LIT_MILESTONES, LIT_EPOCHS = 0.1, (100,), 175  # main.py:29-31
FINETUNE_LR, FINETUNE_MILESTONES, FINETUNE_EPOCHS = 0.01, (55,), 125  # main.py:34-36
BETA, ALPHA, TEMPERATURE = 0.75, 0.95, 6.0  # main.py:25, 39-40
MOMENTUM, WEIGHT_DECAY, BATCH_SIZE = 0.9, 1e-4, 32  # main.py:43-45
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # dataloaders.py:11-12
STEPS = 6
TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}


def reference_kd(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``AlphaDistillationLoss(temperature=6, alpha=0.95)``: ``(α·ΣCE + (1−α)·T²·Σ softCE) / N``."""
    hard = F.cross_entropy(logits, labels, reduction="sum")
    soft = -(F.softmax(teacher_logits / TEMPERATURE, 1) * F.log_softmax(logits / TEMPERATURE, 1)).sum()
    return (ALPHA * hard + (1 - ALPHA) * TEMPERATURE**2 * soft) / len(labels)


def tiny_pair(seed: int = 0) -> tuple[SectionedModel, SectionedModel]:
    """A ResNet-14 teacher (with moved batch-norm statistics) and a ResNet-8 student holding its frozen stem and
    head, both with the reference's option-A shortcuts and normalisation."""
    torch.manual_seed(seed)
    spec = {"name": "resnet14", "kwargs": {"shortcut": "A"}}
    teacher = build_model(spec, 10, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        teacher.train()(torch.rand(32, 3, 32, 32))  # running statistics away from their initial 0 and 1
    student = build_model({"name": "resnet8", "kwargs": {"shortcut": "A"}}, 10, IMAGENET_MEAN, IMAGENET_STD)
    student.load_frozen(teacher.frozen_state())
    return teacher.eval(), student


def batches(seed: int = 1, n: int = STEPS, size: int = 8) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input": torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, generator=g),
            "rows/label": torch.randint(0, 10, (size,), generator=g),
        }
        for _ in range(n)
    ]


def as_float(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["input"].float() / 255, batch["rows/label"]


def reference_lit_stage(teacher: SectionedModel, student: SectionedModel, data: list[dict[str, torch.Tensor]]) -> None:
    """main.py:73-75 and ``lit_epoch`` (main.py:145-192), one epoch over ``data``."""
    optimizer = torch.optim.SGD(student.parameters(), lr=LIT_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    student.eval()
    for p in student.parameters():
        p.requires_grad = False
    for k in range(1, student.num_sections + 1):
        for module in student.section_modules(k):
            module.train()
            for p in module.parameters():
                p.requires_grad = True
    for batch in data:
        x, y = as_float(batch)
        with torch.no_grad():
            features, soft_targets = teacher.forward_boundaries(x)
        full_loss = reference_kd(student(x), soft_targets, y) * BETA
        for k in range(1, student.num_sections + 1):
            full_loss = full_loss + F.mse_loss(student.run_section(k, features[k - 1]), features[k]) * (1.0 - BETA)
        full_loss = full_loss / 2
        full_loss.backward()
        optimizer.step()
        student.zero_grad()


def reference_finetune_stage(
    teacher: SectionedModel, student: SectionedModel, data: list[dict[str, torch.Tensor]]
) -> None:
    """main.py:95-96 and ``fine_tune_epoch`` (main.py:107-131): every module in train mode, the frozen parts'
    parameters still without gradients (the LIT stage left them so), the KD loss unhalved."""
    for name, p in student.named_parameters():
        p.requires_grad = bool(student.section_of(name))
    optimizer = torch.optim.SGD(student.parameters(), lr=FINETUNE_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    student.train()
    for batch in data:
        x, y = as_float(batch)
        with torch.no_grad():
            teacher_out = teacher(x)
        reference_kd(student(x), teacher_out, y).backward()
        optimizer.step()
        student.zero_grad()


def litcache_stage(
    teacher: SectionedModel,
    student: SectionedModel,
    data: list[dict[str, torch.Tensor]],
    settings: TrainConfig | KDConfig,
    sections: list[int],
    beta: float,
    frozen_mode: str = "eval",
) -> None:
    """What the trainer runs for a stage: LitObjective, build_optimizer / build_scheduler, train_one_epoch."""
    ir_running_stats = settings.ir_running_stats if isinstance(settings, TrainConfig) else False
    objective = LitObjective(
        student,
        sections,
        beta=beta,
        temperature=settings.temperature,
        label_weight=settings.label_weight,
        soft_weight=settings.soft_weight,
        teacher=teacher,
        ir_running_stats=ir_running_stats,
    )
    optimizer = build_optimizer([p for p in student.parameters() if p.requires_grad], settings)
    scheduler = build_scheduler(optimizer, settings, [len(data)] * settings.epochs)
    student.set_train_mode(frozen_mode)
    train_one_epoch(objective, optimizer, scheduler, data, show_progress=False)


def max_difference(a: torch.nn.Module, b: torch.nn.Module, buffers: bool = False) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    names = [n for n, _ in a.named_parameters()] + ([n for n, _ in a.named_buffers()] if buffers else [])
    return max(float((sa[n].double() - sb[n].double()).abs().max()) for n in names)


def assert_same_state(litcache: torch.nn.Module, reference: torch.nn.Module, buffers: bool) -> None:
    got, want = litcache.state_dict(), reference.state_dict()
    names = [n for n, _ in reference.named_parameters()] + (
        [n for n, _ in reference.named_buffers()] if buffers else []
    )
    for name in names:
        torch.testing.assert_close(got[name], want[name], **TOLERANCE, msg=name)


@pytest.fixture(scope="module")
def reference() -> PipelineConfig:
    return load_pipeline(REFERENCE_PIPELINE)


def replay_lit(settings: TrainConfig) -> tuple[SectionedModel, SectionedModel]:
    """(litcache's student, the reference's) after STEPS steps of the LIT stage from the same start."""
    teacher, student = tiny_pair()
    twin = copy.deepcopy(student)
    data = batches()
    reference_lit_stage(teacher, twin, data)
    litcache_stage(teacher, student, data, settings, [1, 2, 3], settings.beta)
    return student, twin


def test_litcache_takes_the_reference_lit_step(reference: PipelineConfig) -> None:
    """Unhalved at lr 0.05 / weight decay 2e-4 is the reference's halved loss at 0.1 / 1e-4: parameters and
    batch-norm statistics agree after several steps."""
    assert reference.train.optimizer == "sgd-plain" and reference.train.ir_running_stats
    student, twin = replay_lit(reference.train)
    assert_same_state(student, twin, buffers=True)
    _, start = tiny_pair()
    assert max_difference(student, start) > 1e-3, "the steps moved nothing"


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": "sgd"},  # Nesterov momentum
        {"lr": LIT_LR, "weight_decay": WEIGHT_DECAY},  # the reference's rates without its halving
        {"lr": LIT_LR / 2, "weight_decay": WEIGHT_DECAY},  # half the rate, but the decay not doubled
    ],
)
def test_settings_that_are_not_equivalent_leave_the_reference_step(
    reference: PipelineConfig, change: dict[str, object]
) -> None:
    student, twin = replay_lit(dataclasses.replace(reference.train, **change))  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        assert_same_state(student, twin, buffers=False)


def test_without_ir_running_stats_only_the_statistics_differ(reference: PipelineConfig) -> None:
    student, twin = replay_lit(dataclasses.replace(reference.train, ir_running_stats=False))
    assert_same_state(student, twin, buffers=False)  # the same gradients, hence the same parameters
    with pytest.raises(AssertionError):
        assert_same_state(student, twin, buffers=True)  # but the IR passes left the running statistics alone


def replay_finetune(settings: KDConfig) -> tuple[SectionedModel, SectionedModel]:
    teacher, student = tiny_pair()
    twin = copy.deepcopy(student)
    data = batches(seed=2)
    reference_finetune_stage(teacher, twin, data)
    litcache_stage(teacher, student, data, settings, [], 1.0, settings.frozen_mode)
    return student, twin


def test_litcache_takes_the_reference_finetuning_step(reference: PipelineConfig) -> None:
    """The KD pass: plain momentum at 0.01 / 1e-4, nothing halved, the frozen stem in train mode (its batch norm
    normalises with batch statistics and moves its running ones, as after the reference's student.train())."""
    student, twin = replay_finetune(reference.kd)
    assert_same_state(student, twin, buffers=True)
    _, start = tiny_pair()
    stem = "net.bn1.running_mean"
    assert not torch.equal(student.state_dict()[stem], start.state_dict()[stem]), "the stem's statistics stayed"


@pytest.mark.parametrize("change", [{"frozen_mode": "eval"}, {"optimizer": "sgd"}, {"weight_decay": 5e-4}])
def test_a_kd_pass_unlike_the_reference_leaves_its_step(reference: PipelineConfig, change: dict[str, object]) -> None:
    student, twin = replay_finetune(dataclasses.replace(reference.kd, **change))  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        assert_same_state(student, twin, buffers=False)


def test_the_reference_pipeline_holds_the_reference_settings(reference: PipelineConfig) -> None:
    cfg = reference
    lit, kd = cfg.train, cfg.kd
    # the LIT stage: halving the loss is halving the rate and doubling the decay
    assert (lit.lr, lit.weight_decay, lit.momentum) == (LIT_LR / 2, WEIGHT_DECAY * 2, MOMENTUM)
    assert (lit.optimizer, lit.schedule, lit.milestones, lit.epochs) == ("sgd-plain", "multistep", LIT_MILESTONES, 175)
    assert (lit.beta, lit.temperature, lit.label_weight, lit.soft_weight) == pytest.approx(
        (BETA, TEMPERATURE, ALPHA, 1 - ALPHA)
    )
    assert lit.ir_running_stats
    # fine-tuning: the KD pass
    assert (kd.lr, kd.weight_decay, kd.momentum, kd.optimizer) == (FINETUNE_LR, WEIGHT_DECAY, MOMENTUM, "sgd-plain")
    assert (kd.schedule, kd.milestones, kd.epochs) == ("multistep", FINETUNE_MILESTONES, FINETUNE_EPOCHS)
    assert (kd.temperature, kd.label_weight, kd.soft_weight) == pytest.approx((TEMPERATURE, ALPHA, 1 - ALPHA))
    assert kd.frozen_mode == "train"
    assert lit.epochs == LIT_EPOCHS and cfg.stream.batch_size == BATCH_SIZE
    assert (cfg.data.mean, cfg.data.std) == (IMAGENET_MEAN, IMAGENET_STD)
    for model in (cfg.teacher.model, lit.student):
        assert model.kwargs == {"shortcut": "A"}
    assert (cfg.teacher.model.name, lit.student.name) == ("resnet110", "resnet56")


@pytest.mark.parametrize("name", PAPER_PIPELINES)
def test_the_paper_pipelines_take_the_reference_step(reference: PipelineConfig, name: str) -> None:
    """The step the replay above checks (their momentum stays Nesterov: docs/method.md names it)."""
    cfg = load_pipeline(name)
    settings = ("lr", "weight_decay", "momentum")
    assert [getattr(cfg.train, s) for s in settings] == [getattr(reference.train, s) for s in settings]
    assert cfg.train.baseline_lr == LIT_LR  # the baselines halve no loss: they keep the usual rate


def lrs_per_step(settings: OptimizerSettings, steps_per_epoch: list[int]) -> list[float]:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], settings)
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch)
    out = []
    for _ in range(sum(steps_per_epoch)):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("steps_per_epoch", [[4] * 6, [3, 5, 2, 4, 1, 3]])
def test_multistep_is_torch_multisteplr_stepped_once_per_epoch(steps_per_epoch: list[int]) -> None:
    settings = TrainConfig(lr=0.1, schedule="multistep", milestones=(2, 4))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    per_epoch = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4])
    expected = []
    for steps in steps_per_epoch:
        expected += [optimizer.param_groups[0]["lr"]] * steps
        optimizer.step()
        per_epoch.step()
    assert lrs_per_step(settings, steps_per_epoch) == pytest.approx(expected, rel=1e-12)


def test_the_reference_schedules_drop_at_their_milestones(reference: PipelineConfig) -> None:
    # under torch 0.4, the reference's scheduler.step() at the start of epoch e gave epoch e the rate
    # lr * 0.1 ** (milestones <= e): 0.1 for epochs 0-99, 0.01 from epoch 100 on (0.01, then 0.001 from 55)
    for stage, first_lr in ((reference.train, LIT_LR / 2), (reference.kd, FINETUNE_LR)):
        (m,) = stage.milestones
        lrs = lrs_per_step(stage, [1] * stage.epochs)
        assert lrs[m - 1] == pytest.approx(first_lr) and lrs[m] == pytest.approx(first_lr / 10)
        assert len(set(lrs)) == 2


def test_plain_momentum_is_the_heavy_ball_update() -> None:
    """``buf = μ·buf + g + wd·w; w -= lr·buf`` (torch.optim.SGD without Nesterov, the reference's optimizer);
    ``sgd`` (Nesterov) steps by ``g + wd·w + μ·buf`` instead."""
    lr, mu, wd = 0.05, 0.9, 2e-4
    grads = [torch.tensor([0.3, -1.0]), torch.tensor([-0.2, 0.5]), torch.tensor([0.7, 0.1])]

    def run(optimizer_name: str) -> torch.Tensor:
        w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        opt = build_optimizer([w], TrainConfig(lr=lr, momentum=mu, weight_decay=wd, optimizer=optimizer_name))
        for g in grads:
            w.grad = g.clone()
            opt.step()
        return w.detach()

    w, buf = torch.tensor([1.0, 2.0]), torch.zeros(2)
    for i, g in enumerate(grads):
        d = g + wd * w
        buf = d if i == 0 else mu * buf + d
        w = w - lr * buf
    torch.testing.assert_close(run("sgd-plain"), w)
    assert not torch.allclose(run("sgd"), w)


def test_the_kd_pass_frozen_mode_puts_only_the_stem_and_head_in_train_mode() -> None:
    _, student = tiny_pair()
    for mode, stem_training in (("eval", False), ("train", True)):
        student.set_train_mode(mode)
        assert student.net.bn1.training is stem_training
        assert student.net.layer1.training
        assert not any(p.requires_grad for name, p in student.named_parameters() if not student.section_of(name))


def test_the_trainer_applies_the_reference_settings(
    make_cfg: Callable[..., PipelineConfig], cache_path: Path, tmp_path: Path
) -> None:
    """The settings reach train-sections and kd: the multistep rate per epoch, the IR passes' statistics, the
    KD pass's stem (on the tiny cache)."""
    sets = ["train.beta=0.75", "train.epochs=2", "train.optimizer=sgd-plain", "train.schedule=multistep"]
    sets += ["train.milestones=[1]", "kd.optimizer=sgd-plain"]
    teacher_stem = frozen_state(open_cache(str(cache_path)))["net.bn1.running_mean"]
    sections, stems = {}, {}
    for flag in ("false", "true"):
        cfg = make_cfg(
            *sets, f"train.ir_running_stats={flag}", f"kd.frozen_mode={'train' if flag == 'true' else 'eval'}"
        )
        records = train_sections(cfg, str(cache_path), tmp_path / flag, show_progress=False)
        assert [r["lr"] for r in records] == pytest.approx([cfg.train.lr / 10] * 2)  # x0.1 from epoch 1 on
        sections[flag] = torch.load(tmp_path / flag / "section-s1.pt", weights_only=True)["state_dict"]
        train_end_to_end(
            cfg, str(cache_path), tmp_path / f"{flag}.pt", sections_dir=tmp_path / flag, show_progress=False
        )
        stems[flag] = load_model(tmp_path / f"{flag}.pt")[0].state_dict()["net.bn1.running_mean"]
    key = next(k for k in sections["true"] if k.endswith("running_mean"))
    assert not torch.equal(sections["true"][key], sections["false"][key])  # the IR passes moved the statistics
    assert torch.equal(stems["false"], teacher_stem)  # eval: the teacher's stem, untouched
    assert not torch.equal(stems["true"], teacher_stem)  # train: batch statistics moved its running ones
