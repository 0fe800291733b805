"""Cutting kept windows out of their recordings: paths, sample bounds, clips, reasons.

Plain Python over numpy, soundfile (libsndfile) and soxr; no Spark. The Spark layer
(:mod:`alm_spark.audio.tasks`) groups an entry's windows into one task and calls
:func:`cut_entry`, which opens the recording once and reads it forward once, keeping
only the samples the current window still needs (memory bounded by the longest window,
whatever the recording's length).

A clip of a window holds the source's frames ``round(start * rate)`` up to, not
including, ``round(end * rate)`` (``rate`` the file's own), downmixed (mean of the
channels) or doubled to ``audio.channels``, resampled by soxr to ``audio.sample_rate``
and trimmed or zero-padded to exactly ``round(end * target) - round(start * target)``
frames, then encoded as 16-bit FLAC or WAV.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import numpy as np

from alm_spark.audio.paths import AudioPaths, RefusedPath
from alm_spark.config import AudioConfig
from alm_spark.errors import ConfigError
from alm_spark.names import AUDIO_REASONS
from alm_spark.storage.datafiles import opened_scheme, store_of

#: Frames read from the decoder at a time.
READ_BLOCK = 1 << 16
#: Bytes a remote recording is read in (one ranged request each, read ahead forward).
READ_AHEAD = 2 << 20

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_COMPRESSION = (".gz", ".bz2", ".zst", ".xz")


def check_audio_libraries() -> None:
    """Refuse ``audio.enabled`` up front where soundfile or soxr cannot be imported.

    Raises:
        ConfigError: Naming ``audio.enabled`` and the missing library.
    """
    for module in ("soundfile", "soxr"):
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as err:  # OSError: libsndfile itself is missing
            raise ConfigError(
                f"audio.enabled: needs {module} (pip install 'alm_spark[audio]'): {err}"
            ) from None


def clip_key(source: str, line: int, position: int) -> str:
    """A clip's shard key: no dots, stable across reruns over the same input.

    ``<manifest stem>-<8 hex of the source path>-<line>-<position>``: readable, and
    unique although manifests in different folders may share a name.
    """
    name = posixpath.basename(source.rstrip("/"))
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    stem = _UNSAFE.sub("_", name.rsplit(".", 1)[0] if "." in name else name)[:48] or "manifest"
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}-{line:08d}-{position:04d}"


def frame_bounds(start: float, end: float, rate: float) -> tuple[int, int]:
    """The source frames ``[round(start * rate), round(end * rate))`` of a window."""
    return round(start * rate), round(end * rate)


def clip_frames(start: float, end: float, rate: int) -> int:
    """How many frames a window's clip holds at ``rate``."""
    first, stop = frame_bounds(start, end, rate)
    return stop - first


@dataclass(frozen=True)
class WindowClip:
    """One kept window to cut: where it is in its entry and what its JSON carries.

    Attributes:
        position: Index in the entry's ``filtered_windows`` (duplicates included).
        window: Index in the entry's ``windows``.
        start: Seconds in the source: the window's first segment start.
        end: Seconds in the source: its last segment end (as cut when truncated).
        meta: The rest of the clip's JSON (text, speakers, segments, ...).
    """

    position: int
    window: int
    start: float
    end: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryRecording:
    """The entry whose windows are cut, and its recording.

    Attributes:
        source: The manifest file the entry came from.
        line: The entry's line number in it.
        audio_path: The value of ``audio.path_field``; None when missing or not text.
        manifest_rate: The entry's ``audio_sample_rate``, to count files whose own rate
            differs (they are decoded at their own rate).
    """

    source: str
    line: int
    audio_path: str | None
    manifest_rate: float | None = None


@dataclass
class Clip:
    """A cut clip, encoded, or the reason it could not be cut."""

    window: WindowClip
    key: str
    audio: bytes | None = None
    meta: bytes | None = None
    frames: int = 0
    reason: str | None = None
    error: str | None = None


@dataclass
class EntryAudio:
    """What cutting one entry's windows gave: clips (or reasons) and file facts."""

    clips: list[Clip]
    source_rate: int | None = None
    rate_mismatch: bool = False


Opener = Callable[[str], BinaryIO]


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.3f} s"


