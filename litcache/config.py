"""Pipeline configuration: one frozen dataclass per stage under one :class:`PipelineConfig`.

Precedence is defaults < pipeline file < ``--set key=value``. A pipeline file holds only overrides; an
unknown key anywhere is an error that names the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, cast

import yaml

from litcache._settings import build, check, to_plain
from litcache.errors import ConfigError
from litcache.outputs import write_text

DTYPES = ("float16", "float32")
MANTISSA_BITS = {"float16": 10, "float32": 23}  # explicit mantissa bits of each store dtype
CODECS = ("zstd", "blosc-zstd", "blosc-lz4", "none")
SCHEDULES = ("cosine", "step", "multistep", "constant")
# sgd: Nesterov momentum; sgd-plain: heavy-ball momentum (LIT's reference); adamw: momentum is its beta1
OPTIMIZERS = ("sgd", "sgd-plain", "adamw")
FROZEN_MODES = ("eval", "train")
TRANSFORMS = ("pad-crop-flip", "random-resized-crop")
B0_CHOICES = ("auto", "store", "recompute")
INPUTS = ("pixels", "crc32")


def _check_kd_weights(stage: str, label_weight: float, soft_weight: float) -> None:
    check(
        label_weight >= 0 and soft_weight >= 0 and label_weight + soft_weight > 0,
        f"{stage}.label_weight and {stage}.soft_weight must be >= 0 and not both 0, got {label_weight} and "
        f"{soft_weight}",
    )


# keys that were renamed, with what to write instead
RENAMED = {
    "arch": "{p}model (a built-in name such as resnet20, or a factory with its sections)",
    "alpha": "{p}label_weight and {p}soft_weight (KD = label_weight*CE + soft_weight*T^2*softCE; the old alpha "
    "weighted the soft targets, the reverse of LIT's reference code: alpha=a is label_weight=1-a, soft_weight=a)",
}


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, how they are read, and how a view is made from a sample."""

    # torchvision name (cifar10, cifar100); a folder, brace/glob pattern or fsspec URL of WebDataset shards
    # ({split}-*.tar); or an image folder (<source>/{split}/<class>/*.jpg); "{split}" in it is replaced
    source: str = "cifar10"
    root: str = "~/.cache/litcache/datasets"  # download folder for torchvision datasets
    download: bool = True
    num_classes: int = 0  # 0 = from the source (torchvision's class list, class folders, or max label + 1)
    channels: int = 3  # 3 = RGB, 1 = grayscale: every image is converted to it as it is decoded
    transform: str = "pad-crop-flip"  # pad-crop-flip (CIFAR) or random-resized-crop (ImageNet-style)
    pad: int = 4  # random-crop padding of pad-crop-flip
    size: int = 224  # random-resized-crop: output side of every view (and of the evaluation centre crop)
    scale: tuple[float, ...] = (0.08, 1.0)  # random-resized-crop: crop area as a fraction of the image's
    ratio: tuple[float, ...] = (3 / 4, 4 / 3)  # random-resized-crop: crop aspect ratio (w / h) range
    eval_resize: int = 256  # random-resized-crop: evaluation resizes the shorter side to this, then crops `size`
    flip: bool = True
    # view 0 is the un-augmented image (random-resized-crop: the evaluation view); off by default: the reference
    # augments every epoch, and a student that trains on cached views must not spend an epoch on the plain image
    plain_view0: bool = False
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)  # one value per channel
    std: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
    in_memory: bool = False  # decode the whole split into memory first (small sets); torchvision sets always are
    workers: int = 2  # threads that read and decode samples ahead of the model; 0 = in the calling thread
    index_dir: str = "~/.cache/litcache/index"  # sample indexes of shards and image folders ("" = not kept)
    # training samples held out of extraction and training, for choosing settings (split "val"): a draw of
    # holdout_seed over the whole training split, the same for every stage and --limit; 0 = none
    holdout: int = 0
    holdout_seed: int = 0

    def __post_init__(self) -> None:
        check(self.channels in (1, 3), f"data.channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        check(self.transform in TRANSFORMS, f"data.transform must be one of {TRANSFORMS}, got {self.transform!r}")
        check(self.pad >= 0, f"data.pad must be >= 0, got {self.pad}")
        check(self.size >= 1, f"data.size must be >= 1, got {self.size}")
        check(
            len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1,
            f"data.scale must be [low, high] with 0 < low <= high <= 1, got {list(self.scale)}",
        )
        check(
            len(self.ratio) == 2 and 0 < self.ratio[0] <= self.ratio[1],
            f"data.ratio must be [low, high] with 0 < low <= high, got {list(self.ratio)}",
        )
        check(
            self.eval_resize >= self.size,
            f"data.eval_resize must be >= data.size ({self.size}), got {self.eval_resize}",
        )
        check(len(self.mean) == len(self.std), "data.mean and data.std must have the same length")
        check(
            len(self.mean) == self.channels,
            f"data.mean and data.std need one value per channel: data.channels is {self.channels}, data.mean "
            f"has {len(self.mean)} values",
        )
        check(all(s > 0 for s in self.std), f"data.std must be positive, got {self.std}")
        check(self.workers >= 0, f"data.workers must be >= 0, got {self.workers}")
        check(self.holdout >= 0, f"data.holdout must be >= 0 (0 = no validation split), got {self.holdout}")


@dataclass(frozen=True)
class ModelConfig:
    """A model: a built-in ``name``, or a ``factory`` called with ``kwargs``; plus the module paths of its sections.

    In a pipeline file a built-in is just its name (``student: resnet8``); any other model is a mapping:
    ``{factory: torchvision.models:resnet50, sections: [layer1, layer2, layer3, layer4]}``, or
    ``{factory: timm:create_model, kwargs: {model_name: vit_tiny_patch16_224, img_size: 32, patch_size: 4},
    sections: [blocks.0:4, blocks.4:8, blocks.8:12]}``, or a user's ``my_models:build`` (or ``path/to/file.py:build``).
    Built-ins and torchvision's ResNets know their sections.
    """

    name: str = ""  # built-in: resnet8 ... resnet110, resnext11/20/29, generator2/4/6
    factory: str = ""  # package.module:function, or path/to/file.py:function
    kwargs: dict[str, Any] = field(default_factory=dict)
    sections: tuple[str, ...] = ()  # module paths in order; "blocks.0:4" runs blocks.0 ... blocks.3

    def __post_init__(self) -> None:
        check(
            bool(self.name) != bool(self.factory),
            f"a model is a built-in name or a factory (package.module:function), not both or neither: {self}",
        )
        if self.name:
            from litcache.models.specs import BUILTIN_EXAMPLES, builtin

            check(
                builtin(self.name) is not None,
                f"unknown built-in model {self.name!r}: built-ins are {BUILTIN_EXAMPLES}; or give a factory "
                "(package.module:function) and its sections",
            )
        else:
            check(":" in self.factory, f"model factory {self.factory!r} must look like package.module:function")

    def describe(self) -> str:
        return self.name or self.factory

    @classmethod
    def from_short(cls, value: Any) -> ModelConfig:
        """A built-in by its name (``student: resnet8``)."""
        check(isinstance(value, str), f"a model is a built-in name or a mapping, got {value!r}")
        return cls(name=value)

    def to_short(self) -> str | None:
        """A built-in reads as its name."""
        return self.name if self.name and not (self.kwargs or self.sections) else None


@dataclass(frozen=True)
class OptimizerSettings:
    """How a stage moves its parameters: the rate, momentum, weight decay, schedule and optimiser. The teacher's
    training, the sections' and the KD pass share these fields (each stage with its own default rate)."""

    STAGE: ClassVar[str] = "optimizer"  # the config section, in error messages

    lr: float = 0.1
    momentum: float = 0.9  # sgd: Nesterov momentum; sgd-plain: heavy-ball momentum; adamw: beta1
    weight_decay: float = 5e-4
    # per step: cosine to zero, step (x0.1 at 50 % and 75 %), multistep (x0.1 after each of `milestones`
    # epochs of the stage, as torch's MultiStepLR stepped per epoch), or constant
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # multistep only: epochs of the stage, increasing
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        s = self.STAGE
        check(self.lr > 0, f"{s}.lr must be > 0, got {self.lr}")
        check(self.momentum >= 0, f"{s}.momentum must be >= 0, got {self.momentum}")
        check(self.weight_decay >= 0, f"{s}.weight_decay must be >= 0, got {self.weight_decay}")
        check(self.schedule in SCHEDULES, f"{s}.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check(
            (self.schedule == "multistep") == bool(self.milestones),
            f"{s}.milestones go with {s}.schedule=multistep, and only with it: got schedule {self.schedule!r} "
            f"and milestones {list(self.milestones)}",
        )
        check(
            all(a < b for a, b in itertools.pairwise((0, *self.milestones))),
            f"{s}.milestones must be increasing epochs > 0, got {list(self.milestones)}",
        )
        check(self.optimizer in OPTIMIZERS, f"{s}.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")


@dataclass(frozen=True)
class TeacherConfig(OptimizerSettings):
    """Supervised training of a teacher (the standard CIFAR recipe)."""

    STAGE: ClassVar[str] = "teacher"

    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="resnet20"))
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.epochs >= 1, f"teacher.epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"teacher.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ExtractConfig:
    """Stage one: the teacher over every (sample, view)."""

    views: int = 4
    seed: int = 0  # the augmentation of (sample i, view v) is a pure function of (seed, i, v)
    batch_size: int = 256
    device: str = "auto"  # auto = cuda when available, else cpu
    queue_units: int = 4  # bound on encoded-but-unwritten units: memory stays bounded
    writers: int = 2  # background threads that encode and write
    channels_last: bool = True  # the teacher runs NHWC (faster convolutions); the cache is NCHW either way
    # section 1's input: "store" it as boundary/0, "recompute" it from the cached input with the frozen stem, or
    # "auto": store it only when its row is smaller than the input's (uint8 pixels), which is kept either way
    b0: str = "auto"

    def __post_init__(self) -> None:
        check(self.views >= 1, f"extract.views must be >= 1, got {self.views}")
        check(self.batch_size >= 1, f"extract.batch_size must be >= 1, got {self.batch_size}")
        check(self.queue_units >= 1, f"extract.queue_units must be >= 1, got {self.queue_units}")
        check(self.writers >= 1, f"extract.writers must be >= 1, got {self.writers}")
        check(self.b0 in B0_CHOICES, f"extract.b0 must be one of {B0_CHOICES}, got {self.b0!r}")


