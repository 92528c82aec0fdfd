"""A model as LIT sees it: any ``nn.Module``, the ordered module paths of its sections, and its input normalisation.

Section k is one module path (``layer2``) or a range of numbered children (``blocks.4:8`` is ``blocks.4`` …
``blocks.7``), whose modules run in order. Boundary b0 is the input of section 1, b_k the output of section k,
captured by hooks during one ordinary forward, so a model needs no special ``forward``. Everything outside the
sections (the stem before them, the head after them, parameters of the root such as a ViT's ``cls_token``, and
the input normalisation) is what a student copies from the teacher by name and freezes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from litcache.errors import CompatibilityError, ConfigError

_RANGE = re.compile(r"^(?P<parent>.+)\.(?P<lo>\d+):(?P<hi>\d+)$")
NET = "net."  # the wrapped module's prefix in state dicts


def expand_section(path: str) -> list[str]:
    """The module paths one section runs, in order: ``"blocks.0:3"`` -> ``blocks.0, blocks.1, blocks.2``."""
    m = _RANGE.match(path)
    if not m:
        return [path]
    lo, hi = int(m["lo"]), int(m["hi"])
    if hi <= lo:
        raise ConfigError(f"section {path!r}: a range a:b needs a < b (blocks.0:4 runs blocks 0, 1, 2 and 3)")
    return [f"{m['parent']}.{i}" for i in range(lo, hi)]


def state_mismatches(
    own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], given_name: str, own_name: str
) -> list[str]:
    """What keeps ``given`` from loading into a module whose state is ``own``: one line per name or shape."""
    lines = [f"missing in {given_name}: {n} {tuple(t.shape)}" for n, t in own.items() if n not in given]
    lines += [f"only in {given_name}: {n} {tuple(t.shape)}" for n, t in given.items() if n not in own]
    lines += [
        f"{n}: {given_name} {tuple(given[n].shape)}, {own_name} {tuple(t.shape)}"
        for n, t in own.items()
        if n in given and given[n].shape != t.shape
    ]
    return lines


class Normalize(nn.Module):
    """Per-channel standardisation of an input in [0, 1]; part of the model so checkpoints carry it."""

    mean: torch.Tensor  # (1, C, 1, 1) buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _StemDone(Exception):
    """Raised by a hook to stop a forward once section 1's input (b0) is known."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def _one_tensor(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CompatibilityError(
            f"{what} is a {type(value).__name__}, not one tensor; LIT compares one tensor per boundary: "
            "choose section paths whose modules take and return one tensor"
        )
    return value


