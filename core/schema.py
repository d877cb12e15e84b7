"""Build frozen dataclasses from plain dicts, checking every key and type on the way.

``build(Cls, data)`` walks the type hints of ``Cls``: unknown keys, missing required keys,
wrong types and values outside a ``Literal`` raise :class:`core.errors.ConfigError` naming the
dotted key, the value and what is allowed. Supported hints: dataclasses, ``int``, ``float``
(ints accepted; inf and nan refused), ``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` (from a
list), ``dict[str, X]`` and ``Any``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from core.errors import ConfigError

_MISSING = dataclasses.MISSING


def build(cls: type, data: Any, key: str = "") -> Any:
    return _convert(cls, data, key)


def _join(key: str, part: str | int) -> str:
    return f"{key}.{part}" if key else str(part)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ConfigError(key, value, allowed=allowed)
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                last = exc
        if len(args) == 2 and type(None) in args:
            raise last  # Optional[X]: the error about X is the useful one
        raise ConfigError(key, value, f"expected {_describe(tp)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, f"expected {_describe(tp)}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_convert(item_tp, v, _join(key, i)) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, value, f"expected {_describe(tp)}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(val_tp, v, _join(key, k)) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, "expected a number")
        if not math.isfinite(value):
            raise ConfigError(key, value, "expected a finite number (not inf or nan)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "expected a string")
        return value
    raise TypeError(f"schema: unsupported type hint {tp!r} at {key}")


def _build_dataclass(cls: type, value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(key or "<root>", value, "expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise ConfigError(_join(key, unknown[0]), value[unknown[0]],
                          f"unknown key (under `{key or '<root>'}`)", allowed=list(fields))
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], _join(key, name))
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(_join(key, name), None, f"required key is missing; expected "
                              f"{_describe(hints[name])}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`build`: plain dicts and lists (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
