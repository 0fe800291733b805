"""Every kind of row the job stages or writes, defined once.

A :class:`RowKind` is a name (the staged ``kind`` column's value) and, for rows read
back as columns, its fields. From the fields derive the row's plain-dict form
(:meth:`RowKind.record`, what tasks serialize as JSON), its Spark schema
(:meth:`RowKind.spark_schema`) and its Arrow schema (:meth:`RowKind.arrow_schema`),
so the three cannot drift apart. pyspark is imported only when a Spark schema is asked
for: the algorithm and the audio cutting use this module without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alm_spark.names import AUDIO_COUNTS, AUDIO_SECONDS, METRIC_COUNTS, METRIC_DURATIONS

#: Scalar column types.
STRING, LONG, DOUBLE = "string", "long", "double"


@dataclass(frozen=True)
class ArrayOf:
    """A list column whose items are ``item`` (never null unless ``items_nullable``)."""

    item: Any
    items_nullable: bool = False


@dataclass(frozen=True)
class MapOf:
    """A map column from ``key`` to ``value`` (values never null)."""

    key: Any
    value: Any


@dataclass(frozen=True)
class Field:
    """One column: its name, type and whether it may be null.

    The type is a scalar name, an :class:`ArrayOf`, a :class:`MapOf`, or a tuple of
    fields for a struct.
    """

    name: str
    type: Any
    nullable: bool = True


@dataclass(frozen=True)
class RowKind:
    """A kind of row: its name and, when it is read back as columns, its fields."""

    kind: str
    fields: tuple[Field, ...] = ()

    @property
    def names(self) -> list[str]:
        """The field names, in order."""
        return [item.name for item in self.fields]

    def extended(self, *more: Field) -> RowKind:
        """The same kind with more fields after these."""
        return RowKind(self.kind, (*self.fields, *more))

    def record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The row as a plain dict, fields in order; every field must be given.

        Raises:
            ValueError: When a field is missing or an unknown one is given.
        """
        if values.keys() != set(self.names):
            missing = sorted(set(self.names) - values.keys())
            extra = sorted(values.keys() - set(self.names))
            raise ValueError(f"{self.kind} row: missing {missing}, unknown {extra}")
        return {name: values[name] for name in self.names}

    def spark_schema(self) -> Any:
        """The fields as a Spark ``StructType``."""
        return _spark_struct(self.fields)

    def arrow_schema(self) -> Any:
        """The fields as a pyarrow schema."""
        import pyarrow as pa

        return pa.schema([_arrow_field(item) for item in self.fields])


def _spark_type(kind: Any) -> Any:
    from pyspark.sql import types as T

    if isinstance(kind, tuple):
        return _spark_struct(kind)
    if isinstance(kind, ArrayOf):
        return T.ArrayType(_spark_type(kind.item), kind.items_nullable)
    if isinstance(kind, MapOf):
        return T.MapType(_spark_type(kind.key), _spark_type(kind.value), False)
    return {STRING: T.StringType(), LONG: T.LongType(), DOUBLE: T.DoubleType()}[kind]


def _spark_struct(fields: tuple[Field, ...]) -> Any:
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(item.name, _spark_type(item.type), item.nullable) for item in fields]
    )


def _arrow_type(kind: Any) -> Any:
    import pyarrow as pa

    if isinstance(kind, tuple):
        return pa.struct([_arrow_field(item) for item in kind])
    if isinstance(kind, ArrayOf):
        return pa.list_(pa.field("element", _arrow_type(kind.item), kind.items_nullable))
    if isinstance(kind, MapOf):
        return pa.map_(_arrow_type(kind.key), pa.field("value", _arrow_type(kind.value), False))
    return {STRING: pa.string(), LONG: pa.int64(), DOUBLE: pa.float64()}[kind]


def _arrow_field(item: Field) -> Any:
    import pyarrow as pa

    return pa.field(item.name, _arrow_type(item.type), nullable=item.nullable)


# --- what the engines emit ----------------------------------------------------------

#: One physical input line: its file, the byte offset of the split that read it, its text.
MANIFEST_LINE = RowKind(
    "line",
    (Field("source", STRING, False), Field("block_start", LONG, False), Field("value", STRING)),
)

