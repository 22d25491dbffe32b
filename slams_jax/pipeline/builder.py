"""ConfigDict -> typed, frozen dataclass: the one builder of every settings record.

:func:`build_settings` reads a group of a config (an ``ml_collections.ConfigDict`` or a nested dict) into
a frozen dataclass, field by field, after the field's type annotation:

- a nested dataclass is built recursively; a ``Literal`` must be one of its choices; a ``Union`` takes
  the first of its types that accepts the value;
- ``tuple[T, ...]`` and fixed ``tuple[A, B]`` take any non-string sequence, ``Mapping[str, T]`` a group
  of keys (it becomes a read-only mapping);
- ``float`` takes an int or a float, ``int`` an integral number, ``bool`` only ``True``/``False``, ``str``
  only a string.

Every error is a :class:`~slams_jax.errors.ConfigError` that names the offending key as it is written on
the command line (``config.data.train[1]``): an unknown key (listing the valid ones), a missing one,
an ill-typed value, or a value the dataclass's own ``__post_init__`` refuses. The inverse,
:func:`to_plain`, gives the JSON form a checkpoint stores.

The training settings (:mod:`slams_jax.pipeline.configuration`), the twin and the ablation study build
their records with it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
from typing import Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

from slams_jax.data.settings import to_plain
from slams_jax.errors import ConfigError


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert_union(value: Any, tp: Any, path: str) -> Any:
    errors = []
    for arg in get_args(tp):
        try:
            return convert(value, arg, path)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(f"config.{path}={value!r}: no accepted type ({'; '.join(errors)})")


def _convert_tuple(value: Any, tp: Any, path: str) -> tuple:
    args = get_args(tp)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"config.{path}={value!r}: expected a sequence")
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(items))
    if len(args) != len(items):
        raise ConfigError(f"config.{path}={value!r}: expected {len(args)} items")
    return tuple(convert(v, a, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, items)))


def _convert_scalar(value: Any, tp: Any, path: str) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config.{path}={value!r}: expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config.{path}={value!r}: expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config.{path}={value!r}: expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config.{path}={value!r}: expected a string")
        return value
    return value  # an unannotated or unchecked type: taken as it is


def convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against, and converted to, the type annotation ``tp``.

    Args:
        value: A config value (scalar, sequence, ConfigDict or dict).
        tp: The annotation of the field it fills.
        path: The key's dotted path under ``config``, for the error messages.

    Returns:
        The converted value (a dataclass, tuple, read-only mapping or scalar).

    Raises:
        ConfigError: naming ``config.<path>`` when the value does not fit ``tp``.
    """
    origin = get_origin(tp)
    if _is_dataclass_type(tp):
        return value if isinstance(value, tp) else build_settings(tp, value, path)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config.{path}={value!r}: expected one of {choices}")
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(value, tp, path)
    if origin is tuple:
        return _convert_tuple(value, tp, path)
    if origin in (collections.abc.Mapping, dict):
        _, vtype = get_args(tp)
        return types.MappingProxyType({k: convert(v, vtype, f"{path}.{k}") for k, v in dict(value).items()})
    return _convert_scalar(value, tp, path)


def as_mapping(value: Any, path: str) -> dict:
    """A config group (ConfigDict or mapping) as a plain dict; anything else is a ConfigError at ``path``."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise ConfigError(f"config.{path}: expected a group of keys, got {value!r}")
    return dict(value)


def build_settings(cls: type, value: Any, path: str) -> Any:
    """The frozen dataclass ``cls`` built from the config group ``value``.

    Args:
        cls: A dataclass type whose fields carry type annotations.
        value: Its config group; absent or ``None`` keys take the field's default.
        path: The group's dotted path under ``config`` (``""`` for the top level), for the messages.

    Returns:
        ``cls(**fields)``, every field converted by :func:`convert`.

    Raises:
        ConfigError: for an unknown key, a missing required one, an ill-typed value, or a value that
            ``cls.__post_init__`` refuses (its ``TypeError``/``ValueError`` message, prefixed by the path).
    """
    raw = as_mapping(value, path)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"config.{path}" if path else "config"
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected keys: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in raw or raw[name] is None:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"config.{sub} is missing")
            continue
        kwargs[name] = convert(raw[name], hints[name], sub)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.{path or cls.__name__}: {e}") from e


__all__ = ["build_settings", "convert", "as_mapping", "to_plain"]
