"""Tar shards of clips, as WebDataset reads them: ``<key>.<ext>`` members side by side.

Members are written in a stream (``tarfile`` mode ``w|``), so a shard goes straight
to object storage without seeking, with fixed owners, modes and times so the same
clips give the same bytes.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class ShardSink(Protocol):
    """Where a shard's bytes go: a file, or a data file that appears whole on ``close``."""

    def write(self, data: bytes, /) -> Any:
        """Append bytes."""

    def close(self) -> None:
        """Finish the file."""


@dataclass(frozen=True)
class ShardFile:
    """A finished shard: its name, clips, bytes, seconds of audio and recordings.

    ``recordings``: how many manifest entries its clips were cut from.
    """

    name: str
    clips: int
    bytes: int
    seconds: float
    recordings: int = 0


@dataclass(frozen=True)
class Placed:
    """Where a clip's first member went: the shard, the clip's index in it, the bytes."""

    shard: str
    index: int
    offset: int
    size: int


class ShardWriter:
    """Packs clips into tar files, starting a new one at a clip or size limit.

    Args:
        open_shard: Opens a new shard by name for binary writing.
        name_for: The name of the ``n``-th shard this writer starts (0, 1, ...).
        max_clips: Clips per shard at most.
        max_bytes: A shard is closed once it holds this many bytes or more.
    """

    def __init__(
        self,
        open_shard: Callable[[str], ShardSink],
        name_for: Callable[[int], str],
        max_clips: int,
        max_bytes: int,
    ) -> None:
        """Prepare; no file is opened before the first clip."""
        self._open, self._name_for = open_shard, name_for
        self._max_clips, self._max_bytes = max_clips, max_bytes
        self._handle: ShardSink | None = None
        self._tar: tarfile.TarFile | None = None
        self._name = ""
        self._clips = self._bytes = 0
        self._seconds = 0.0
        self._recordings: set[str] = set()
        self.finished: list[ShardFile] = []

    def add(
        self, key: str, members: list[tuple[str, bytes]], seconds: float, recording: str = ""
    ) -> Placed:
        """Write one clip's members (``(extension, data)``), the first one first.

        ``recording`` names the entry the clip was cut from (the shard counts them).

        Returns:
            The shard and the byte range of the first member's data in it, so a later
            pass can read that member back without scanning the tar.
        """
        if self._tar is None:
            self._start()
        assert self._tar is not None
        offsets = []
        for extension, data in members:
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            before = self._tar.offset
            self._tar.addfile(info, io.BytesIO(data))
            padded = len(data) + (-len(data)) % tarfile.BLOCKSIZE
            offsets.append(self._tar.offset - padded)  # after the header block(s)
            self._bytes += self._tar.offset - before
        placed = Placed(self._name, self._clips, offsets[0], len(members[0][1]))
        self._clips += 1
        self._seconds += seconds
        self._recordings.add(recording)
        if self._clips >= self._max_clips or self._bytes >= self._max_bytes:
            self._finish()
        return placed

    def close(self) -> list[ShardFile]:
        """Finish the open shard; returns every shard written."""
        if self._tar is not None:
            self._finish()
        return self.finished

    def abort(self) -> None:
        """Drop the open file (a failed task): a data file leaves nothing, a file is closed."""
        if self._handle is not None:
            getattr(self._handle, "abort", self._handle.close)()
        self._handle = self._tar = None

    def _start(self) -> None:
        self._name = self._name_for(len(self.finished))
        self._handle = self._open(self._name)
        self._tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=self._handle,  # tarfile only writes to it; _finish closes it
            mode="w|",
            format=tarfile.USTAR_FORMAT,
        )
        self._clips = self._bytes = 0
        self._seconds = 0.0
        self._recordings = set()

    def _finish(self) -> None:
        assert self._tar is not None
        assert self._handle is not None
        self._tar.close()
        self._handle.close()
        shard = ShardFile(
            self._name, self._clips, self._bytes, self._seconds, len(self._recordings)
        )
        self.finished.append(shard)
        self._handle = self._tar = None


