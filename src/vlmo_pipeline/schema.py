"""Typed construction of configuration dataclasses from parameters and JSON (standard library only).

Every configuration in the project is a dataclass (``RunConfig``, ``IngestConfig``, ``VLMoConfig``, ...), and
every one is built from outside values — Kedro parameters, a ``--params`` YAML file, a ``config.json`` — by
:func:`build_config`. It checks each value against the field's annotation before the dataclass sees it, so a
``"false"`` string never switches a flag on and ``20.7`` is not a step count::

    parameters_ingest.yml: ingest.shard_rows: expected an integer, got float 20.7

The rules are strict on purpose:

* ``bool`` takes only ``true``/``false`` (not ``"no"``, not ``0``); ``int`` takes only integers (not ``20.7``, not
  ``20.0``, not ``True``); ``str`` takes only strings (and paths);
* ``float`` takes integers and floats, and strings that spell a finite number (PyYAML reads ``1e-4`` as the string
  ``"1e-4"``; YAML 1.1 needs a dot in an exponent);
* ``list[X]`` / ``tuple[X, ...]`` take lists or tuples (YAML has no tuples); ``dict[str, X]`` takes mappings;
* ``X | None`` takes ``null``; a union takes what any of its members takes, tried in order;
* a nested dataclass takes a mapping, built with the same rules; unknown keys are errors (a typo never falls back
  to a default silently).

All problems found in one mapping are reported together, in one :class:`ConfigError` whose message names the
source (file), each key's dotted path, the expected type and the value found. Range checks and choices stay in
the dataclasses' ``__post_init__``; their ``ValueError`` is re-raised as a :class:`ConfigError` naming the source.

This module imports nothing beyond the standard library, so the model library can use it too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["ConfigError", "build_config", "check_fields", "plain"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value of the wrong type, an unknown key, or a value its dataclass rejects."""


class _Mismatch(Exception):
    """One value that does not fit its annotation (collected, then reported as part of a ConfigError)."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        super().__init__(f"{path}: expected {expected}, got {_describe_value(value)}")


def plain(value: Any) -> Any:
    """OmegaConf / Kedro containers and tuples → plain dicts and lists; paths → strings."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def build_config(cls: type[T], values: Mapping[str, Any] | T | None, where: str, path: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``values`` with every field type-checked (see the module docstring).

    ``where`` names the source in messages (a file name); ``path`` is the dotted key of ``values`` inside it
    (a Kedro parameters section, e.g. ``ingest``). ``None`` gives the defaults; an instance is returned
    as is."""
    if values is None:
        values = {}
    if isinstance(values, cls):
        return values
    problems: list[str] = []
    kwargs = _check_mapping(cls, values, path, problems)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {path + ': ' if path else ''}{error}") from error


def check_fields(cls: type, values: Mapping[str, Any], where: str, path: str = "") -> dict[str, Any]:
    """The checked and converted ``values`` of some fields of dataclass ``cls`` (for ``replace``-style updates)."""
    problems: list[str] = []
    checked = _check_mapping(cls, values, path, problems)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return checked


def _check_mapping(cls: type, values: Any, path: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        problems.append(str(_Mismatch(path or "(top level)", f"a mapping of {cls.__name__} settings", values)))
        return {}
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        where = f"{path}: " if path else ""
        problems.append(f"{where}unknown key(s) {unknown}; known: {sorted(fields)}")
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            continue
        key_path = f"{path}.{key}" if path else str(key)
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if isinstance(value, hint):
                checked[key] = value
                continue
            nested_problems: list[str] = []
            nested = _check_mapping(hint, value, key_path, nested_problems)
            if nested_problems:
                problems.extend(nested_problems)
                continue
            try:
                checked[key] = hint(**nested)
            except (TypeError, ValueError) as error:  # its own range checks; their messages name the key
                problems.append(f"{path}: {error}" if path else str(error))
            continue
        try:
            checked[key] = _check_value(value, hint, key_path)
        except _Mismatch as mismatch:
            problems.append(str(mismatch))
    return checked


def _check_value(value: Any, hint: Any, path: str) -> Any:
    """``value`` converted to ``hint`` (lists to tuples, ints to floats, numeric strings to floats), or _Mismatch."""
    if hint is Any:
        return plain(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for member in args:
            if member is type(None):
                continue
            try:
                return _check_value(value, member, path)
            except _Mismatch:
                continue
        raise _Mismatch(path, _describe_type(hint), value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch(path, _describe_type(hint), value)
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch(path, "null", value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch(path, "true or false", value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch(path, "an integer", value)
    if hint is float:
        return _check_float(value, path)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _Mismatch(path, "a string", value)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise _Mismatch(path, _describe_type(hint), value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(path, _describe_type(hint), value)
            return tuple(_check_value(item, arg, f"{path}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))
        item_hint = args[0] if args else Any
        items = [_check_value(item, item_hint, f"{path}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch(path, _describe_type(hint), value)
        key_hint, value_hint = args if args else (Any, Any)
        return {
            _check_value(key, key_hint, f"{path} key {key!r}"): _check_value(item, value_hint, f"{path}.{key}")
            for key, item in value.items()
        }
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch(path, _describe_type(hint), value)
    return value  # an annotation this checker does not model: left to the dataclass


def _check_float(value: Any, path: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise _Mismatch(path, "a number", value)


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe_type(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_describe_type(arg) for arg in args)})"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is dict:
        return f"a mapping to {_plural(args[1])}" if args else "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    names = {bool: "booleans", int: "integers", float: "numbers", str: "strings", Any: "values"}
    return names.get(hint, _describe_type(hint))


def _describe_value(value: Any) -> str:
    kind = "null" if value is None else type(value).__name__
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return kind if value is None else f"{kind} {shown}"
