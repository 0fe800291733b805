"""Settings from YAML files and ``section.key=value`` overrides, validated into a config."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import yaml

from alm_spark.config.sections import AudioConfig, PipelineConfig, build_config
from alm_spark.config.values import SpelledFloat
from alm_spark.errors import ConfigError

#: Settings whose override values are taken literally (paths may hold "#", "*", ":"),
#: unless written as a YAML list ``[a, b]``.
_TEXT_SETTINGS = frozenset(
    {
        ("input", "manifest_path"),
        ("output", "path"),
        ("spark", "master"),
        ("spark", "remote"),
        ("spark", "app_name"),
        ("builder", "drop_fields"),
        ("builder", "drop_fields_top_level"),
        ("audio", "root"),
        ("audio", "path_field"),
        ("audio", "allowed_schemes"),
    }
)


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping (YAML would silently keep the last one)."""

    def __init__(self, name: str, first_line: int, line: int) -> None:
        """Name the setting (``builder.truncation``) and the two lines holding it."""
        super().__init__(f"{name} is given twice (lines {first_line} and {line})")
        self.name = name
        self.lines = (first_line, line)


#: ``8e3``, ``1e308``, ``1.5e3``: YAML 1.1 wants a dot and a signed exponent and reads
#: these as text; a user means a number (YAML 1.2 agrees).
_EXPONENT_NUMBER = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
_EXPONENT_TAG = "tag:alm_spark,2026:exponent-number"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, but refusing a key given twice; ``8e3`` is a number."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(node, (), set())
        return super().construct_document(node)


def _construct_exponent_number(loader: yaml.SafeLoader, node: yaml.Node) -> SpelledFloat:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    number = SpelledFloat(text)
    number.text = text
    return number


_StrictLoader.add_implicit_resolver(_EXPONENT_TAG, _EXPONENT_NUMBER, list("-+0123456789."))
_StrictLoader.add_constructor(_EXPONENT_TAG, _construct_exponent_number)


def _refuse_duplicate_keys(node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node already checked (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, seen)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            child = path
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                child = (*path, str(key_node.value))
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in lines:
                    raise DuplicateKeyError(".".join(child), lines[key], line)
                lines[key] = line
            _refuse_duplicate_keys(value_node, child, seen)


def parse_yaml(text: str) -> Any:
    """Parse YAML as ``yaml.safe_load`` does, refusing duplicate keys.

    Raises:
        yaml.YAMLError: Invalid YAML, or :class:`DuplicateKeyError`.
    """
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe


def _override_value(path: list[str], value: str) -> Any:
    text = value.strip()
    literal = tuple(path[:2]) in _TEXT_SETTINGS or path[:2] == ["spark", "conf"]
    if literal and not (text.startswith("[") and path[1] != "conf"):
        return None if text in ("", "null", "~") else text
    return parse_yaml(value) if text else None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into its key path and value.

    Values are parsed as YAML, except text settings (paths, names), which are taken
    literally unless written as a list. ``spark.conf.<name>=value`` addresses one
    Spark setting, dots and all.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"{text}: overrides look like section.key=value")
    section, _, rest = key.partition(".")
    if section == "spark" and rest.startswith("conf."):
        path = [section, "conf", rest[len("conf.") :]]
    else:
        path = [section, rest]
    if not all(path):
        raise ConfigError(f"{text}: overrides look like section.key=value")
    try:
        parsed = _override_value(path, value)
    except DuplicateKeyError as err:
        raise ConfigError(f"{key}: {err.name} is given twice in the value; keep one") from None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{key}: cannot parse value {value!r} ({err.__class__.__name__})"
        ) from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{key}: cannot parse the value ({str(err).split(';')[0]})") from None
    return path, parsed


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``section.key=value`` overrides applied."""
    merged: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for depth, part in enumerate(path[:-1], start=1):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:depth])}: expected a mapping to override into")
            node = child
        node[path[-1]] = value
    return merged


def read_yaml(path: str) -> dict[str, Any]:
    """Read a YAML config from a local path or any URI fsspec can open."""
    import fsspec

    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except (OSError, ImportError, ValueError) as err:
        raise ConfigError(f"--config: cannot read {path}: {err}") from None
    try:
        data = parse_yaml(text)
    except DuplicateKeyError as err:
        first, second = err.lines
        raise ConfigError(
            f"{err.name}: given twice in {path} (lines {first} and {second}); keep one"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config: {path} is not valid YAML: {err}".replace("\n", " ")) from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(
            f"--config: {path}: cannot read a value ({str(err).split(';')[0]})"
        ) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of sections")
    return data or {}


def load_config(path: str | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Load a YAML config (optional), apply overrides and validate.

    Args:
        path: Config file; None uses only defaults and overrides.
        overrides: ``section.key=value`` strings, values parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Naming the first bad setting.
    """
    raw = read_yaml(path) if path else {}
    return build_config(apply_overrides(raw, overrides))


def recut_config(
    finished: Mapping[str, Any] | None,
    path: str | None = None,
    overrides: Sequence[str] = (),
) -> PipelineConfig:
    """The settings of a re-cut: the finished run's ``audio`` section, then YAML, overrides.

    Args:
        finished: The finished output's recorded settings (``config`` of its
            ``_metrics.json``); its ``audio`` keys this version knows are the base, so
            ``audio.root``, the rate and the codec carry over unless given again.
        path: Config file; its sections apply over that base.
        overrides: ``section.key=value`` strings, applied last.

    Returns:
        The validated configuration, ``audio.enabled`` on.

    Raises:
        ConfigError: Naming the first bad setting.
    """
    raw = read_yaml(path) if path else {}
    known = {f.name for f in fields(AudioConfig)}
    recorded = (finished or {}).get("audio") or {}
    base = (
        {k: v for k, v in recorded.items() if k in known} if isinstance(recorded, Mapping) else {}
    )
    given = raw.get("audio") or {}
    if not isinstance(given, Mapping):
        return build_config(raw)  # refused, naming the section
    merged = {**raw, "audio": {**base, **given}}
    return build_config(apply_overrides(merged, [*overrides, "audio.enabled=true"]))