def index_rows(read_text: Callable[[str], str], fragments: Iterable[str]) -> list[dict[str, Any]]:
    """The shard index's rows (one per shard), from its fragments read in name order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(fragments):
        rows += json.loads(read_text(path))["shards"]
    return rows


#: Bins of the shard balance chart.
_BALANCE_BINS = 12


def shard_balance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How evenly the shards are filled: the spread of each figure and a histogram of hours.

    Args:
        rows: One ``{clips, hours, bytes, recordings}`` per live shard (the shard index).

    Returns:
        ``{figure: {min, median, max}}`` for clips, hours, bytes and recordings, and
        ``hours_histogram``: ``edges`` (bins + 1) and ``counts`` of shards per bin.
    """
    out: dict[str, Any] = {}
    for name in ("clips", "hours", "bytes", "recordings"):
        values = sorted(row[name] for row in rows)
        middle = values[len(values) // 2] if values else 0
        out[name] = {"min": values[0] if values else 0, "median": middle,
                     "max": values[-1] if values else 0}  # fmt: skip
    low, high = out["hours"]["min"], out["hours"]["max"]
    width = (high - low) / _BALANCE_BINS or 1.0
    counts = [0] * _BALANCE_BINS
    for row in rows:
        counts[min(int((row["hours"] - low) / width), _BALANCE_BINS - 1)] += 1
    edges = [low + width * n for n in range(_BALANCE_BINS + 1)]
    out["hours_histogram"] = {"edges": edges, "counts": counts}
    out["shards"] = len(rows)
    return out


def attempt_name(name: str, attempt: int) -> str:
    """``audio_3.tar`` as task attempt 17 writes it: ``audio_3.attempt-17.tar``."""
    stem, dot, extension = name.rpartition(".")
    return f"{stem}.attempt-{attempt}{dot}{extension}"


#: A numbered shard's or shard manifest's file name, with its number.
_NUMBERED = re.compile(
    r"(?:audio_(\d+)\.tar|shard-(\d{6})\.tar|manifest_(\d+)\.json"
    r"|recording\.(\d{6,})\.tar|cuts\.(\d{6,})\.jsonl\.gz)"
)


def shard_number(path: str) -> int | None:
    """The number in a repacked shard's (or its manifest's) name; None for other names."""
    found = _NUMBERED.fullmatch(path.rsplit("/", 1)[-1])
    if found is None:
        return None
    return int(next(group for group in found.groups() if group is not None))


def repacked_shard_name(audio_format: str, number: int) -> str:
    """A numbered shard's name (a new output's from 0; an output's later ones go on).

    NeMo's loaders find ``audio_N.tar`` by brace expansion (``audio__OP_0..N_CL_.tar``)
    and Lhotse by the number in the name; WebDataset's ``shard-{000000..N}.tar``; Lhotse
    Shar's ``recording.NNNNNN.tar`` beside ``cuts.NNNNNN.jsonl.gz``.
    """
    if audio_format == "nemo":
        return f"audio_{number}.tar"
    if audio_format == "shar":
        return f"recording.{number:06d}.tar"
    return f"shard-{number:06d}.tar"


def shar_cuts_name(number: int) -> str:
    """The cuts of ``recording.NNNNNN.tar``, beside it in ``_shards/``."""
    return f"cuts.{number:06d}.jsonl.gz"


#: Clip facts a Shar cut carries as its own fields, not among its custom ones.
_CUT_FIELDS = ("key", "duration", "sample_rate", "channels", "segments", "start", "end")


def shar_cut(meta: dict[str, Any]) -> tuple[str, bytes]:
    """A clip as Lhotse Shar holds it: its cuts line, and its recording's JSON member.

    The cut's id is the clip key, as is its recording's (Lhotse reads the audio member
    ``<key>.<codec>`` and then ``<key>.json`` from the tar, in that order); one
    supervision per segment, its start relative to the clip; the clip's other facts are
    the cut's custom fields, the source times as ``source_start``/``source_end``. A
    zero-length segment (start equal to end) is no supervision: Lhotse refuses those.
    """
    key, rate, channels = meta["key"], int(meta["sample_rate"]), int(meta["channels"])
    samples = round(float(meta["duration"]) * rate)
    channel_ids = list(range(channels))
    recording = {
        "id": key,
        "sources": [{"type": "shar", "channels": channel_ids, "source": ""}],
        "sampling_rate": rate,
        "num_samples": samples,
        "duration": samples / rate,
        "channel_ids": channel_ids,
    }
    channel: int | list[int] = 0 if channels == 1 else channel_ids
    supervisions = [  # Lhotse wants a positive duration: zero-length segments are not kept
        _supervision(key, n, segment, channel)
        for n, segment in enumerate(meta.get("segments", []))
        if float(segment["end"]) > float(segment["start"])
    ]
    custom = {k: v for k, v in meta.items() if k not in _CUT_FIELDS}
    custom.update(source_start=meta["start"], source_end=meta["end"])
    if isinstance(custom.get("speakers"), dict):  # lhotse reads some dicts as its own types
        custom["speakers"] = [[label, seconds] for label, seconds in custom["speakers"].items()]
    cut = {
        "id": key,
        "start": 0,
        "duration": samples / rate,
        "channel": channel,
        "supervisions": supervisions,
        "recording": recording,
        "custom": custom,
        "type": "MonoCut" if channels == 1 else "MultiCut",
    }
    line = json.dumps(cut, ensure_ascii=False, allow_nan=False)
    return line, (json.dumps(recording) + "\n").encode("utf-8")


def _supervision(
    key: str, number: int, segment: dict[str, Any], channel: int | list[int]
) -> dict[str, Any]:
    """One segment as a Lhotse supervision of its clip's cut."""
    start = float(segment["start"])
    found = {
        "id": f"{key}-{number:04d}",
        "recording_id": key,
        "start": start,
        "duration": float(segment["end"]) - start,
        "channel": channel,
        "text": segment.get("text"),
        "speaker": segment.get("speaker"),
    }
    rest = {k: v for k, v in segment.items() if k not in ("start", "end", "text", "speaker")}
    if rest:
        found["custom"] = rest
    return {k: v for k, v in found.items() if v is not None}


def nemo_manifest_name(number: int) -> str:
    """The manifest of ``audio_N.tar`` in ``sharded_manifests/``."""
    return f"manifest_{number}.json"


def nemo_manifest_line(meta: dict[str, Any], member: str, shard_id: int) -> str:
    """One clip's line in its shard's NeMo manifest.

    NeMo's tarred datasets look members up by ``audio_filepath`` (the member name);
    Lhotse's NeMo adapter also wants ``shard_id``. The clip's other facts follow, with
    the recording's path as ``source_audio_filepath``.
    """
    rest = {k: v for k, v in meta.items() if k not in ("audio_filepath", "duration", "text")}
    record = {
        "audio_filepath": member,
        "duration": meta["duration"],
        "offset": 0,
        "text": meta.get("text", ""),
        "shard_id": shard_id,
        "source_audio_filepath": meta["audio_filepath"],
        **rest,
    }
    return json.dumps(record, ensure_ascii=False, allow_nan=False)