KIND_ENTRY = "entry"  # an output line
KIND_REJECTED = "rejected"  # a staged rejected-line record (JSON)
KIND_BLOCK = "block"  # how many lines one input split held (JSON)
KIND_LOST = "lost"  # an entry's lost_win_full_data, with lost_window_details=separate
KIND_REPORT = "report"  # a task's summed report figures (JSON)
KIND_WINDOW = "window"  # one windows-table row (JSON)
KIND_DATA_FILE = "data_file"  # a data file a task attempt wrote into the output (JSON)

#: Figures beside each engine row: entry rows fill the entry figures, block rows
#: ``lines``/``blank_lines``, rejected rows ``internal_errors``.
RESULT_COUNT_COLUMNS = ("lines", "blank_lines", "internal_errors", *METRIC_COUNTS)
RESULT_DURATION_COLUMNS = METRIC_DURATIONS

#: What an engine's ``mapInArrow`` returns: a kind, its record (JSON or an output line)
#: and the figures.
RESULT = RowKind(
    "result",
    (
        Field("kind", STRING, False),
        Field("record", STRING, False),
        *(Field(name, LONG) for name in RESULT_COUNT_COLUMNS),
        *(Field(name, DOUBLE) for name in RESULT_DURATION_COLUMNS),
    ),
)

#: A staged rejected line: where it was (split and row, or line number) and why.
STAGED_REJECTED = RowKind(
    KIND_REJECTED,
    (
        Field("source", STRING),
        Field("block_start", LONG),
        Field("row", LONG),
        Field("line", LONG),
        Field("error", STRING),
        Field("raw", STRING),
    ),
)

#: How many physical lines one split of a file held.
STAGED_BLOCK = RowKind(
    KIND_BLOCK, (Field("source", STRING), Field("block_start", LONG), Field("lines", LONG))
)

#: A task's report figure: a metric, a key (a bin, a sample rate, a reason) and sums.
STAGED_REPORT = RowKind(
    KIND_REPORT,
    (Field("metric", STRING), Field("key", STRING), *(Field(f"v{i}", DOUBLE) for i in range(5))),
)

#: A data file a task attempt wrote: its path inside the output, what it holds
#: (``entry``, ``lost``, ``window`` or ``rejected`` rows), how many and its bytes.
DATA_FILE = RowKind(
    KIND_DATA_FILE,
    (
        Field("path", STRING, False),
        Field("holds", STRING, False),
        Field("rows", LONG, False),
        Field("bytes", LONG, False),
    ),
)

#: A line of ``_rejected/``: file, 1-based line number, reason, and the line itself.
REJECTED = RowKind(
    KIND_REJECTED,
    (Field("source", STRING), Field("line", LONG), Field("error", STRING), Field("raw", STRING)),
)

#: A segment of a window row: times, and ``speaker``/``text`` when they are text.
WINDOW_SEGMENT = (
    Field("start", DOUBLE, False),
    Field("end", DOUBLE, False),
    Field("speaker", STRING),
    Field("text", STRING),
)

#: A row of ``_windows/``: one kept window (an item of its entry's ``filtered_windows``),
#: keyed by ``source`` and ``line`` like the rest of the output. ``audio_filepath`` and
#: ``swift_audio_filepath`` are the entry's (null when missing or not text),
#: ``audio_sample_rate`` too (null unless a finite number); ``position`` is the row's
#: index in ``filtered_windows`` (a window the reference's rounded-pair matching kept
#: twice has two rows); ``window`` is its index in ``windows``; ``start``/``end`` are the
#: first segment's start and the last segment's end; ``speakers`` maps each label to its
#: summed speech and ``speaker_durations`` is the reference's top-5 list; ``segments``
#: are the window's output segments (a truncated last segment as cut) and ``text`` their
#: non-empty ``text`` values joined by spaces.
WINDOW = RowKind(
    KIND_WINDOW,
    (
        Field("source", STRING, False),
        Field("line", LONG, False),
        Field("audio_filepath", STRING),
        Field("swift_audio_filepath", STRING),
        Field("audio_sample_rate", DOUBLE),
        Field("position", LONG, False),
        Field("window", LONG, False),
        Field("start", DOUBLE, False),
        Field("end", DOUBLE, False),
        Field("duration", DOUBLE, False),
        Field("speakers", MapOf(STRING, DOUBLE), False),
        Field("speaker_durations", ArrayOf(DOUBLE), False),
        Field("segments", ArrayOf(WINDOW_SEGMENT), False),
        Field("text", STRING, False),
    ),
)

