"""Reading a config: a YAML file and `--set a.b=v` overrides into a plain tree, and a tree into typed dataclasses.

selfimprove/config.py defines and documents the config dataclasses and their rules; this module knows
only what dataclass fields and their annotations say. It imports nothing from selfimprove, so
config.py imports it without a cycle. ConfigError lives here because reading a file raises it first;
`from selfimprove.config import ConfigError` is the public spelling.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config problem, with the dotted field path in the message."""


def _locate(path: str | Path) -> Path:
    """A YAML file, or the name of a shipped config ("demo", "tiny_smoke.yaml"): `selfimprove run
    tiny_smoke` works from any directory and any install."""
    given = Path(path)
    if given.is_file():
        return given
    from selfimprove.configs import shipped

    name = given.name if given.suffix == ".yaml" else f"{given.name}.yaml"
    if given.parent == Path(".") and shipped(name).is_file():
        return Path(str(shipped(name)))
    known = sorted(p.name.removesuffix(".yaml") for p in shipped(".").iterdir() if p.name.endswith(".yaml"))
    raise ConfigError(f"config file not found: {given} (shipped configs, usable by name: {', '.join(known)})")


def read_tree(path: str | Path | None = None, overrides: list[str] | tuple = (), base: dict | None = None) -> dict:
    """`base` <- YAML file <- `key.sub=value` overrides (values parsed as YAML scalars), as a plain tree."""
    tree: dict = dict(base or {})
    if path is not None:
        path = _locate(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = _merge(tree, loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        _method_shorthand(tree)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    _method_shorthand(tree)
    return tree


def _set_dotted(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _method_shorthand(tree: dict) -> None:
    """`method: temporal` is short for `method: {name: temporal}`."""
    if isinstance(tree.get("method"), str):
        tree["method"] = {"name": tree["method"]}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def build(cls, data: dict, prefix: str = ""):
    """Dataclass `cls` from a mapping, each value checked against its field's annotation (see coerce)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = _join(prefix, unknown[0])
        raise ConfigError(f"unknown config key '{where}' (allowed here: {', '.join(sorted(names))})")
    return cls(**{name: coerce(value, hints[name], _join(prefix, name)) for name, value in data.items()})


def check_fields(obj, prefix: str = "") -> None:
    """Check the fields of a dataclass instance (e.g. built in code) as loading checks a mapping's values."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        coerce(getattr(obj, f.name), hints[f.name], _join(prefix, f.name))


def coerce(value, tp, where: str):
    """Check `value` against the annotation `tp` (Literal values included), converting int->float.

    A mapping for a dataclass field is built into it; a dataclass instance already there runs its own
    `validate(where)`. Raises ConfigError naming the dotted field `where`.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {sorted(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            value.validate(where)
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp) or (None,)
        if item_tp is None:
            return value
        return [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = origin or tp
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value
