"""The settings' sections: frozen dataclasses that validate themselves on creation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

from alm_spark.config import values
from alm_spark.config.values import Validator
from alm_spark.errors import ConfigError
from alm_spark.names import (
    ANY_SCHEME,
    AUDIO_CODECS,
    AUDIO_FORMATS,
    AUDIO_SCHEMES,
    ENGINES,
    LOST_WINDOW_MODES,
)
from alm_spark.storage.datafiles import same_store, scheme_of


def bundled_sample_path() -> str:
    """Path of the small sample manifest shipped inside the package."""
    return str(resources.files("alm_spark").joinpath("data", "sample_manifest.jsonl"))


_OUTPUT_SETTINGS: dict[str, Validator] = {
    "path": values.text,
    "mode": values.choice("overwrite", "error", "update"),
    "step_files": values.integer(1, 10_000_000),
    "step_gb": values.number(positive=True),
    "format": values.choice("jsonl", "parquet"),
    "compression": values.choice("none", "gzip", "zstd", "snappy", optional=True),
    "lost_window_details": values.choice(*LOST_WINDOW_MODES),
    "progress": values.choice("auto", "on", "off"),
    "windows_table": values.boolean,
}
_BUILDER_SETTINGS: dict[str, Validator] = {
    "target_window_duration": values.number(positive=True),
    "tolerance": values.number(non_negative=True),
    "min_bandwidth": values.number(),
    "min_sample_rate": values.number(),
    "min_speakers": values.integer(low=0),
    "max_speakers": values.integer(low=0),
    "truncation": values.boolean,
    "drop_fields": values.names,
    "drop_fields_top_level": values.names,
}
_OVERLAP_SETTINGS: dict[str, Validator] = {
    "overlap_percentage": values.integer(0, 100),
    "target_duration": values.number(positive=True),
}
_SPARK_SETTINGS: dict[str, Validator] = {
    "master": values.master,
    "app_name": values.text,
    "conf": values.spark_conf,
    "engine": values.choice(*ENGINES),
    "log_level": values.log_level,
    "remote": values.remote,
}

_AUDIO_SETTINGS: dict[str, Validator] = {
    "enabled": values.boolean,
    "root": values.optional_text,
    "allow_outside_root": values.boolean,
    "allowed_schemes": values.schemes,
    "storage_options": values.storage_options,
    "path_field": values.text,
    "sample_rate": values.integer(1000, 384000),
    "channels": values.integer(1, 2),
    "codec": values.choice(*AUDIO_CODECS),
    "format": values.choice(*AUDIO_FORMATS),
    "shard_max_clips": values.integer(1, 1_000_000),
    "shard_max_mb": values.number(positive=True),
    "equal_shards": values.boolean,
    "shuffle": values.boolean,
    "seed": values.integer(0, values.MAX_INTEGER),
    "world_size": values.integer(1, 1_000_000),
    "partitions": values.optional_integer(1, 100_000),
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
        identity: How ``output.mode: update`` knows an input file is unchanged:
            ``version`` (its size and the store's version: ETag, generation, else the
            modification time) or ``checksum`` (its size and the SHA-256 of its bytes,
            computed on the executors every run: for stores whose times are not trusted).
    """

    manifest_path: tuple[str, ...] = ()
    identity: str = "version"

    def __post_init__(self) -> None:
        _validate(
            self,
            "input",
            {"manifest_path": values.paths, "identity": values.choice("version", "checksum")},
        )

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
            ``path`` exists; ``update`` brings an earlier output up to date with the
            input (new and changed files processed, committed ones skipped) and
            finishes an interrupted run.
        step_files: A run commits after at most this many input files ...
        step_gb: ... or about this many gigabytes of them (a file is never split), so a
            failure loses at most the step in flight.
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
    step_files: int = 1000
    step_gb: float = 50.0
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
            to the folder of the manifest file the entry came from. When set, a path
            resolving outside it (``..``, an absolute path, another store) is not read:
            its windows are rejected with reason ``outside_root``.
        allow_outside_root: Read paths outside ``root`` all the same.
        allowed_schemes: The URL schemes a manifest's paths may have, with or without
            ``root`` (``file``: local paths; ``*``: any, unsafe with an outside party's
            manifests); others are rejected with reason ``scheme_not_allowed``.
        storage_options: fsspec options for reading recordings, by URL scheme
            (``{s3: {endpoint_url: ..., profile: ...}, gs: {project: ...}}``; ``block_size``:
            bytes per ranged read, 2 MiB unless given). No credentials: they come from the
            environment, a profile or the cluster's role. Never recorded in ``_metrics.json``.
        path_field: The manifest field holding the recording's path.
        sample_rate: The clips' sample rate (soxr resamples when the source differs).
        channels: 1 (the mean of the source's channels) or 2 (a mono source doubled).
        codec: ``flac`` or ``wav``, 16-bit.
        format: ``webdataset``: tar shards of ``<key>.<codec>`` and ``<key>.json``;
            ``nemo``: NeMo's tarred layout, ``audio_N.tar`` with
            ``sharded_manifests/manifest_N.json``; ``shar``: Lhotse Shar,
            ``recording.NNNNNN.tar`` (audio and recording JSON) beside
            ``cuts.NNNNNN.jsonl.gz`` (a cut per clip, a supervision per segment).
        shard_max_clips: A shard is closed after this many clips.
        shard_max_mb: ... or once it holds this many megabytes (10^6 bytes).
        equal_shards: Repack so that every shard holds the same number of clips and
            their count is a multiple of ``world_size``; the few clips left over are
            recorded in ``_rejected_audio/`` (reason ``equal_shards``).
        shuffle: Lay clips out in a seeded random order over each commit step, so a
            shard mixes many recordings; the same seed and input give the same shards.
            False: in the order they were cut (a few recordings per shard).
        seed: The shuffle's seed.
        world_size: With ``equal_shards``, the training job's ranks (GPUs).
        partitions: Tasks of the audio step; None: the entries' count spread over the
            cluster's cores (at most one entry's windows per task in small runs).
    """

    enabled: bool = False
    root: str | None = None
    allow_outside_root: bool = False
    allowed_schemes: tuple[str, ...] = AUDIO_SCHEMES
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path_field: str = "audio_filepath"
    sample_rate: int = 16000
    channels: int = 1
    codec: str = "flac"
    format: str = "webdataset"
    shard_max_clips: int = 1000
    shard_max_mb: float = 512.0
    equal_shards: bool = False
    shuffle: bool = True
    seed: int = 0
    world_size: int = 1
    partitions: int | None = None

    def __post_init__(self) -> None:
        _validate(self, "audio", _AUDIO_SETTINGS)
        object.__setattr__(  # Hadoop's s3a/s3n name the s3 store
            self, "allowed_schemes", tuple(dict.fromkeys(map(same_store, self.allowed_schemes)))
        )
        scheme = scheme_of(self.root) if self.root is not None else None
        if scheme and ANY_SCHEME not in self.allowed_schemes and scheme not in self.allowed_schemes:
            raise ConfigError(
                f"audio.root: its scheme {scheme} is not in audio.allowed_schemes "
                f"({', '.join(self.allowed_schemes)})"
            )
        if self.world_size != 1 and not self.equal_shards:
            raise ConfigError(
                f"audio.world_size: {self.world_size} needs audio.equal_shards: true "
                "(the shard count is made a multiple of it only when shards are equalized)"
            )

    @property
    def repacked(self) -> bool:
        """Whether clips go through a second pass that lays out the published shards."""
        return self.format in ("nemo", "shar") or self.equal_shards or self.shuffle


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
        """Plain-data form (lists, dicts, scalars), e.g. for ``_metrics.json``.

        Without ``audio.storage_options``: endpoints and profiles stay out of outputs.
        """
        out: dict[str, Any] = {}
        for section in fields(self):
            values = getattr(self, section.name)
            out[section.name] = {
                f.name: _plain(getattr(values, f.name))
                for f in fields(values)
                if (section.name, f.name) not in _UNRECORDED
            }
        return out


#: Settings ``to_dict`` leaves out.
_UNRECORDED = {("audio", "storage_options")}


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
        raise ConfigError(f"config: expected a mapping of sections, got {values.describe(raw)}")
    sections: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SECTIONS)})")
        cls = _SECTIONS[section]
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(
                f"{section}: expected a mapping of settings, got {values.describe(body)}"
            )
        known = [item.name for item in fields(cls)]
        for key in body:
            if key not in known:
                raise ConfigError(f"{section}.{key}: unknown setting (known: {', '.join(known)})")
        sections[section] = cls(**body)
    return PipelineConfig(**sections)
