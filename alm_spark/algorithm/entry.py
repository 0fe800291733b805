"""Parse and validate one manifest line (ALM_SPEC §4).

A line is accepted only when every field the algorithm reads has the right shape,
in every segment and every word, whether or not the window loop would reach it.
Anything else raises :class:`RejectedLine` with a reason that names the JSON path.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

from alm_spark.algorithm.segments import SegmentColumns, SegmentTable

_MISSING = object()


class RejectedLine(ValueError):
    """A manifest line that cannot be processed; ``str(err)`` is the reason."""


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)

#: The deepest nesting a line may hold, counting the line's object as level 1: Python's
#: json (the reference's reader) stops near 1,000 levels, depending on its stack.
MAX_NESTING = 1000
# The C decoder and encoder take one interpreter recursion level per nesting level; a
# few more go to their own frames. The fast path allows a little less than MAX_NESTING,
# so that only lines close to the limit take the slow path, which measures exactly.
_OWN_FRAMES = 10
_FAST_PATH_LEVELS = MAX_NESTING - 100
_ROOMY_LEVELS = MAX_NESTING + 200


def _stack_depth() -> int:
    depth = 0
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextmanager
def nesting_room(levels: int = _ROOMY_LEVELS) -> Iterator[None]:
    """Let JSON decoding and encoding nest ``levels`` deep, whatever the stack holds.

    The interpreter's recursion limit counts the frames already on the stack (a Spark
    worker's are many), so it is set relative to the current depth, then restored.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + levels + _OWN_FRAMES)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def nesting_depth(value: Any) -> int:
    """Levels of arrays and objects in a decoded value (0 for a scalar); no recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            deepest = max(deepest, level)
            children = item.values() if kind is dict else item
            stack.extend((child, level + 1) for child in children if type(child) in _CONTAINERS)
    return deepest


_CONTAINERS = frozenset({dict, list})


def _decode(text: str) -> Any:
    """Decode JSON nested up to :data:`MAX_NESTING` levels; refuse deeper values."""
    try:
        with nesting_room(_FAST_PATH_LEVELS):
            return _DECODER.decode(text)
    except RecursionError:
        pass
    try:  # close to the limit or beyond: decode with room to spare, then measure
        with nesting_room(_ROOMY_LEVELS):
            value = _DECODER.decode(text)
    except RecursionError:
        value = None
    if value is None or nesting_depth(value) > MAX_NESTING:
        raise RejectedLine(f"invalid JSON: nested deeper than {MAX_NESTING} levels")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_number(value: Any) -> bool:
    # type() rather than isinstance(): JSON true/false decode to bool, a subclass of int.
    kind = type(value)
    return kind is float or kind is int


@dataclass
class ParsedEntry:
    """A validated entry: the decoded object and its segments as columns."""

    data: dict[str, Any]
    table: SegmentTable


def decode_line(text: str) -> dict[str, Any]:
    """Decode one line into a JSON object, or raise :class:`RejectedLine`.

    The line is stripped first (as the reference's reader does). ``NaN`` and
    ``Infinity`` tokens are refused; a duplicated key keeps its last value; values
    nested deeper than :data:`MAX_NESTING` levels are refused.
    """
    try:
        value = _decode(text.strip())
    except RejectedLine:
        raise
    except ValueError as err:
        raise RejectedLine(f"invalid JSON: {err}") from None
    if type(value) is not dict:
        raise RejectedLine(f"not a JSON object (got {_type_name(value)})")
    return value


def _require_number(value: Any, path: str, *, finite: bool = False) -> None:
    if value is _MISSING:
        raise RejectedLine(f"{path}: missing")
    if not _is_number(value):
        raise RejectedLine(f"{path}: not a number (got {_type_name(value)})")
    if finite and not math.isfinite(value):
        raise RejectedLine(f"{path}: number out of double range")


def _check_words(words: Any, path: str) -> None:
    if type(words) is not list:
        raise RejectedLine(f"{path}: not an array (got {_type_name(words)})")
    for k, word in enumerate(words):
        if type(word) is not dict:
            raise RejectedLine(f"{path}[{k}]: not an object (got {_type_name(word)})")
        end = word.get("end", _MISSING)
        if not _is_number(end):
            _require_number(end, f"{path}[{k}].end")
        text = word.get("word")
        if text and type(text) is not str:
            raise RejectedLine(f"{path}[{k}].word: not a string (got {_type_name(text)})")


_NUMBERS = frozenset({int, float})
_TEXT_OR_NULL = frozenset({str, type(None)})
_NO_METRICS: dict[str, Any] = {}


def _fast_columns(segments: list[Any]) -> SegmentColumns | None:
    """Segment columns when every checked field is well-formed, else None.

    Checks whole columns at once (``set(map(type, ...))``) instead of field by field;
    anything unusual falls back to :func:`_checked_columns`, which names the problem
    or accepts the rare valid oddity (e.g. a falsy non-text ``word``).
    """
    if not set(map(type, segments)) <= {dict}:
        return None
    starts = [seg.get("start") for seg in segments]
    ends = [seg.get("end") for seg in segments]
    metrics = [seg.get("metrics", _NO_METRICS) for seg in segments]
    speakers = [seg.get("speaker") for seg in segments]
    if not (
        set(map(type, starts)) <= _NUMBERS
        and set(map(type, ends)) <= _NUMBERS
        and set(map(type, metrics)) <= {dict}
        and set(map(type, speakers)) <= _TEXT_OR_NULL
    ):
        return None
    bandwidth = [m.get("bandwidth", 0) for m in metrics]
    if not set(map(type, bandwidth)) <= _NUMBERS:
        return None
    words = [seg["words"] for seg in segments if "words" in seg]
    if words:
        if not set(map(type, words)) <= {list}:
            return None
        try:
            word_ends = [w["end"] for ws in words for w in ws]
        except (KeyError, TypeError):
            return None
        texts = [w.get("word") for ws in words for w in ws]
        if not (set(map(type, word_ends)) <= _NUMBERS and set(map(type, texts)) <= _TEXT_OR_NULL):
            return None
    has_speaker = ["speaker" in seg for seg in segments]
    return starts, ends, bandwidth, speakers, has_speaker


def _checked_columns(segments: list[Any]) -> SegmentColumns:
    """Segment columns, checking field by field; raises :class:`RejectedLine`."""
    count = len(segments)
    starts: list[Any] = [0.0] * count
    ends: list[Any] = [0.0] * count
    bandwidth: list[Any] = [0] * count
    speakers: list[Any] = [None] * count
    has_speaker = [False] * count
    for i, seg in enumerate(segments):
        if type(seg) is not dict:
            raise RejectedLine(f"segments[{i}]: not an object (got {_type_name(seg)})")
        start = seg.get("start", _MISSING)
        end = seg.get("end", _MISSING)
        _require_number(start, f"segments[{i}].start", finite=True)
        _require_number(end, f"segments[{i}].end", finite=True)
        starts[i] = start
        ends[i] = end
        if "metrics" in seg:
            metrics = seg["metrics"]
            if type(metrics) is not dict:
                raise RejectedLine(
                    f"segments[{i}].metrics: not an object (got {_type_name(metrics)})"
                )
            value = metrics.get("bandwidth", 0)
            if not _is_number(value):
                _require_number(value, f"segments[{i}].metrics.bandwidth")
            bandwidth[i] = value
        if "speaker" in seg:
            has_speaker[i] = True
            speaker = seg["speaker"]
            if speaker is not None and type(speaker) is not str:
                raise RejectedLine(
                    f"segments[{i}].speaker: not a string (got {_type_name(speaker)})"
                )
            speakers[i] = speaker
        if "words" in seg:
            _check_words(seg["words"], f"segments[{i}].words")
    return starts, ends, bandwidth, speakers, has_speaker


def parse_entry(data: dict[str, Any]) -> ParsedEntry:
    """Validate a decoded entry and extract its segment columns.

    Args:
        data: A decoded manifest line.

    Returns:
        The entry with its :class:`~alm_spark.algorithm.segments.SegmentTable`.

    Raises:
        RejectedLine: When a field the algorithm reads has the wrong shape.
    """
    rate = data.get("audio_sample_rate", _MISSING)
    if rate is not _MISSING and not _is_number(rate):
        _require_number(rate, "audio_sample_rate")
    segments = data.get("segments", [])
    if type(segments) is not list:
        raise RejectedLine(f"segments: not an array (got {_type_name(segments)})")
    columns = _fast_columns(segments)
    if columns is not None:
        table = SegmentTable.from_columns(segments, columns)
        if np.isfinite(table.start).all() and np.isfinite(table.end).all():
            return ParsedEntry(data=data, table=table)
    table = SegmentTable.from_columns(segments, _checked_columns(segments))
    return ParsedEntry(data=data, table=table)
