"""Typed dataclasses from text and JSON, the one reader of the project's three configuration parsers:
``--set KEY=VALUE`` (``gpsnet.nets.config.override``: strings), the data layer's ``param_str``
(``gpsnet.data.batch.BatchParams.from_json``) and the other Python layers' ``param_str``
(``gpsnet.layers._common``: JSON objects). A value is converted by its field's type hint: ``bool``,
``int``, ``float``, ``str`` or a tuple of them (a JSON list, or a comma-separated string)."""
from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's field names and their resolved type hints, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def convert(kind: Any, value: Any) -> Any:
    """``value`` (a command line's string or a JSON value) as the type ``kind``; ``ValueError`` saying
    what was expected. Tuples: a list or a comma-separated string, each item converted; ``tuple[X, ...]``
    any count, ``tuple[X, Y]`` exactly that many. Other kinds than the ones above: ``value`` unchanged."""
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if isinstance(value, str):
            items: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError("expected a list of values")
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(items)
        elif len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        else:
            kinds = list(args)
        return tuple(convert(k, v) for k, v in zip(kinds, items))
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError("expected a boolean (true/false)")
    if kind is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError("expected an integer")
    if kind is float:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("expected a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    return value


def check_keys(values: Mapping[str, Any], known: set[str], where: str) -> None:
    """``ValueError`` starting with ``where`` naming the keys of ``values`` not in ``known`` (and those)."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")


def typed_values(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` (keys: field names of the dataclass ``cls``) converted by their fields' types;
    ``ValueError`` starting with ``where`` naming unknown keys (with the known ones) or a bad value."""
    kinds = field_types(cls)
    check_keys(values, set(kinds), where)
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            out[name] = convert(kinds[name], value)
        except ValueError as err:
            raise ValueError(f"{where}: {name} = {value!r}: {err}") from None
    return out


def make(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """The dataclass ``cls`` from ``values`` (see ``typed_values``); missing keys take its defaults, a
    field without one is required (a ``ValueError`` starting with ``where`` names it)."""
    kwargs = typed_values(cls, values, where)
    missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where}: {', '.join(map(repr, missing))} required (no default)")
    return cls(**kwargs)


def json_object(text: str | None, where: str) -> dict[str, Any]:
    """``text`` (a ``param_str``) as a JSON object, ``{}`` when empty; ``ValueError`` starting with ``where``."""
    text = (text or "").strip()
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON: {err}: {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object, got {text!r}")
    return value
