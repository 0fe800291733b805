"""Job configuration: frozen dataclasses, YAML loading, overrides and validation.

A config has five sections: ``input``, ``output``, ``builder``, ``overlap`` and
``spark``. ``builder`` and ``overlap`` use the reference's parameter names. Every
value is checked before any Spark work; a bad one raises :class:`ConfigError`
whose message starts with the setting's name.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import yaml

from alm_spark.errors import ConfigError
from alm_spark.names import AUDIO_CODECS, AUDIO_FORMATS, ENGINES, LOST_WINDOW_MODES

Validator = Callable[[Any, str], Any]


def bundled_sample_path() -> str:
    """Path of the small sample manifest shipped inside the package."""
    return str(resources.files("alm_spark").joinpath("data", "sample_manifest.jsonl"))


# --- value validators -------------------------------------------------------------


#: Integer settings hold at most a signed 64-bit value (NumPy and the JVM compute with them).
MAX_INTEGER = 2**63 - 1


def _digits(value: int) -> int:
    """Decimal digits of an integer, without ``str()`` (which refuses 4,300+ digits)."""
    size = abs(value)
    digits = max(1, math.floor((size.bit_length() - 1) * math.log10(2)) + 1)
    return digits + 1 if size >= 10**digits else digits


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a {_digits(value)}-digit integer"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def _number(*, positive: bool = False, non_negative: bool = False) -> Validator:
    def check(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {_describe(value)}")
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(
                    f"{name}: out of range (larger than a double), got {_describe(value)}"
                ) from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise ConfigError(f"{name}: must be greater than 0, got {value!r}")
        if non_negative and value < 0:
            raise ConfigError(f"{name}: must not be negative, got {value!r}")
        return float(value) if isinstance(value, float) else value

    return check


def _integer(low: int | None = None, high: int | None = None) -> Validator:
    def check(value: Any, name: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 5e1 or 50.0: an exact whole number
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected a whole number, got {_describe(value)}")
        shown = _describe(value) if abs(value) >= 10**30 else str(value)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name}: must be {bounds}, got {shown}")
        if abs(value) > MAX_INTEGER:
            raise ConfigError(f"{name}: must be at most {MAX_INTEGER}, got {shown}")
        return value

    return check


def _optional_integer(low: int, high: int) -> Validator:
    whole = _integer(low, high)

    def check(value: Any, name: str) -> int | None:
        return None if value is None else whole(value, name)

    return check


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {_describe(value)}")
    return value


def _spelled(value: Any) -> Any:
    """A number YAML read from a text setting, as it was written (``8e3`` stays ``8e3``)."""
    return value.text if isinstance(value, SpelledFloat) else value


def _names(value: Any, name: str) -> tuple[str, ...]:
    """Comma-separated names or a list of names; items trimmed, blanks dropped."""
    value = _spelled(value)
    if value is None:
        return ()
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ConfigError(
            f"{name}: expected comma-separated names or a list, got {_describe(value)}"
        )
    out: list[str] = []
    for item in map(_spelled, items):
        if not isinstance(item, str):
            raise ConfigError(f"{name}: every name must be text, got {_describe(item)}")
        if item.strip() and item.strip() not in out:
            out.append(item.strip())
    return tuple(out)


def _paths(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in map(_spelled, items):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{name}: expected a path or a list of paths, got {_describe(item)}")
        out.append(item.strip())
    return tuple(out)


def _choice(*allowed: str, optional: bool = False) -> Validator:
    def check(value: Any, name: str) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) and "on" in allowed:
            value = "on" if value else "off"  # YAML reads a bare on/off as a boolean
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ConfigError(
                f"{name}: expected one of {', '.join(allowed)}, got {_describe(value)}"
            )
        return value.strip().lower()

    return check


def _text(value: Any, name: str) -> str:
    value = _spelled(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected non-empty text, got {_describe(value)}")
    return value.strip()


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


#: Master URLs Spark accepts (``sc://`` is Spark Connect's, not a master).
_MASTER_URL = re.compile(
    r"local(\[([1-9][0-9]*|\*)(,\s*[0-9]+)?\])?"
    r"|local-cluster\[\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*\]"
    r"|yarn|(spark|k8s|mesos)://\S+"
)


def _master(value: Any, name: str) -> str | None:
    """A Spark master URL, checked here: Spark would fail deep inside its start-up."""
    master = _optional_text(value, name)
    if master is not None and not _MASTER_URL.fullmatch(master):
        raise ConfigError(
            f"{name}: expected local, local[N], local[*], spark://HOST:PORT, yarn or "
            f"k8s://URL, got {_describe(master)}"
        )
    return master


#: Levels ``spark.log_level`` accepts (log4j's, as ``SparkContext.setLogLevel`` takes them).
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def _log_level(value: Any, name: str) -> str:
    if value is False:
        value = "OFF"  # YAML reads a bare off as a boolean
    if not isinstance(value, str) or value.strip().upper() not in LOG_LEVELS:
        raise ConfigError(
            f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {_describe(value)}"
        )
    return value.strip().upper()


def _remote(value: Any, name: str) -> str | None:
    value = _spelled(value)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().startswith("sc://"):
        raise ConfigError(
            f"{name}: expected a Spark Connect address sc://host:port, got {_describe(value)}"
        )
    return value.strip()


def _spark_conf(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping of Spark settings, got {_describe(value)}")
    out: dict[str, str] = {}
    for spelled_key, spelled_item in value.items():
        key, item = _spelled(spelled_key), _spelled(spelled_item)
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{name}: setting names must be text, got {_describe(key)}")
        if isinstance(item, bool):
            out[key] = str(item).lower()
        elif isinstance(item, (int, float, str)):
            out[key] = str(item)
        else:
            raise ConfigError(f"{name}.{key}: expected a single value, got {_describe(item)}")
    return out


_OUTPUT_SETTINGS: dict[str, Validator] = {
    "path": _text,
    "mode": _choice("overwrite", "error"),
    "format": _choice("jsonl", "parquet"),
    "compression": _choice("none", "gzip", "zstd", "snappy", optional=True),
    "lost_window_details": _choice(*LOST_WINDOW_MODES),
    "progress": _choice("auto", "on", "off"),
    "windows_table": _boolean,
}
_BUILDER_SETTINGS: dict[str, Validator] = {
    "target_window_duration": _number(positive=True),
    "tolerance": _number(non_negative=True),
    "min_bandwidth": _number(),
    "min_sample_rate": _number(),
    "min_speakers": _integer(low=0),
    "max_speakers": _integer(low=0),
    "truncation": _boolean,
    "drop_fields": _names,
    "drop_fields_top_level": _names,
}
_OVERLAP_SETTINGS: dict[str, Validator] = {
    "overlap_percentage": _integer(0, 100),
    "target_duration": _number(positive=True),
}
_SPARK_SETTINGS: dict[str, Validator] = {
    "master": _master,
    "app_name": _text,
    "conf": _spark_conf,
    "engine": _choice(*ENGINES),
    "log_level": _log_level,
    "remote": _remote,
}

_AUDIO_SETTINGS: dict[str, Validator] = {
    "enabled": _boolean,
    "root": _optional_text,
    "path_field": _text,
    "sample_rate": _integer(1000, 384000),
    "channels": _integer(1, 2),
    "codec": _choice(*AUDIO_CODECS),
    "format": _choice(*AUDIO_FORMATS),
    "shard_max_clips": _integer(1, 1_000_000),
    "shard_max_mb": _number(positive=True),
    "equal_shards": _boolean,
    "world_size": _integer(1, 1_000_000),
    "partitions": _optional_integer(1, 100_000),
}


def _validate(config: Any, section: str, validators: Mapping[str, Validator]) -> None:
    """Check and normalize every field of a frozen section (``__post_init__``)."""
    for item in fields(config):
        value = validators[item.name](getattr(config, item.name), f"{section}.{item.name}")
        object.__setattr__(config, item.name, value)


@dataclass(frozen=True)
class InputConfig:
    """Where the manifests are.

    Attributes:
        manifest_path: Files, directories (searched recursively for ``.jsonl``/``.json``
            and their ``.gz`` forms), globs or URIs. Empty means the bundled sample.
    """

    manifest_path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self, "input", {"manifest_path": _paths})

    @property
    def paths(self) -> tuple[str, ...]:
        """The manifest paths, with the bundled sample standing in for none."""
        return self.manifest_path or (bundled_sample_path(),)


@dataclass(frozen=True)
class OutputConfig:
    """Where the output goes and how it is written.

    Attributes:
        path: Output directory (local path or URI).
        mode: ``overwrite`` replaces an earlier output; ``error`` refuses to run when
            ``path`` exists.
        format: ``jsonl`` (the reference's format) or ``parquet``.
        compression: ``none``, ``gzip``, ``zstd`` (and ``snappy`` for parquet); None
            means the format's usual default (jsonl: none, parquet: snappy).
        lost_window_details: Where ``stats.lost_win_full_data`` goes: ``inline`` (the
            reference's format), ``separate`` (``_lost_windows/``) or ``drop``.
        progress: ``auto`` (on for local runs, off under spark-submit), ``on``, ``off``.
        windows_table: Also write ``_windows/``: one Parquet row per kept window.
    """

    path: str = "./alm_output"
    mode: str = "overwrite"
    format: str = "jsonl"
    compression: str | None = None
    lost_window_details: str = "inline"
    progress: str = "auto"
    windows_table: bool = False

    def __post_init__(self) -> None:
        _validate(self, "output", _OUTPUT_SETTINGS)
        if self.compression == "snappy" and self.format == "jsonl":
            raise ConfigError("output.compression: snappy is for parquet; use none, gzip or zstd")

    @property
    def codec(self) -> str:
        """The compression codec Spark is given."""
        if self.compression is not None:
            return self.compression
        return "snappy" if self.format == "parquet" else "none"


@dataclass(frozen=True)
class BuilderConfig:
    """ALMDataBuilderStage parameters (spec §1); defaults are the reference's."""

    target_window_duration: float = 120.0
    tolerance: float = 0.1
    min_bandwidth: float = 8000
    min_sample_rate: float = 16000
    min_speakers: int = 2
    max_speakers: int = 5
    truncation: bool = True
    drop_fields: tuple[str, ...] = ("words",)
    drop_fields_top_level: tuple[str, ...] = ("words", "segments")

    def __post_init__(self) -> None:
        _validate(self, "builder", _BUILDER_SETTINGS)
        if self.min_speakers > self.max_speakers:
            raise ConfigError(
                f"builder.min_speakers: {self.min_speakers} is greater than "
                f"builder.max_speakers ({self.max_speakers})"
            )
        bad = [name for name in ("start", "end") if name in self.drop_fields]
        if bad:
            raise ConfigError(
                f"builder.drop_fields: cannot drop {' or '.join(bad)}; "
                "windows are measured with them"
            )

    @property
    def min_duration(self) -> float:
        """``T - T*tolerance``, computed as the reference does."""
        return self.target_window_duration - self.target_window_duration * self.tolerance

    @property
    def max_duration(self) -> float:
        """``T + T*tolerance``, computed as the reference does."""
        return self.target_window_duration + self.target_window_duration * self.tolerance


@dataclass(frozen=True)
class OverlapConfig:
    """ALMDataOverlapStage parameters (spec §2); the shipped default percentage is 50."""

    overlap_percentage: int = 50
    target_duration: float = 120.0

    def __post_init__(self) -> None:
        _validate(self, "overlap", _OVERLAP_SETTINGS)

    @property
    def threshold(self) -> float:
        """``overlap_percentage / 100``."""
        return self.overlap_percentage / 100


@dataclass(frozen=True)
class SparkConfig:
    """How the SparkSession is built.

    Attributes:
        master: Spark master URL; None leaves it to spark-submit (or ``local[*]``).
        app_name: Application name shown in the Spark UI.
        conf: Extra Spark settings, applied when the session is built.
        engine: ``fused`` (one ``mapInArrow`` pass, the default) or ``dataframe``
            (the DataFrame API: explode, grouped pandas UDFs, a join).
        log_level: Spark's console log level (``WARN``: warnings and errors only).
        remote: Spark Connect address (``sc://host:port``); the job then runs on that
            server. Exclusive with ``master``.
    """

    master: str | None = None
    app_name: str = "alm_spark"
    conf: Mapping[str, str] = field(default_factory=dict)
    engine: str = "fused"
    log_level: str = "WARN"
    remote: str | None = None

    def __post_init__(self) -> None:
        _validate(self, "spark", _SPARK_SETTINGS)
        if self.master and self.remote:
            raise ConfigError(
                f"spark.remote: cannot be used with spark.master ({self.master}); a run goes "
                "to a master or to a Spark Connect server, not both"
            )


@dataclass(frozen=True)
class AudioConfig:
    """Cutting every kept window out of its recording into audio shards.

    Attributes:
        enabled: Also write ``_shards/`` (the clips) and ``_rejected_audio/``.
        root: Where relative audio paths resolve (local path or URI); None: relative
            to the folder of the manifest file the entry came from.
        path_field: The manifest field holding the recording's path.
        sample_rate: The clips' sample rate (soxr resamples when the source differs).
        channels: 1 (the mean of the source's channels) or 2 (a mono source doubled).
        codec: ``flac`` or ``wav``, 16-bit.
        format: ``webdataset``: tar shards of ``<key>.<codec>`` and ``<key>.json``;
            ``nemo``: NeMo's tarred layout, ``audio_N.tar`` with
            ``sharded_manifests/manifest_N.json``.
        shard_max_clips: A shard is closed after this many clips.
        shard_max_mb: ... or once it holds this many megabytes (10^6 bytes).
        equal_shards: Repack so that every shard holds the same number of clips and
            their count is a multiple of ``world_size``; the few clips left over are
            recorded in ``_rejected_audio/`` (reason ``equal_shards``).
        world_size: With ``equal_shards``, the training job's ranks (GPUs).
        partitions: Tasks of the audio step; None: the entries' count spread over the
            cluster's cores (at most one entry's windows per task in small runs).
    """

    enabled: bool = False
    root: str | None = None
    path_field: str = "audio_filepath"
    sample_rate: int = 16000
    channels: int = 1
    codec: str = "flac"
    format: str = "webdataset"
    shard_max_clips: int = 1000
    shard_max_mb: float = 512.0
    equal_shards: bool = False
    world_size: int = 1
    partitions: int | None = None

    def __post_init__(self) -> None:
        _validate(self, "audio", _AUDIO_SETTINGS)
        if self.world_size != 1 and not self.equal_shards:
            raise ConfigError(
                f"audio.world_size: {self.world_size} needs audio.equal_shards: true "
                "(the shard count is made a multiple of it only when shards are equalized)"
            )

    @property
    def repacked(self) -> bool:
        """Whether clips go through a second pass that lays out the published shards."""
        return self.format == "nemo" or self.equal_shards


@dataclass(frozen=True)
class PipelineConfig:
    """The whole job configuration."""

    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    builder: BuilderConfig = field(default_factory=BuilderConfig)
    overlap: OverlapConfig = field(default_factory=OverlapConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists, dicts, scalars), e.g. for ``_metrics.json``."""
        out: dict[str, Any] = {}
        for section in fields(self):
            values = getattr(self, section.name)
            out[section.name] = {f.name: _plain(getattr(values, f.name)) for f in fields(values)}
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


_SECTIONS: dict[str, type[Any]] = {
    "input": InputConfig,
    "output": OutputConfig,
    "builder": BuilderConfig,
    "overlap": OverlapConfig,
    "spark": SparkConfig,
    "audio": AudioConfig,
}


def build_config(raw: Mapping[str, Any] | None) -> PipelineConfig:
    """Validate plain data (as loaded from YAML) into a :class:`PipelineConfig`.

    Args:
        raw: ``{section: {key: value}}``; missing sections and keys take defaults.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Naming the first bad setting.
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {_describe(raw)}")
    sections: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SECTIONS)})")
        cls = _SECTIONS[section]
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(f"{section}: expected a mapping of settings, got {_describe(body)}")
        known = [item.name for item in fields(cls)]
        for key in body:
            if key not in known:
                raise ConfigError(f"{section}.{key}: unknown setting (known: {', '.join(known)})")
        sections[section] = cls(**body)
    return PipelineConfig(**sections)


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
    }
)


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping (YAML would silently keep the last one)."""

    def __init__(self, name: str, first_line: int, line: int) -> None:
        """Name the setting (``builder.truncation``) and the two lines holding it."""
        super().__init__(f"{name} is given twice (lines {first_line} and {line})")
        self.name = name
        self.lines = (first_line, line)


class SpelledFloat(float):
    """A number written with an exponent but no dot (``8e3``), with its spelling."""

    text: str


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