@dataclass(frozen=True)
class StoreConfig:
    """How the cache stores boundaries: dtype, codec, chunking."""

    dtype: str = "float16"
    # Blosc-zstd 1 with byte shuffle in 1 MiB blocks: 1.35 bytes per element on a trained CIFAR ResNet-20's
    # activations against 1.47 for plain zstd 1, at the same write speed (benchmarks/run.py codec_table)
    codec: str = "blosc-zstd"
    level: int = 1  # level 3 buys nothing over 1 on activations and is 2-4x slower to write
    blosc_blocksize: int = 1 << 20  # bytes; 0 = Blosc's own choice (much smaller, and worse here)
    chunk_mb: float = 4.0  # decoded size of one chunk of the widest array; sets rows per chunk
    shard_chunks: int = 0  # 0 = unsharded; else chunks per shard (the shard is then the unit of writing)
    # boundaries keep 7 mantissa bits (bfloat16's precision in float16's range; 0 = lossless float16): 1.06
    # bytes per element against 1.34 lossless, and no accuracy cost in paired runs (BENCHMARKS.md); float
    # boundaries only (bits = 0)
    bitround_keepbits: int = 7
    # boundaries as integer codes of this many bits (2..8) with a scale and zero point per unit and channel,
    # quantised on the teacher's device (litcache/cache/quantize.py); 0 = float boundaries in `dtype`, which is
    # also what readers decode codes to. 4 bits: 0.31 bytes an element, and no accuracy cost measured against
    # float16 (ResNet-56 -> ResNet-20, the generator's PSNR: BENCHMARKS.md)
    bits: int = 4
    # the section-1 input: "pixels" (each view, uint8), or "crc32" (its CRC-32: stage two makes the view again
    # from the data, which cost the stream 37 % of its rate at 32 px and 65 % at 224 px: BENCHMARKS.md)
    input: str = "pixels"

    def __post_init__(self) -> None:
        check(self.dtype in DTYPES, f"store.dtype must be one of {DTYPES}, got {self.dtype!r}")
        check(self.codec in CODECS, f"store.codec must be one of {CODECS}, got {self.codec!r}")
        check(self.chunk_mb > 0, f"store.chunk_mb must be > 0, got {self.chunk_mb}")
        check(self.shard_chunks >= 0, f"store.shard_chunks must be >= 0, got {self.shard_chunks}")
        check(self.blosc_blocksize >= 0, f"store.blosc_blocksize must be >= 0, got {self.blosc_blocksize}")
        bits = MANTISSA_BITS.get(self.dtype, 0)
        check(
            0 <= self.bitround_keepbits <= bits,
            f"store.bitround_keepbits must be in 0..{bits} for store.dtype={self.dtype} (0 = lossless), "
            f"got {self.bitround_keepbits}",
        )
        check(
            self.bits == 0 or 2 <= self.bits <= 8,
            f"store.bits must be 0 (float boundaries) or a code width in 2..8, got {self.bits}",
        )
        check(self.input in INPUTS, f"store.input must be one of {INPUTS}, got {self.input!r}")


