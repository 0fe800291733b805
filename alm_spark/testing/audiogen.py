"""Deterministic test audio for generated manifests, and manifests pointed at it.

The signal's value at absolute frame ``n`` is a pure function of ``(n, rate, channel)``,
so a test can compute the expected samples of any slice a cutter takes out of a file
without reading the file. It is a sum of three sines per channel, at most 0.48 in
magnitude and below 2 kHz, so 16-bit quantization never clips and MP3 and Vorbis keep
it. The frequencies are given in millihertz and chosen so that no short shift of the
signal repeats it (its period is hundreds of seconds), and an off-by-some-frames cut
shows.

Files are written in blocks, so an hour of audio needs no more memory than a block.
``soundfile`` is imported only where a file is written: the module imports without it.
:func:`with_audio` writes a recording for each generated entry and points the entry at it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

# (amplitude, frequency in mHz) per channel; the sum of amplitudes stays under 0.5.
_TONES: tuple[tuple[tuple[float, int], ...], ...] = (
    ((0.25, 220_013), (0.15, 1_000_371), (0.08, 1_733_009)),
    ((0.25, 330_017), (0.15, 1_250_233), (0.08, 1_911_041)),
)

# Container and sample encoding of each format, as soundfile names them.
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
}

BLOCK_FRAMES = 2**16
"""Frames computed and written at a time by :func:`write_audio`."""

_PLAN_FORMATS = ("wav", "flac", "mp3", "ogg")
_PLAN_RATES = (16000, 44100, 48000)


class AudioSpec(NamedTuple):
    """How one generated recording is stored."""

    fmt: str
    rate: int
    channels: int


def signal(start_frame: int, frames: int, rate: int, channels: int) -> npt.NDArray[np.float32]:
    """The test signal from ``start_frame`` on, ``frames`` frames long.

    Args:
        start_frame: Absolute index of the first frame (0 is the start of the file).
        frames: Number of frames to compute.
        rate: Sample rate in Hz.
        channels: Number of channels, 1 or more; channel ``c`` uses the tones of
            channel ``c % 2``, with its phase shifted by ``c // 2`` radians.

    Returns:
        A float32 array of shape ``(frames, channels)``. Every element depends only on
        its absolute frame, the rate and its channel, so blocks concatenate to the
        whole exactly.

    Raises:
        ValueError: A negative start or length, or a non-positive rate or channel count.
    """
    if start_frame < 0 or frames < 0 or rate <= 0 or channels <= 0:
        raise ValueError(
            f"signal needs start_frame >= 0, frames >= 0, rate > 0 and channels > 0; "
            f"got {start_frame}, {frames}, {rate}, {channels}"
        )
    n = np.arange(start_frame, start_frame + frames, dtype=np.int64)
    cycle = np.int64(rate) * 1000  # one period of a 1 mHz tone, in frames x mHz
    out = np.empty((frames, channels), dtype=np.float32)
    for channel in range(channels):
        total = np.zeros(frames, dtype=np.float64)
        for amplitude, millihertz in _TONES[channel % 2]:
            # The phase is reduced in integers first, so it stays exact for hours of audio
            # and is the same number whichever block the frame is in.
            turns = (n * millihertz) % cycle
            total += amplitude * np.sin(2 * np.pi * turns / cycle + channel // 2)
        out[:, channel] = total
    return out


def write_audio(
    path: str | Path, duration_seconds: float, rate: int, channels: int, fmt: str
) -> int:
    """Write ``round(duration_seconds * rate)`` frames of :func:`signal` to ``path``.

    WAV and FLAC are 16-bit PCM, MP3 is MPEG layer III and OGG is Vorbis, all in
    libsndfile's default quality. Parent folders are created.

    Args:
        path: File to write (replaced if it exists).
        duration_seconds: Length of the recording.
        rate: Sample rate in Hz.
        channels: Number of channels.
        fmt: One of ``wav``, ``flac``, ``mp3``, ``ogg``.

    Returns:
        The number of frames written.

    Raises:
        ValueError: An unknown format or a negative duration.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {sorted(FORMATS)}")
    if duration_seconds < 0:
        raise ValueError(f"duration_seconds must be >= 0, got {duration_seconds}")
    import soundfile as sf

    container, subtype = FORMATS[fmt]
    total = round(duration_seconds * rate)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(
        str(target), "w", samplerate=rate, channels=channels, subtype=subtype, format=container
    ) as handle:
        for start in range(0, total, BLOCK_FRAMES):
            handle.write(signal(start, min(BLOCK_FRAMES, total - start), rate, channels))
    return total


