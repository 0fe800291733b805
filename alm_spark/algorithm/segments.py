"""One entry's segments as NumPy columns, and the builder's settings in derived form.

What the builder (:mod:`alm_spark.algorithm.builder`) and the overlap filter
(:mod:`alm_spark.algorithm.overlap`) compute on. Never use ``sum()`` on floats in this
package's window logic: Python 3.12+ compensates it and the reference does not
(:func:`sequential_sum`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alm_spark.config import BuilderConfig

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

NO_SPEAKER = "no-speaker"
MIN_SEGMENTS_PER_WINDOW = 2
SPEAKER_DURATION_SLOTS = 5


#: Per-segment values: start, end, bandwidth, speaker (text or None), has a speaker key.
SegmentColumns = tuple[list[Any], list[Any], list[Any], list[Any], list[bool]]


@dataclass(frozen=True)
class WindowParams:
    """The builder settings the window logic needs, in derived form.

    Attributes:
        min_duration: ``T - T*tolerance``.
        max_duration: ``T + T*tolerance``.
        min_bandwidth: Minimum ``metrics.bandwidth`` of a segment.
        min_speakers: Minimum distinct speakers per window (inclusive).
        max_speakers: Maximum distinct speakers per window (inclusive).
        truncation: Cut the last segment of a too-long window at a word boundary.
        drop_fields: Segment keys removed from every segment copy in the output.
    """

    min_duration: float
    max_duration: float
    min_bandwidth: float
    min_speakers: int
    max_speakers: int
    truncation: bool
    drop_fields: frozenset[str]

    @classmethod
    def from_builder(cls, builder: BuilderConfig) -> WindowParams:
        """The settings of a :class:`~alm_spark.config.BuilderConfig`, derived."""
        return cls(
            min_duration=builder.min_duration,
            max_duration=builder.max_duration,
            min_bandwidth=builder.min_bandwidth,
            min_speakers=builder.min_speakers,
            max_speakers=builder.max_speakers,
            truncation=builder.truncation,
            drop_fields=frozenset(builder.drop_fields),
        )

    @property
    def strips_speaker(self) -> bool:
        """Window copies lose ``speaker``, so only candidates carry labels (spec §1)."""
        return "speaker" in self.drop_fields

    @property
    def strips_metrics(self) -> bool:
        """Window copies lose ``metrics``, so their bandwidth reads as 0 (spec §1 step 5)."""
        return "metrics" in self.drop_fields


@dataclass
class SegmentTable:
    """One entry's segments as columns, next to the segment dicts themselves.

    Attributes:
        segments: The validated segment dicts, in file order.
        start: ``segments[k]["start"]`` as float64.
        end: ``segments[k]["end"]`` as float64.
        bandwidth: ``metrics.bandwidth``, 0 where missing.
        label: Speaker label id, -1 where ``speaker`` is missing, null or ``""``.
        has_speaker_key: Whether the segment has a ``speaker`` key at all.
        label_names: Label id to label text.
    """

    segments: list[dict[str, Any]]
    start: FloatArray
    end: FloatArray
    bandwidth: FloatArray
    label: IntArray
    has_speaker_key: BoolArray
    label_names: list[str]

    @property
    def size(self) -> int:
        """Number of segments."""
        return len(self.segments)

    @property
    def no_speaker_label(self) -> int:
        """Label id of ``"no-speaker"``, or -1 when the entry has none."""
        try:
            return self.label_names.index(NO_SPEAKER)
        except ValueError:
            return -1

    @classmethod
    def from_columns(cls, segments: list[dict[str, Any]], columns: SegmentColumns) -> SegmentTable:
        """Build a table from per-segment Python values.

        Args:
            segments: The segment dicts.
            columns: ``start``, ``end``, ``bandwidth``, speaker (text or None) and whether
                the ``speaker`` key is there, one list each.
        """
        start, end, bandwidth, speakers, has_speaker_key = columns
        ids: dict[str, int] = {}
        label = [ids.setdefault(s, len(ids)) if s else -1 for s in speakers]
        return cls(
            segments=segments,
            start=np.asarray(start, dtype=np.float64),
            end=np.asarray(end, dtype=np.float64),
            bandwidth=np.asarray(bandwidth, dtype=np.float64),
            label=np.asarray(label, dtype=np.int64),
            has_speaker_key=np.asarray(has_speaker_key, dtype=np.bool_),
            label_names=list(ids),
        )


def sequential_sum(values: FloatArray) -> float:
    """Left-to-right double sum from 0, as the reference's plain loops compute it."""
    if len(values) == 0:
        return 0.0
    return float(np.add.accumulate(values)[-1])


def next_true(mask: BoolArray) -> IntArray:
    """For every position, the first index at or after it where ``mask`` holds (n if none)."""
    n = len(mask)
    idx = np.where(mask, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(idx[::-1])[::-1]
