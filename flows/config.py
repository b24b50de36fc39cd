"""Typed settings from plain data: each value checked against its field's type, errors that
name the dotted setting (``phase1.basic_filters.max_line_length``). Used for the flow's
settings classes and the operators alike (an operator's fields are its settings)."""

from __future__ import annotations

import dataclasses
import types
import typing


class SettingsError(ValueError):
    """A configuration problem, with the dotted name of the setting at fault."""


def build(cls, data, where: str, hook: bool = True):
    """A settings dataclass (or an operator) from a mapping, each value checked against
    the field's type; errors name the dotted setting. A class with ``from_config`` builds
    itself."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    if hook and hasattr(cls, "from_config"):
        return cls.from_config(data, where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingsError(f"unknown setting(s) {[_join(where, u) for u in unknown]}; "
                            f"known in {where or 'the top level'}: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(hints[name], value, _join(where, name))
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where or 'config'}: {exc}") from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value or {}, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        inner = args[0] if args else object
        return tuple(coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        if not isinstance(value, list):
            if isinstance(value, (str, int)) and where.endswith("phases"):
                return [p for p in str(value).split(",") if p]
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return [coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def check_resources(resources: dict, where: str) -> None:
    """Custom Ray resources: names to non-negative numbers; CPUs and GPUs have their own
    settings."""
    for name, value in resources.items():
        if name in ("CPU", "GPU", "memory", "object_store_memory"):
            raise SettingsError(f"{where}.{name}: set it with cpus_per_actor / gpus_per_actor")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise SettingsError(f"{where}.{name}: expected a number >= 0, got {value!r}")