def _check_one_input(module: nn.Module, path: str) -> None:
    """Refuse a section module whose forward needs more than the one tensor a section is run on."""
    params = list(inspect.signature(module.forward).parameters.values())
    needed = [
        p.name
        for p in params[1:]
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not params or needed:
        raise CompatibilityError(
            f"section module {path!r} ({type(module).__name__}) needs forward({', '.join(p.name for p in params)}); "
            "a student section runs alone on one boundary tensor, so every section module must take one input: "
            "choose other section paths"
        )


class SectionedModel(nn.Module):
    """``net`` (any module) on normalised inputs, split into sections by module paths.

    Inputs are float images in [0, 1], shape (N, C, H, W); ``normalize`` standardises them first. ``spec`` is the
    JSON-ready description that rebuilds the module (see :mod:`litcache.models.registry`).
    """

    def __init__(
        self,
        net: nn.Module,
        sections: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not sections:
            raise ConfigError("a model needs at least one section path (e.g. layer1, or blocks.0:4)")
        self.normalize = Normalize(mean, std)
        self.net = net
        self.spec = dict(spec or {})
        self.frozen_outside = False  # set by load_frozen: the stem and head are the teacher's, not trained
        self.section_paths = tuple(sections)
        self._paths = [expand_section(p) for p in sections]  # module paths per section
        flat = [p for paths in self._paths for p in paths]
        if len(set(flat)) != len(flat):
            raise ConfigError(f"section paths {list(sections)} name a module twice")
        for path in flat:
            try:
                module = net.get_submodule(path)
            except AttributeError as exc:
                children = ", ".join(name for name, _ in net.named_children())
                raise CompatibilityError(
                    f"{type(net).__name__} has no module {path!r} (section paths {list(sections)}); its top-level "
                    f"modules are: {children}"
                ) from exc
            _check_one_input(module, path)

    # -- structure ------------------------------------------------------------------------------------------
    @property
    def num_sections(self) -> int:
        return len(self._paths)

    def section_modules(self, k: int) -> list[nn.Module]:
        """The modules section ``k`` (1-based) runs, in order."""
        return [self.net.get_submodule(p) for p in self._paths[k - 1]]

    def section_blocks(self, k: int) -> int:
        """The blocks section ``k`` (1-based) runs: its modules, a container (``Sequential``, ``ModuleList``)
        counting as its children (``layer1`` of a CIFAR ResNet-20 holds 3, ``blocks.0:4`` 4)."""
        return sum(len(m) if isinstance(m, nn.Sequential | nn.ModuleList) else 1 for m in self.section_modules(k))

    def section_of(self, name: str) -> int:
        """The section (1-based) a state-dict key belongs to, or 0 when it is outside every section."""
        for k, paths in enumerate(self._paths, start=1):
            if any(name.startswith(f"{NET}{p}.") for p in paths):
                return k
        return 0

    def named_outside_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Modules that neither belong to a section nor contain one (the stem and head's parts)."""
        inside = [f"{NET}{p}" for paths in self._paths for p in paths]
        for name, module in self.named_modules():
            if not name or any(name == s or name.startswith(s + ".") or s.startswith(name + ".") for s in inside):
                continue
            yield name, module

    # -- forward passes -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def forward_boundaries(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One ordinary forward that also returns boundaries b0..bS, captured by hooks."""
        bounds: list[Any] = [None] * (self.num_sections + 1)

        def keep_input(module: nn.Module, args: tuple[Any, ...]) -> None:
            bounds[0] = args[0] if args else None

        def keep_output(k: int) -> Any:
            def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                bounds[k] = output

            return hook

        handles = [self.section_modules(1)[0].register_forward_pre_hook(keep_input)]
        handles += [self.section_modules(k)[-1].register_forward_hook(keep_output(k)) for k in range(1, len(bounds))]
        try:
            out = self(x)
        finally:
            for h in handles:
                h.remove()
        for k, b in enumerate(bounds):
            if b is None:
                raise CompatibilityError(f"boundary {k} was never computed: the model's forward skips section {k}")
            _one_tensor(b, f"boundary {k} (around section {self.section_paths[max(k - 1, 0)]!r})")
        return bounds, _one_tensor(out, "the model's output")

    def stem_output(self, x: torch.Tensor) -> torch.Tensor:
        """b0 alone: the forward up to section 1's input, then stopped."""

        def stop(module: nn.Module, args: tuple[Any, ...]) -> None:
            raise _StemDone(args[0])

        handle = self.section_modules(1)[0].register_forward_pre_hook(stop)
        try:
            self(x)
        except _StemDone as done:
            return done.value
        finally:
            handle.remove()
        raise CompatibilityError(f"section 1 ({self.section_paths[0]!r}) never ran in the model's forward")

    def run_section(self, k: int, b: torch.Tensor) -> torch.Tensor:
        """Section ``k`` (1-based) alone on boundary ``b`` (b_{k-1})."""
        for module in self.section_modules(k):
            b = module(b)
        return b

    # -- what the student copies, trains and freezes ----------------------------------------------------------
    def frozen_state(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer outside the sections (stem, head, root parameters, normalisation)."""
        return {n: t for n, t in self.state_dict().items() if not self.section_of(n)}

    def section_state(self, k: int) -> dict[str, torch.Tensor]:
        return {n: t for n, t in self.state_dict().items() if self.section_of(n) == k}

    def section_parameters(self, k: int) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if self.section_of(n) == k]

    def load_frozen(self, state: Mapping[str, torch.Tensor], source: str = "the teacher") -> None:
        """Copy ``state`` (a teacher's :meth:`frozen_state`) in by name and freeze what lies outside the sections."""
        lines = state_mismatches(self.frozen_state(), state, source, "this model")
        if lines:
            more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
            raise CompatibilityError(
                f"the parts outside the sections (stem and head) must match {source}'s by name and shape to be "
                f"copied: {'; '.join(lines[:5])}{more}"
            )
        self.load_state_dict(dict(state), strict=False)
        for name, p in self.named_parameters():
            if not self.section_of(name):
                p.requires_grad_(False)
        self.frozen_outside = True

    def set_train_mode(self, frozen_mode: str = "eval") -> None:
        """Train mode for the sections; the frozen stem and head (after :meth:`load_frozen`) stay in eval mode.

        As in LIT's reference code (``student.eval()``, then ``section.train()``): the frozen parts' batch-norm
        statistics and dropout must not move. A model trained whole (the baselines) trains everything.
        ``frozen_mode="train"`` puts the frozen parts in train mode too (their parameters stay frozen, their batch
        norms use batch statistics and update their running ones), as the reference's fine-tuning does.
        """
        self.train()
        if self.frozen_outside and frozen_mode == "eval":
            for _, module in self.named_outside_modules():
                module.eval()