class _Reader:
    """Forward-only access to a decoder: frames ``[first, stop)`` in increasing order."""

    def __init__(self, sound: Any) -> None:
        self.sound = sound
        self.position = 0  # next frame the decoder returns
        self.buffer = np.zeros((0, sound.channels), dtype=np.float32)
        self.buffer_start = 0

    def read(self, first: int, stop: int) -> np.ndarray:
        buffer_end = self.buffer_start + len(self.buffer)
        if first >= buffer_end:  # nothing buffered is needed: skip ahead
            keep = self.buffer[:0]
            if first > self.position:
                self.sound.seek(first)
                self.position = first
            start = self.position
        else:  # keep what the window (and the later ones) still need
            keep = self.buffer[first - self.buffer_start :]
            start = first
        if start + len(keep) >= stop:
            self.buffer, self.buffer_start = keep, start
            return keep[: stop - start]
        # Decode straight into the window's array: no block list, no second copy.
        out = np.empty((stop - start, self.sound.channels), dtype=np.float32)
        out[: len(keep)] = keep
        filled = len(keep)
        while filled < len(out):
            got = self.sound.read(dtype="float32", always_2d=True, out=out[filled:])
            if len(got) == 0:
                raise EOFError(
                    f"the stream ends at {_seconds(start + filled, self.sound.samplerate)}"
                )
            filled += len(got)
        self.position = start + filled
        self.buffer, self.buffer_start = out, start
        return out


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Frames × ``channels``: the mean of the source's channels, or mono doubled."""
    if samples.shape[1] == channels:
        return samples
    # Column by column in float32: exact for two 16-bit channels, and several times
    # faster than ndarray.mean over a short strided axis.
    mono = samples[:, :1].copy()
    for k in range(1, samples.shape[1]):
        mono += samples[:, k : k + 1]
    if samples.shape[1] > 1:
        mono /= np.float32(samples.shape[1])
    return mono if channels == 1 else np.repeat(mono, channels, axis=1)