def audio_spec(index: int) -> AudioSpec:
    """The format, rate and channel count of entry ``index``'s recording.

    Formats cycle with period 4, rates with period 3 and the channel count (mono for
    four entries, then stereo for four), so entries 0-7 use every format in mono and in
    stereo and every rate, and entries 0-11 every format at every rate.
    """
    return AudioSpec(
        fmt=_PLAN_FORMATS[index % len(_PLAN_FORMATS)],
        rate=_PLAN_RATES[index % len(_PLAN_RATES)],
        channels=1 + (index // len(_PLAN_FORMATS)) % 2,
    )


AUDIO_TAIL_SECONDS = 1.0
"""Audio written after an entry's last segment end, so the last window is never cut short."""


@dataclass
class AudioTally:
    """What :func:`with_audio` wrote and skipped, filled in as entries pass."""

    files: int = 0
    seconds: float = 0.0
    skipped_too_long: int = 0
    skipped_no_times: int = 0


def _segments_end(entry: dict[str, Any]) -> float | None:
    """The latest start or end of an entry's segments, or None if a time is not a number.

    An entry without a ``segments`` list, or with a segment that is not an object or lacks
    a finite numeric ``start`` and ``end``, has no time to cover, so it gets no audio. An
    empty list ends at 0.
    """
    segments = entry.get("segments")
    if not isinstance(segments, list):
        return None
    latest = 0.0
    for segment in segments:
        if not isinstance(segment, dict):
            return None
        for key in ("start", "end"):
            value = segment.get(key)
            # bool is an int in Python but not a time in the manifest
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            if not math.isfinite(value):
                return None
            latest = max(latest, float(value))
    return latest


def with_audio(
    entries: Iterable[dict[str, Any]],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    *,
    max_seconds: float | None = None,
    tail_seconds: float = AUDIO_TAIL_SECONDS,
    tally: AudioTally | None = None,
) -> Iterator[dict[str, Any]]:
    """Write a recording for each entry and point the entry at it.

    Entry ``i`` (counted from 0 in ``entries``) gets ``audio_dir/{i:06d}.{fmt}`` in the
    format, rate and channel count of :func:`alm_spark.testing.audiogen.audio_spec`,
    covering its segments' latest time plus ``tail_seconds``. The yielded copy has
    ``audio_filepath`` set to the file's path relative to ``manifest_dir`` (POSIX
    separators, as a manifest stores it), ``audio_sample_rate`` to its rate and, when the
    entry has the key, ``audio_num_channels`` to its channel count; other fields, and the
    order of keys, are kept. Entries whose segment times are not all numbers, and entries
    whose recording would be longer than ``max_seconds``, are yielded unchanged and get
    no file (a shortened file would not match the manifest).

    Args:
        entries: Manifest entries, as :func:`generate` yields them.
        audio_dir: Folder for the recordings (created).
        manifest_dir: Folder of the manifest the entries are written to.
        max_seconds: Longest recording to write; None for no limit.
        tail_seconds: Audio after the latest segment time.
        tally: Counts of written and skipped recordings, updated as entries pass.

    Yields:
        Each entry, with its audio fields set when a recording was written.
    """
    audio_dir = Path(audio_dir)
    for index, entry in enumerate(entries):
        end = _segments_end(entry)
        if end is None:
            if tally is not None:
                tally.skipped_no_times += 1
            yield entry
            continue
        duration = end + tail_seconds
        if max_seconds is not None and duration > max_seconds:
            if tally is not None:
                tally.skipped_too_long += 1
            yield entry
            continue
        spec = audio_spec(index)
        path = audio_dir / f"{index:06d}.{spec.fmt}"
        frames = write_audio(path, duration, spec.rate, spec.channels, spec.fmt)
        if tally is not None:
            tally.files += 1
            tally.seconds += frames / spec.rate
        updated = dict(entry)
        updated["audio_filepath"] = Path(os.path.relpath(path, manifest_dir)).as_posix()
        updated["audio_sample_rate"] = spec.rate
        if "audio_num_channels" in updated:
            updated["audio_num_channels"] = spec.channels
        yield updated