#: A window row as the audio step reads it: the table's columns and the recording's
#: path from ``audio.path_field``.
AUDIO_WINDOW = WINDOW.extended(Field("audio_path", STRING))

# --- what the audio step emits ------------------------------------------------------

KIND_SHARD = "shard"  # an audio shard a task attempt wrote (JSON)
KIND_SHARD_MANIFEST = "shard_manifest"  # a NeMo shard's manifest (a data file kind only)
KIND_AUDIO_REJECTED = "rejected_audio"  # a window whose clip could not be cut (JSON)
KIND_CLIP = "clip"  # where a clip sits in a first-pass shard, for the repack pass (JSON)
KIND_AUDIO_FIGURES = "audio_figures"  # a task's summed audio figures (JSON)
KIND_WAITING = "waiting_clips"  # equal shards' clips waiting for the next step (JSON)
KIND_SHARD_INDEX = "shard_index"  # a step's per-shard figures (a data file kind only)
KIND_VERIFIED = "verified"  # what checking one shard found (alm-spark verify)

#: What a task of the audio step returns: a kind and a JSON record.
AUDIO_RESULT = RowKind(
    "audio_result", (Field("kind", STRING, False), Field("record", STRING, False))
)

#: A task's summed audio figures.
AUDIO_FIGURES = RowKind(
    KIND_AUDIO_FIGURES,
    (
        *(Field(name, LONG) for name in AUDIO_COUNTS),
        *(Field(name, DOUBLE) for name in AUDIO_SECONDS),
    ),
)

#: A shard row: the attempt's file name, what it holds, and its NeMo manifest's name.
SHARD = RowKind(
    KIND_SHARD,
    (
        Field("name", STRING, False),
        Field("clips", LONG, False),
        Field("bytes", LONG, False),
        Field("seconds", DOUBLE, False),
        Field("recordings", LONG),
        Field("manifest", STRING),
    ),
)

#: A clip row of the first pass (repacked formats): where its audio member's bytes are
#: in a first-pass shard, its length in seconds and its JSON.
CLIP = RowKind(
    KIND_CLIP,
    (
        Field("shard", STRING, False),
        Field("index", LONG, False),
        Field("offset", LONG, False),
        Field("size", LONG, False),
        Field("seconds", DOUBLE, False),
        Field("meta", STRING, False),
    ),
)

#: Equal shards' clips a step left waiting for the next one: the tar holding their audio
#: and the file of their :data:`CLIP` rows (paths relative to the output), how many clips.
WAITING = RowKind(
    KIND_WAITING,
    (Field("name", STRING, False), Field("rows", STRING, False), Field("clips", LONG, False)),
)

#: A clip row with its key and its place in a seeded shuffle (``order``, and the
#: ``bucket`` the driver counts clips by).
ORDERED_CLIP = CLIP.extended(
    Field("key", STRING, False), Field("order", LONG, False), Field("bucket", LONG, False)
)

#: A shuffled clip row sent to a repack ``task`` that writes shards of its bucket (a
#: bucket whose clips fall in two tasks' shards goes to both; each keeps its own).
ROUTED_CLIP = ORDERED_CLIP.extended(Field("task", LONG, False))

#: A clip row with its place in the published layout (``target`` is the shard number;
#: the plan's shard count for a clip left out) and the repack ``task`` that writes it.
TARGETED_CLIP = CLIP.extended(
    Field("rank", LONG, False), Field("target", LONG, False), Field("task", LONG, False)
)

#: What ``alm-spark verify`` found in one shard: a ``problem`` line, a clip ``key`` (for the
#: uniqueness check), or the shard's ``figures`` (its clips and seconds).
VERIFIED = RowKind(
    KIND_VERIFIED,
    (
        Field("found", STRING, False),
        Field("text", STRING, False),
        Field("clips", LONG, False),
        Field("seconds", DOUBLE, False),
    ),
)