def resample(samples: np.ndarray, source_rate: int, target_rate: int, frames: int) -> np.ndarray:
    """Resample with soxr (high quality), trimmed or zero-padded to exactly ``frames``."""
    if source_rate != target_rate and len(samples):
        import soxr

        samples = soxr.resample(samples, source_rate, target_rate, quality="HQ")
    if len(samples) > frames:
        return samples[:frames]
    if len(samples) < frames:
        pad = np.zeros((frames - len(samples), samples.shape[1]), dtype=samples.dtype)
        return np.concatenate([samples, pad])
    return samples


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit integers: ``x * 32768`` rounded and clipped.

    The inverse of libsndfile's reading of 16-bit audio as floats (``s / 32768``), so a
    lossless 16-bit source cut at its own rate comes out sample for sample.
    """
    scaled = np.rint(samples * np.float32(32768.0))  # a power of two: exact in float32
    return np.clip(scaled, -32768, 32767, out=scaled).astype(np.int16)


def encode(samples: np.ndarray, rate: int, codec: str) -> bytes:
    """A 16-bit FLAC or WAV file of ``samples`` (frames × channels, floats)."""
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, to_pcm16(samples), rate, format=codec.upper(), subtype="PCM_16")
    return out.getvalue()


def clip_meta(window: WindowClip, key: str, entry: EntryRecording, config: AudioConfig) -> bytes:
    """The clip's JSON: the window's facts, segment times relative to the clip."""
    meta = dict(window.meta)
    segments = meta.pop("segments", [])
    record = {
        "key": key,
        "audio_filepath": entry.audio_path,
        "source": entry.source,
        "line": entry.line,
        "window": window.window,
        "position": window.position,
        "start": window.start,
        "end": window.end,
        "duration": clip_frames(window.start, window.end, config.sample_rate) / config.sample_rate,
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        **meta,
        "segments": [
            {**s, "start": s["start"] - window.start, "end": s["end"] - window.start}
            for s in segments
        ],
    }
    return json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _reject(clip: Clip, reason: str, error: str) -> Clip:
    clip.reason, clip.error = reason, error
    return clip


def cut_entry(
    windows: Sequence[WindowClip],
    entry: EntryRecording,
    config: AudioConfig,
    opener: Opener | None = None,
) -> EntryAudio:
    """Cut every window of one entry out of its recording, reading it once.

    Args:
        windows: The entry's kept windows (``filtered_windows``, in order).
        entry: The entry and its recording.
        config: The ``audio`` settings.
        opener: Opens a resolved path for binary reading (fsspec when None).

    Returns:
        One :class:`Clip` per window, in the given order: encoded, or with a reason.
    """
    clips = [Clip(w, clip_key(entry.source, entry.line, w.position)) for w in windows]
    if not clips:
        return EntryAudio(clips)
    if entry.audio_path is None:
        error = f"{config.path_field} is missing or not text"
        return EntryAudio([_reject(c, "no_path", error) for c in clips])
    try:
        url = AudioPaths.of(config).locate(entry.audio_path, entry.source)
    except RefusedPath as err:
        return EntryAudio([_reject(c, err.reason, str(err)) for c in clips])
    import soundfile

    try:
        handle = (opener or partial(_fsspec_open, storage_options=config.storage_options))(url)
    except FileNotFoundError:
        return EntryAudio([_reject(c, "missing", f"no audio file at {url}") for c in clips])
    except (OSError, ValueError, ImportError) as err:  # ValueError: no such protocol
        error = f"cannot open {url}: {err}"
        return EntryAudio([_reject(c, "unreadable", error) for c in clips])
    with handle:
        try:
            sound = soundfile.SoundFile(handle)
        except Exception as err:  # libsndfile: not audio, or a format it does not know
            error = f"{url}: {_first_line(err)}"
            return EntryAudio([_reject(c, "unreadable", error) for c in clips])
        with sound:
            rate = int(sound.samplerate)
            mismatch = entry.manifest_rate is not None and float(entry.manifest_rate) != rate
            _cut_all(clips, sound, url, entry, config)
    return EntryAudio(clips, source_rate=rate, rate_mismatch=mismatch)


def _cut_all(
    clips: list[Clip], sound: Any, url: str, entry: EntryRecording, config: AudioConfig
) -> None:
    """Cut each clip in the order of its first frame, reading the file forward once."""
    rate = int(sound.samplerate)
    reader = _Reader(sound)
    total = int(sound.frames)
    broken: str | None = None
    for clip in sorted(clips, key=lambda c: frame_bounds(c.window.start, c.window.end, rate)):
        w = clip.window
        first, stop = frame_bounds(w.start, w.end, rate)
        frames = clip_frames(w.start, w.end, config.sample_rate)
        if first < 0:
            _reject(clip, "before_start", f"the window starts before 0 ({w.start} s)")
        elif stop > total:
            error = f"the window ends at {w.end} s, past the file's end ({_seconds(total, rate)})"
            _reject(clip, "past_end", error)
        elif stop <= first or frames <= 0:
            _reject(clip, "empty", f"the window ({w.start} s to {w.end} s) holds no frame")
        elif broken is not None:
            _reject(clip, "corrupt", broken)
        else:
            try:
                samples = reader.read(first, stop)
            except Exception as err:  # a decoding error part way: later windows too
                broken = f"{url}: decoding failed: {_first_line(err)}"
                _reject(clip, "corrupt", broken)
                continue
            shaped = resample(
                to_channels(samples, config.channels), rate, config.sample_rate, frames
            )
            clip.audio = encode(shaped, config.sample_rate, config.codec)
            clip.meta = clip_meta(w, clip.key, entry, config)
            clip.frames = frames


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _fsspec_open(url: str, storage_options: Mapping[str, Mapping[str, Any]]) -> BinaryIO:
    """Open a recording for forward reads in blocks of ``block_size`` (2 MiB by default).

    Remote file systems read ahead by their own block size otherwise (s3fs: 50 MiB), which
    for a window near a recording's start is most of the file.
    """
    from fsspec.core import url_to_fs

    options = dict(storage_options.get(store_of(opened_scheme(url)), {}))
    block_size = int(options.pop("block_size", READ_AHEAD))
    fs, path = url_to_fs(url, **options)  # one path: no globbing
    handle: BinaryIO = fs.open(path, "rb", block_size=block_size)
    return handle


#: The figures a repack pass decides: what the published shards hold.
_WRITTEN = ("clips_written", "bytes_written", "seconds_written")


def repacked_figures(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """The step's figures after a repack: written as published, losses of both passes."""
    return {n: second[n] if n in _WRITTEN else first[n] + second[n] for n in first}


def audio_metrics(
    figures: Mapping[str, float],
    shards: Sequence[str],
    config: AudioConfig,
    per_shard: int | None = None,
) -> dict[str, Any]:
    """The ``audio`` block of ``_metrics.json`` from the summed figures and the shards.

    Args:
        figures: The audio figures summed over the output's steps.
        shards: The shards' names in ``_shards/``, in order.
        config: The ``audio`` settings.
        per_shard: With equal shards, the clips in every one.
    """
    seconds = float(figures["seconds_written"])
    return {
        "format": config.format,
        "codec": config.codec,
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        "clips_written": int(figures["clips_written"]),
        "seconds_written": seconds,
        "hours_written": seconds / 3600,
        "bytes_written": int(figures["bytes_written"]),
        "shards": len(shards),
        "clips_per_shard": per_shard,
        "entries": int(figures["entries"]),
        "files_read": int(figures["files_read"]),
        "files_rate_mismatch": int(figures["files_rate_mismatch"]),
        "clips_lost": {r: int(figures[f"clips_lost_{r}"]) for r in AUDIO_REASONS},
        "seconds_lost": {r: float(figures[f"seconds_lost_{r}"]) for r in AUDIO_REASONS},
        "shard_files": list(shards),
    }
