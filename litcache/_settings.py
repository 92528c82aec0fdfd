"""Frozen dataclasses to and from plain data (YAML, JSON): the machinery under :mod:`litcache.config`.

A dataclass may have a short form: ``to_short()`` returns it (or None when the full mapping is needed) and the
class method ``from_short(value)`` reads it back (a built-in model is just its name). An unknown key is an error
that lists the valid ones; ``renamed`` maps an old key to what to write instead.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from litcache.errors import ConfigError


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def to_plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, short forms where a dataclass has one."""
    short = value.to_short() if hasattr(value, "to_short") and not isinstance(value, type) else None
    if short is not None:
        return short
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def coerce(tp: Any, value: Any, where: str, renamed: Mapping[str, str]) -> Any:
    """``value`` as the annotated type ``tp`` (of the key ``where``), checked."""
    origin = typing.get_origin(tp)
    if hasattr(tp, "from_short") and not isinstance(value, dict):
        return tp.from_short(value)
    if dataclasses.is_dataclass(tp):
        check(isinstance(value, dict), f"{where} must be a mapping, got {value!r}")
        return build(tp, value, where + ".", renamed)  # type: ignore[arg-type]
    if origin is dict:
        check(isinstance(value, dict), f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        check(isinstance(value, (list, tuple)), f"{where} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(coerce(item, v, where, renamed) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 5e-4 (no dot) as a string; a user means the number
    check(
        isinstance(value, tp) and not (tp is int and isinstance(value, bool)),
        f"{where} must be {tp.__name__}, got {value!r}",
    )
    return value


def build(cls: type, data: dict[str, Any], prefix: str, renamed: Mapping[str, str]) -> Any:
    """An instance of the dataclass ``cls`` from ``data`` (the keys under ``prefix``)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown and unknown[0] in renamed:
        raise ConfigError(f"config key {prefix + unknown[0]!r} was replaced by " + renamed[unknown[0]].format(p=prefix))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys under {prefix or 'the top level'}: "
            + ", ".join(names)
        )
    try:
        return cls(**{k: coerce(hints[k], v, prefix + k, renamed) for k, v in data.items()})
    except TypeError as exc:
        raise ConfigError(f"invalid config under {prefix or 'the top level'}: {exc}") from exc
