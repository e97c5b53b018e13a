"""Loading experiment configs: YAML → frozen dataclasses (:mod:`bruno.config.schema`), strictly.

One YAML file per experiment (``config_rnn/<dataset>[_<variant>].yaml``). Each top-level key is a
section that maps onto one frozen dataclass; this module reads YAML with a ``yaml.SafeLoader`` (a repeated key is an error) in
exactly one place (:func:`_read_mapping`) and checks every key:

* an unknown key is an error that lists the valid keys of its section;
* a value of the wrong type, or out of range, is an error naming the file, the dotted key, the
  value and what was expected, e.g.
  ``config_rnn/adni.yaml: data.slab_fraction=1.5, expected a number in (0, 1]``;
* ``base: other.yaml`` (relative to the file) takes the sections this file leaves out from another
  file (a section given here replaces the base's whole), so variants of one experiment share its
  ``data:`` section.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Literal

import yaml

from bruno.config.model_sections import LEGACY_MODEL_KEYS, process_kind_of_legacy
from bruno.config.schema import Config, DataConfig
from bruno.errors import ConfigError
from bruno.errors import fail_config as _fail

__all__ = ["config_to_yaml", "data_to_yaml", "load_config", "override", "parse_config", "parse_data_section"]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(inner[0]) + " or null"
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list of {len(args)} {_type_name(args[0]).split(' ', 1)[1]}s"
    return str(tp)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (ints to floats, lists to tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key, value, f"a mapping with keys {sorted(f.name for f in dataclasses.fields(tp))}")
        return _build(tp, value, key + ".")
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(key, value, _type_name(tp))
        return value
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            _fail(key, value, f"a mapping of {_type_name(key_type).split(' ', 1)[1]}s to {_type_name(value_type).split(' ', 1)[1]}s")
        return {_coerce(key_type, k, key): _coerce(value_type, v, key) for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            _fail(key, value, _type_name(tp))
        return tuple(_coerce(a, v, key) for a, v in zip(args, value))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(key, value, _type_name(tp))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, _type_name(tp))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, _type_name(tp))
        if not math.isfinite(value):  # no key means anything by .nan or .inf
            _fail(key, value, "a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(key, value, _type_name(tp))
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: Any, mapping: dict[str, Any], prefix: str, lenient: bool = False) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if lenient:  # keys this version does not know (written by a newer one, or since renamed) are dropped
        mapping = {k: v for k, v in mapping.items() if k in names}
    for key in mapping:
        if key not in names:
            where = prefix.rstrip(".") or "top level"
            raise ConfigError(
                f"unknown key {prefix}{key!s} ({where}); valid keys: {', '.join(names)}"
            )
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None


def parse_config(mapping: Any, source: str = "<config>") -> Config:
    """Build a :class:`Config` from an already-parsed mapping (e.g. the YAML text of an HDF5 file).

    Raises:
        ConfigError: with ``source`` at the start of the one-line message.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(mapping).__name__}")
    try:
        if isinstance(mapping.get("model"), dict):
            model = _nest_legacy_model(mapping["model"])
            if isinstance(model.get("process"), dict):
                model = {**model, "process": process_kind_of_legacy(model["process"])}
            mapping = {**mapping, "model": model}
        return _build(Config, mapping, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _nest_legacy_model(model: dict[str, Any]) -> dict[str, Any]:
    """A flat ``model:`` section of an older config (:data:`~bruno.config.model_sections.LEGACY_MODEL_KEYS`,
    ``process: student_t``) with each key moved into its ``flow`` / ``process`` section; others as given."""
    legacy = [k for k in model if k in LEGACY_MODEL_KEYS] + (["process"] if isinstance(model.get("process"), str) else [])
    if not legacy:
        return model
    nested = {k: v for k, v in model.items() if k not in legacy}
    for section in ("flow", "process"):
        given = nested.get(section, {})
        if not isinstance(given, dict) or given:
            raise ConfigError(f"model.{legacy[0]}: a key of the old flat model section beside a model.{section} "
                              f"section; write it as model.{LEGACY_MODEL_KEYS.get(legacy[0], ('process', 'kind'))[0]}."
                              f"{LEGACY_MODEL_KEYS.get(legacy[0], ('process', 'kind'))[1]}")
        nested[section] = {}
    for key in legacy:
        section, name = LEGACY_MODEL_KEYS.get(key, ("process", "kind"))
        nested[section][name] = model[key]
    return nested


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, but a key given twice in one mapping is an error (not: the last one wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def _read_mapping(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            mapping = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"{path}: not valid YAML ({detail})") from None
    if mapping is None:  # an empty file, or only comments: surely not meant as "all defaults"
        raise ConfigError(f"{path}: is empty, expected a mapping with data, model and train sections")
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(mapping).__name__}")
    return mapping


def _with_base(path: str, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The mapping of ``path`` over the one its ``base:`` key names (relative to ``path``'s folder),
    recursively: a section given here replaces the base's section whole; the others come from the base."""
    mapping = dict(_read_mapping(path))
    base = mapping.pop("base", None)
    if base is None:
        return mapping
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base={base!r}, expected the path of another config file")
    base_path = os.path.join(os.path.dirname(path), base)
    if os.path.realpath(base_path) in seen | {os.path.realpath(path)}:
        raise ConfigError(f"{path}: base={base!r} leads back to itself")
    return {**_with_base(base_path, seen | {os.path.realpath(path)}), **mapping}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one experiment YAML file (and the files its ``base:`` keys name).

    Args:
        path: the YAML file.

    Returns:
        The frozen :class:`Config`.

    Raises:
        ConfigError: the file is missing, empty, not YAML, or fails validation; the message names
            the file, the key, the value and what was expected.
    """
    path = os.fspath(path)
    return parse_config(_with_base(path), path)


def override(config: Config, section: str, **values: Any) -> Config:
    """A copy of ``config`` with some keys of one section (or dotted sub-section, ``model.process``) replaced.

    Values are checked exactly as if they had been in the YAML file.

    Raises:
        ConfigError: an unknown section or key, or a bad value (named as ``section.key``).
    """
    names = section.split(".")
    parts: list[Any] = [config]
    for name in names:
        parent = parts[-1]
        if not dataclasses.is_dataclass(parent) or name not in {f.name for f in dataclasses.fields(parent)}:
            raise ConfigError(f"unknown config section {section!r}")
        parts.append(getattr(parent, name))
    if not dataclasses.is_dataclass(parts[-1]) or isinstance(parts[-1], type):
        raise ConfigError(f"unknown config section {section!r}")
    current = dataclasses.asdict(parts[-1])
    current.update(values)
    try:
        updated = _coerce(type(parts[-1]), current, section)
    except ConfigError as err:
        raise ConfigError(f"command line: {err}") from None
    for parent, name in zip(reversed(parts[:-1]), reversed(names)):
        updated = dataclasses.replace(parent, **{name: updated})
    return updated  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_data_section(mapping: Any, source: str) -> DataConfig:
    """The ``data`` section stored in a slice table, read leniently: unknown top-level keys of the
    section are ignored (its values are still checked), so tables outlive renamed config keys.

    Raises:
        ConfigError: with ``source`` at the start of the one-line message.
    """
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping (the data section), got {type(mapping).__name__}")
    try:
        return _build(DataConfig, mapping, "data.", lenient=True)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def data_to_yaml(data: DataConfig) -> str:
    """The ``data`` section as YAML text; :func:`parse_data_section` of it gives ``data`` back."""
    return yaml.safe_dump(_plain(dataclasses.asdict(data)), sort_keys=False)


def config_to_yaml(config: Config) -> str:
    """The fully resolved config as YAML text; :func:`parse_config` of it gives ``config`` back."""
    return yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False)