@dataclass(frozen=True)
class StreamConfig:
    """Stage two's reader: the WebDataset pipeline over the cache."""

    batch_size: int = 128
    shuffle_buffer: int = 2048
    workers: int = 2
    seed: int = 0
    verify: bool = True  # check whole units against their CRC-32 as they are read

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, f"stream.batch_size must be >= 1, got {self.batch_size}")
        check(self.shuffle_buffer >= 1, f"stream.shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        check(self.workers >= 0, f"stream.workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class TrainConfig(OptimizerSettings):
    """Student training from the cache (train-sections) with LIT's losses."""

    STAGE: ClassVar[str] = "train"

    student: ModelConfig = field(default_factory=lambda: ModelConfig(name="resnet8"))
    epochs: int = 4
    lr: float = 0.05
    # the baselines' rate (KD only, labels only: a fresh student, end to end); None: lr. LIT's sections and a KD
    # baseline from scratch do best at different rates (BENCHMARKS.md), so each gets its own
    baseline_lr: float | None = None
    beta: float = 0.0  # LIT's beta*KD + (1-beta)*sum(IR); 0 = IR only, the KD pass comes after
    temperature: float = 6.0  # LIT reference code
    # KD = label_weight*CE(labels) + soft_weight*T^2*softCE(teacher): LIT's reference code has alpha = 0.95 on the
    # labels and 1 - alpha on the soft targets
    label_weight: float = 0.95
    soft_weight: float = 0.05
    # the combined objective's IR passes also update the sections' batch-norm running statistics, after the
    # student's own forward, as LIT's reference does; off: only the student's own forward does (the blend cost
    # 11.6 points where no KD pass followed: BENCHMARKS.md, litcache.train.objective.batch_stats_only)
    ir_running_stats: bool = False
    seed: int = 0
    device: str = "auto"

    def baseline_settings(self) -> TrainConfig:
        """These settings as a baseline trains with them: at ``baseline_lr`` (``lr`` when unset)."""
        return dataclasses.replace(self, lr=self.baseline_lr or self.lr)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        check(
            self.baseline_lr is None or self.baseline_lr > 0,
            f"train.baseline_lr must be > 0 (or null: train.lr), got {self.baseline_lr}",
        )
        check(0.0 <= self.beta <= 1.0, f"train.beta must be in [0, 1], got {self.beta}")
        _check_kd_weights("train", self.label_weight, self.soft_weight)
        check(self.temperature > 0, f"train.temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class KDConfig(OptimizerSettings):
    """The short end-to-end KD pass of the assembled student on the cached logits."""

    STAGE: ClassVar[str] = "kd"

    epochs: int = 1
    lr: float = 0.01
    temperature: float = 6.0
    label_weight: float = 0.95  # as train.label_weight / train.soft_weight (LIT's reference code)
    soft_weight: float = 0.05
    # the frozen stem and head during the KD pass: eval (the teacher's batch-norm running statistics) or train
    # (batch statistics, running statistics updated: LIT's reference fine-tunes after student.train())
    frozen_mode: str = "eval"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.epochs >= 1, f"kd.epochs must be >= 1, got {self.epochs}")
        check(
            self.frozen_mode in FROZEN_MODES, f"kd.frozen_mode must be one of {FROZEN_MODES}, got {self.frozen_mode!r}"
        )
        _check_kd_weights("kd", self.label_weight, self.soft_weight)
        check(self.temperature > 0, f"kd.temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class LogConfig:
    """What training reports besides ``metrics.jsonl`` (see :mod:`litcache.monitor`)."""

    tensorboard: bool = True  # TensorBoard event files beside metrics.jsonl, when the tensorboard package is installed
    # loss parts and learning rate every N steps (each reading waits for the device once); 0 = per epoch only
    every_steps: int = 50

    def __post_init__(self) -> None:
        check(self.every_steps >= 0, f"log.every_steps must be >= 0 (0 = per epoch only), got {self.every_steps}")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one LIT run needs, stage by stage."""

    name: str = "default"
    description: str = ""
    students: tuple[ModelConfig, ...] = ()  # students `litcache run` trains from one cache; () = (train.student,)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return cast(dict[str, Any], to_plain(self))

    def factories(self) -> set[str]:
        """The model factories this pipeline names: code its user chose to run (see ``models.check_trusted``)."""
        models = (self.teacher.model, self.train.student, *self.students)
        return {m.factory for m in models if m.factory}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        return build(cls, data, "", RENAMED)

    def replace(self, **sections: Any) -> PipelineConfig:
        return dataclasses.replace(self, **sections)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def builtin_pipelines() -> list[str]:
    """Names of the pipelines shipped with the package."""
    files = resources.files("litcache.pipelines")
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def read_pipeline_file(name_or_path: str) -> tuple[dict[str, Any], str]:
    """Read a pipeline by built-in name or file path; returns its overrides and where they came from."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"pipeline file {path} does not exist")
        text, origin = path.read_text(), str(path)
    else:
        res = resources.files("litcache.pipelines").joinpath(f"{name_or_path}.yaml")
        if not res.is_file():
            raise ConfigError(
                f"no pipeline named {name_or_path!r}; built-in pipelines: {', '.join(builtin_pipelines())} "
                "(or pass a path to a .yaml file)"
            )
        text, origin = res.read_text(), f"builtin:{name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline {origin} is not valid YAML: {yaml_problem(exc)}") from exc
    check(isinstance(data, dict), f"pipeline {origin} must be a mapping at the top level")
    data.setdefault("name", path.stem if origin == str(path) else name_or_path)
    return data, origin


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line, with its line and column (PyYAML's own text spans lines and names the
    ``<unicode string>`` it read)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def parse_override(item: str) -> dict[str, Any]:
    """Turn ``"train.epochs=3"`` into ``{"train": {"epochs": 3}}`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    check(bool(sep) and bool(key.strip()), f"--set expects key=value (e.g. train.epochs=3), got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {yaml_problem(exc)}") from exc
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_pipeline(name_or_path: str | None = "tiny", overrides: typing.Sequence[str] = ()) -> PipelineConfig:
    """Resolve a pipeline: defaults < pipeline file < ``--set`` overrides."""
    data: dict[str, Any] = {}
    if name_or_path:
        data, _ = read_pipeline_file(name_or_path)
    for item in overrides:
        data = _deep_merge(data, parse_override(item))
    return PipelineConfig.from_dict(data)


def save_resolved(cfg: PipelineConfig, path: str | Path) -> None:
    """Write the resolved config beside a run's outputs (atomically: never half a file)."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
