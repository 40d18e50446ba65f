"""Typed dataclass configs: YAML in, unknown keys rejected, ``key=value`` overrides.

Every config in the project is a (possibly nested) dataclass. ``load_config(Cls, path, overrides)`` reads a YAML
file, applies dotted overrides such as ``train.lr=3e-4``, and builds the dataclass, so validation lives in each
class's ``__post_init__``. Errors name the file and the full dotted key.

Every entry point reads its settings the same way (``add_config_arguments`` + ``config_from_args``):
``--config FILE``, then one ``--flag`` per scalar setting, generated from the dataclass (its type, its default,
its help from the class docstring's ``name: text`` lines), then ``key=value`` overrides of any setting, nested
ones included; later wins. A default is stated once, in the dataclass.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be turned into its dataclass."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars (``1`` -> int)."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key below the scalar {part!r}")
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``update`` wins; nested dicts merge key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown key(s) {', '.join(_join(where, k) for k in unknown)} (known: {known})")
    missing = [n for n, f in fields.items() if n not in data and _default(f) is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing setting(s) {', '.join(_join(where, k) for k in missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """YAML file (optional) + ``key=value`` overrides -> validated dataclass ``cls``."""
    data = read_yaml(path) if path else {}
    data = merge(data, parse_overrides(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML-safe values (paths become strings)."""
    return _plain(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (for experiment trackers)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = _join(prefix, key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def add_config_arguments(p: argparse.ArgumentParser, cls: type, overrides: bool = True, config: bool = True) -> None:
    """``--config FILE``, one ``--flag`` per scalar setting of ``cls`` and (``overrides``) a ``key=value``
    positional. Flags cover the top-level fields and the fields of nested sections whose names are unique (a
    section field's ``metadata={"flag_prefix": "llm-"}`` names its flags ``--llm-<field>``, a field's
    ``metadata={"flag": "wheel"}`` renames its own); a list of scalars is a repeatable flag. Settings in
    mappings, and repeated names, are reached by ``key=value`` only."""
    if config:
        p.add_argument("--config", type=Path, metavar="FILE",
                       help=f"YAML file of settings ({cls.__name__}); the flags and key=value overrides apply over it")
    group = p.add_argument_group(f"settings ({cls.__name__}; each flag is also a key=value override)")
    for flag, key, tp, f, doc in _flags(cls):
        default = _default(f)
        if default is dataclasses.MISSING:
            shown = " (required)"
        else:
            shown = "" if default is None or default == [] else f" (default: {_plain(default)})"
        doc = doc.replace("%", "%%")  # argparse formats help strings with %
        kwargs: dict[str, Any] = {"dest": f"setting:{key}", "default": argparse.SUPPRESS, "help": doc + shown}
        base = _bare(tp)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            kwargs.update(action="append", metavar=flag.upper().replace("-", "_"), help=doc + " (repeatable)")
        else:
            kwargs["metavar"] = flag.upper().replace("-", "_")
            if typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = typing.get_args(base)
            else:
                kwargs["type"] = base if base in (int, float) else str
        group.add_argument(f"--{flag}", **kwargs)
    if overrides:
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="override any setting by its dotted key, nested ones too (e.g. "
                            f"{_example(cls)}); values are YAML scalars")


def config_from_args(cls: type[T], args: argparse.Namespace, overrides: bool = True) -> T:
    """``cls`` from ``--config``, the generated flags and (``overrides``) the ``key=value`` overrides, in that
    order."""
    path = getattr(args, "config", None)
    data = read_yaml(path) if path else {}
    for name, value in vars(args).items():
        if name.startswith("setting:"):
            *parents, leaf = name.removeprefix("setting:").split(".")
            node: dict[str, Any] = {leaf: value}
            for part in reversed(parents):
                node = {part: node}
            data = merge(data, node)
    if overrides:
        data = merge(data, parse_overrides(getattr(args, "overrides", None) or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def field_docs(cls: type) -> dict[str, str]:
    """``name: text`` lines of the class docstring (continued by more indented lines), by field name; an
    inherited field's help comes from the dataclass base that declares it, unless the class restates it."""
    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_docstring_fields(klass.__doc__ or "", names))
    return docs


def _docstring_fields(doc: str, names: set[str]) -> dict[str, str]:
    docs: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        match = re.match(r"^(\s*)(\w+): (.+)$", line)
        if match and match[2] in names:
            current, indent = match[2], len(match[1])
            docs[current] = match[3].strip()
        elif current and line.strip() and len(line) - len(line.lstrip()) > indent:
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def _flags(cls: type, prefix: str = "", flag_prefix: str = "") -> list[tuple[str, str, Any, Any, str]]:
    """(flag, dotted key, type, field, help) of every scalar setting that gets a flag."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    own, nested = [], []
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], _join(prefix, f.name)
        section = _bare(tp)
        if dataclasses.is_dataclass(section):
            nested += _flags(section, key, f.metadata.get("flag_prefix", ""))
        elif _scalar(section) or (typing.get_origin(section) is list and _scalar(typing.get_args(section)[0])):
            flag = flag_prefix + f.metadata.get("flag", f.name).replace("_", "-")
            own.append((flag, key, tp, f, docs.get(f.name, "")))
    names = [flag for flag, *_ in own]
    counts = collections.Counter(flag for flag, *_ in nested)
    return own + [entry for entry in nested if counts[entry[0]] == 1 and entry[0] not in names]


def _scalar(tp: Any) -> bool:
    return tp in (int, float, str, bool, Path) or typing.get_origin(tp) is typing.Literal


def _bare(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _example(cls: type, prefix: str = "") -> str:
    """A ``key=value`` with a real key and its default, preferring a nested one (what flags do not reach)."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if _default(f) is not dataclasses.MISSING]
    for f in fields:
        if dataclasses.is_dataclass(_bare(hints[f.name])):
            return _example(_bare(hints[f.name]), _join(prefix, f.name))
    scalar = next((f for f in fields if _scalar(_bare(hints[f.name]))), None)
    return f"{_join(prefix, scalar.name)}={_plain(_default(scalar))}" if scalar else f"{_join(prefix, 'key')}=value"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is float and not isinstance(value, bool):
        # YAML 1.1 reads "3e-4" (no dot) as a string; accept any float spelling for float fields.
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `stage: 1` or `tags.stage=1` names a string field with a YAML number
    if tp in (int, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value
