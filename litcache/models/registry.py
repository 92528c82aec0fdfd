"""Models by name or by factory: how a pipeline's model spec becomes a :class:`SectionedModel`.

A spec is a built-in ``name`` (``resnet20``, ``resnext29``, ``generator6``) or a ``factory``
(``package.module:function``, or ``path/to/file.py:function``) called with ``kwargs``, plus the module paths of
its ``sections``. Built-ins, and torchvision's ResNet family, know their section paths. ``num_classes`` is passed
to any factory that takes it, and ``in_channels`` (the data's channel count, from its mean) to any that names it,
unless its kwargs set them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from litcache.errors import ConfigError
from litcache.models.sections import SectionedModel
from litcache.models.specs import TRUSTED_MODULES, describe, resolve_spec


def import_factory(factory: str) -> Callable[..., nn.Module]:
    """The callable ``package.module:function`` (or ``path/to/file.py:function``) names."""
    module_name, sep, attr = factory.rpartition(":")
    loading = None  # a module run from a file path, while it runs
    if not sep or not module_name or not attr:
        raise ConfigError(f"model factory {factory!r} must look like package.module:function")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"no file {path}")
            module = loading = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = " (pip install 'litcache[timm]')" if module_name.split(".")[0] == "timm" else ""
        raise ConfigError(f"cannot import model factory module {module_name!r}{extra}: {exc}") from exc
    except Exception as exc:  # the module's own code failed (a syntax error, an error at import): still one line
        if loading is not None and sys.modules.get(loading.__name__) is loading:
            del sys.modules[loading.__name__]  # not half a module for the next import
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"cannot import model factory module {module_name!r}: importing it raised {type(exc).__name__}"
            f"{f': {first}' if first else ''}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"model factory {factory!r}: module {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def _takes(fn: Callable[..., Any], name: str, via_kwargs: bool = True) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (``via_kwargs``: a ``**kwargs`` counts)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or (via_kwargs and p.kind is p.VAR_KEYWORD) for p in params)


def build_model(
    spec: Any,
    num_classes: int = 10,
    mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
    std: Sequence[float] = (0.2470, 0.2435, 0.2616),
) -> SectionedModel:
    """Build the model ``spec`` names (a built-in name, a ``ModelConfig`` or a resolved spec) as a sectioned model.

    Inputs are float images in [0, 1], shape (N, C, H, W); the model normalises them with ``mean``/``std``.
    """
    resolved = resolve_spec(spec)
    fn = import_factory(resolved["factory"])
    kwargs = dict(resolved["kwargs"])
    if "num_classes" not in kwargs and _takes(fn, "num_classes"):
        kwargs["num_classes"] = num_classes
    if "in_channels" not in kwargs and _takes(fn, "in_channels", via_kwargs=False):  # grayscale data: 1
        kwargs["in_channels"] = len(mean)
    try:
        net = fn(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"model {describe(resolved)}: the factory failed: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model factory {resolved['factory']!r} returned a {type(net).__name__}, not an nn.Module")
    return SectionedModel(net, resolved["sections"], mean, std, spec={**resolved, "kwargs": kwargs})


def check_trusted(spec: Mapping[str, Any], trusted: Collection[str], source: str) -> None:
    """Refuse to build from ``source`` (a checkpoint) a factory outside litcache, torchvision and timm, unless the
    user's own configuration names it (``trusted``: the factories of the pipeline's models)."""
    factory = str(spec.get("factory", ""))
    module = factory.rpartition(":")[0]
    if factory in trusted or any(module == m or module.startswith(m + ".") for m in TRUSTED_MODULES):
        return
    raise ConfigError(
        f"{source} names the model factory {factory!r}; litcache does not import code a checkpoint names "
        "(it could be anyone's): name the same factory in your pipeline (teacher.model or train.student, "
        "with --pipeline FILE or --set) to allow it"
    )


def check_importable(models: Mapping[str, Any]) -> None:
    """Import the factory of every model in ``models`` (config key -> spec): a pipeline that names a factory that
    cannot be imported is refused, naming the key, by every command, whether or not it builds that model."""
    for key, spec in models.items():
        factory = resolve_spec(spec)["factory"]
        try:
            import_factory(factory)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}; fix the pipeline (or --set {key}=...)") from exc
