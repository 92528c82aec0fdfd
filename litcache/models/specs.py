"""Model specs: a built-in ``name`` (``resnet20``, ``resnext29``, ``generator6``) or a ``factory``
(``package.module:function``, or ``path/to/file.py:function``) called with ``kwargs``, plus the module paths of
its ``sections``. Built-ins, and torchvision's ResNet family, know their section paths.

Plain data, no torch: the config checks built-in names with it, and a cache's summary names its teacher with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from litcache.errors import ConfigError

# name pattern -> (factory, the number in the name -> kwargs or None when invalid, kwargs -> section paths)
_STAGES3 = ["layer1", "layer2", "layer3"]


_BUILTINS: list[tuple[re.Pattern[str], str, Callable[[int], dict[str, Any] | None], Callable[..., list[str]]]] = [
    (
        re.compile(r"^resnet(\d+)$"),
        "litcache.models.resnet:cifar_resnet",
        lambda d: {"depth": d} if d >= 8 and (d - 2) % 6 == 0 else None,
        lambda **kw: _STAGES3,
    ),
    (
        re.compile(r"^resnext(\d+)$"),
        "litcache.models.resnext:cifar_resnext",
        lambda d: {"depth": d} if d >= 11 and (d - 2) % 9 == 0 else None,
        lambda **kw: _STAGES3,
    ),
    (
        re.compile(r"^generator(\d+)$"),
        "litcache.models.generator:residual_generator",
        lambda n: {"blocks": n} if n >= 2 and n % 2 == 0 else None,
        lambda blocks, **kw: [f"blocks.0:{blocks // 2}", f"blocks.{blocks // 2}:{blocks}"],
    ),
]


BUILTIN_EXAMPLES = "resnet8 ... resnet110 (6n+2), resnext11/20/29 (9n+2), generator2/4/6 (even)"


# factories whose section paths are known (torchvision's ResNet family: four stages)
_STAGES = ["layer1", "layer2", "layer3", "layer4"]


_KNOWN_SECTIONS = (
    (re.compile(r"^torchvision\.models(\.resnet)?:(resnet\d+|resnext\w+|wide_resnet\w+)$"), _STAGES),
    (re.compile(r"^litcache\.models\.zoo:torchvision_resnet$"), _STAGES),
)


# modules a checkpoint may name without the user's pipeline naming them too: building a model from a
# checkpoint imports and calls its factory, and a checkpoint from elsewhere must not run code of its choosing
TRUSTED_MODULES = ("litcache.models", "torchvision.models", "timm")


def builtin(name: str) -> dict[str, Any] | None:
    """The resolved spec of a built-in model name, or None."""
    for pattern, factory, kwargs_of, sections_of in _BUILTINS:
        m = pattern.match(name)
        kwargs = kwargs_of(int(m[1])) if m else None
        if kwargs is not None:
            return {"name": name, "factory": factory, "kwargs": kwargs, "sections": list(sections_of(**kwargs))}
    return None


def resolve_spec(spec: Any) -> dict[str, Any]:
    """A model spec (a ``ModelConfig``, a mapping, or a built-in name) as ``{name, factory, kwargs, sections}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    elif not isinstance(spec, Mapping):
        spec = {k: getattr(spec, k) for k in ("name", "factory", "kwargs", "sections")}
    name, factory = spec.get("name") or "", spec.get("factory") or ""
    kwargs, sections = dict(spec.get("kwargs") or {}), list(spec.get("sections") or ())
    if name:
        found = builtin(name)
        if found is None:
            raise ConfigError(
                f"unknown built-in model {name!r}: built-ins are {BUILTIN_EXAMPLES}; or give a factory "
                "(package.module:function) with its section paths"
            )
        found["kwargs"].update(kwargs)
        found["sections"] = sections or found["sections"]
        return found
    if not factory:
        raise ConfigError("a model spec needs a built-in name or a factory (package.module:function)")
    if not sections:
        sections = next((list(s) for pattern, s in _KNOWN_SECTIONS if pattern.match(factory)), [])
    if not sections:
        raise ConfigError(
            f"model factory {factory!r}: give the module paths of its sections in order (model sections: "
            "[layer1, layer2, layer3], or block ranges such as [blocks.0:4, blocks.4:8, blocks.8:12])"
        )
    return {"name": "", "factory": factory, "kwargs": kwargs, "sections": sections}


def describe(spec: Mapping[str, Any]) -> str:
    """A short name for a resolved spec: the built-in name, or the factory with its kwargs."""
    if spec.get("name"):
        return str(spec["name"])
    args = ", ".join(f"{k}={v!r}" for k, v in spec.get("kwargs", {}).items())
    return f"{spec['factory']}({args})"
