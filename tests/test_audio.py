"""Cutting clips without Spark: keys, paths, sample bounds, reasons, reading once."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
import soundfile as sf

from alm_spark import names
from alm_spark.audio import cut as audio
from alm_spark.audio.cut import (
    EntryRecording,
    WindowClip,
    audio_metrics,
    clip_frames,
    clip_key,
    cut_entry,
    frame_bounds,
    to_pcm16,
)
from alm_spark.audio.paths import AudioPaths
from alm_spark.audio.shards import ShardWriter
from alm_spark.config import AudioConfig, ConfigError, load_config
from alm_spark.testing.audiogen import signal, write_audio

SOURCE = "file:/data/set/part.jsonl"


def _pcm16(samples: np.ndarray) -> np.ndarray:
    return to_pcm16(samples)


def _read(data: bytes, dtype: str = "int16") -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype=dtype, always_2d=True)
    return samples, rate


def test_clip_keys_are_stable_readable_and_dotless() -> None:
    assert clip_key(SOURCE, 12, 3) == "part-eb4dce48-00000012-0003"
    assert clip_key("s3://b/x/part.jsonl.gz", 1, 0).startswith("part-")
    # Same name, other folder: another key.
    assert clip_key("file:/other/part.jsonl", 12, 3) != clip_key(SOURCE, 12, 3)
    assert "." not in clip_key("file:/d/a.b c.jsonl", 1, 0)
    assert clip_key("file:/d/a.b c.jsonl", 1, 0).startswith("a_b_c-")


def test_audio_paths_resolve_like_a_user_expects() -> None:
    def locate(path: str, source: str = SOURCE, root: str | None = None) -> str:
        return AudioPaths(root, allow_outside_root=True).locate(path, source)

    assert locate("a/b.flac") == "/data/set/a/b.flac"
    assert locate("a/b.flac", root="s3a://bucket/audio") == "s3://bucket/audio/a/b.flac"
    assert locate("/abs/b.wav", root="s3://x") == "/abs/b.wav"
    assert locate("gs://g/b.wav") == "gs://g/b.wav"
    assert locate("dbfs:/mnt/a.mp3") == "/dbfs/mnt/a.mp3"
    assert locate("b.flac", source="s3a://m/dir/x.jsonl") == "s3://m/dir/b.flac"


def test_frame_bounds_round_start_and_end() -> None:
    assert frame_bounds(1.5, 2.25, 16000) == (24000, 36000)
    assert frame_bounds(0.00003, 1.00003, 16000) == (0, 16000)  # 0.48 rounds down
    assert clip_frames(0.1, 0.2, 44100) == 4410
    assert clip_frames(1 / 3, 2 / 3, 48000) == 16000


def _windows(*spans: tuple[float, float]) -> list[WindowClip]:
    return [
        WindowClip(k, k, start, end, {"text": f"w{k}", "segments": []})
        for k, (start, end) in enumerate(spans)
    ]


def test_same_rate_lossless_cuts_are_sample_exact(tmp_path: Path) -> None:
    rate = 44100
    write_audio(tmp_path / "a.flac", 10.0, rate, 2, "flac")
    config = AudioConfig(enabled=True, sample_rate=rate, channels=2)
    spans = [(1.0, 3.5), (2.0, 2.0001), (0.123, 9.999)]
    result = cut_entry(
        _windows(*spans), EntryRecording(f"file:{tmp_path}/m.jsonl", 7, "a.flac", 44100), config
    )
    assert result.source_rate == rate
    assert result.rate_mismatch is False
    for clip, (start, end) in zip(result.clips, spans, strict=True):
        assert clip.reason is None
        first, stop = frame_bounds(start, end, rate)
        samples, clip_rate = _read(clip.audio or b"")
        assert clip_rate == rate
        assert np.array_equal(samples, _pcm16(signal(first, stop - first, rate, 2)))


def test_downmix_and_resampling_give_the_exact_frame_count(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", 6.0, 48000, 2, "wav")
    config = AudioConfig(enabled=True)  # 16 kHz mono flac
    spans = [(0.0, 1.0), (0.33333, 5.12345), (1.00001, 1.00009)]
    result = cut_entry(
        _windows(*spans), EntryRecording(f"file:{tmp_path}/m.jsonl", 1, "a.wav", 16000), config
    )
    assert result.rate_mismatch is True  # the manifest said 16000; decoded at 48000
    lengths = [len(_read(c.audio or b"")[0]) for c in result.clips]
    assert lengths == [16000, round(5.12345 * 16000) - round(0.33333 * 16000), 1]
    assert [c.frames for c in result.clips] == lengths
    mono, rate = _read(result.clips[0].audio or b"", "float32")
    assert (rate, mono.shape[1]) == (16000, 1)
    # The mean of the channels, band-limited (< 2 kHz), survives resampling closely.
    expected = signal(0, 48000, 48000, 2).mean(axis=1)[::3]
    assert float(np.max(np.abs(mono[200:-200, 0] - expected[200:-200]))) < 2e-3


def test_a_mono_source_is_doubled_for_stereo_clips(tmp_path: Path) -> None:
    write_audio(tmp_path / "m.flac", 2.0, 16000, 1, "flac")
    config = AudioConfig(enabled=True, channels=2)
    (clip,) = cut_entry(
        _windows((0.5, 1.0)), EntryRecording(f"file:{tmp_path}/x.jsonl", 1, "m.flac"), config
    ).clips
    samples, _ = _read(clip.audio or b"")
    assert samples.shape == (8000, 2)
    assert np.array_equal(samples[:, 0], samples[:, 1])


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_lossy_sources_give_clips_of_the_right_length(tmp_path: Path, fmt: str) -> None:
    write_audio(tmp_path / f"a.{fmt}", 4.0, 44100, 2, fmt)
    config = AudioConfig(enabled=True)
    spans = [(0.5, 1.75), (3.0, 4.0)]
    clips = cut_entry(
        _windows(*spans), EntryRecording(f"file:{tmp_path}/m.jsonl", 1, f"a.{fmt}"), config
    ).clips
    assert [c.reason for c in clips] == [None, None]
    assert [len(_read(c.audio or b"")[0]) for c in clips] == [20000, 16000]


def test_bad_audio_is_a_reason_per_window(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.flac", 3.0, 16000, 1, "flac")
    (tmp_path / "text.flac").write_text("not audio\n")
    config = AudioConfig(enabled=True)
    source = f"file:{tmp_path}/m.jsonl"
    spans = [(-0.5, 1.0), (1.0, 3.5), (2.0, 2.00001), (0.0, 1.0)]
    clips = cut_entry(_windows(*spans), EntryRecording(source, 1, "a.flac"), config).clips
    assert [c.reason for c in clips] == ["before_start", "past_end", "empty", None]
    assert clips[1].error == "the window ends at 3.5 s, past the file's end (3.000 s)"
    missing = cut_entry(
        _windows((0, 1), (1, 2)), EntryRecording(source, 2, "gone.flac"), config
    ).clips
    assert [(c.reason, c.error) for c in missing] == [
        ("missing", f"no audio file at {tmp_path}/gone.flac")
    ] * 2
    unreadable = cut_entry(_windows((0, 1)), EntryRecording(source, 3, "text.flac"), config).clips
    assert unreadable[0].reason == "unreadable"
    assert unreadable[0].error is not None
    assert unreadable[0].error.startswith(f"{tmp_path}/text.flac: ")
    (no_path,) = cut_entry(_windows((0, 1)), EntryRecording(source, 4, None), config).clips
    assert (no_path.reason, no_path.error) == ("no_path", "audio_filepath is missing or not text")


def test_a_stream_that_breaks_part_way_rejects_the_windows_after_it(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", 4.0, 16000, 1, "wav")
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # header still says 4 s
    config = AudioConfig(enabled=True)
    spans = [(0.0, 1.0), (1.5, 3.0), (3.0, 3.5)]
    clips = cut_entry(
        _windows(*spans), EntryRecording(f"file:{tmp_path}/m.jsonl", 1, "cut.wav"), config
    ).clips
    reasons = [c.reason for c in clips]
    # libsndfile reports the frames actually present for a short WAV, or the stream
    # ends early: either way the first window is cut and the later ones are reasons.
    assert reasons[0] is None
    assert set(reasons[1:]) <= {"past_end", "corrupt"}
    assert None not in reasons[1:]


class _CountingFile(io.BufferedReader):
    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        _CountingFile.read_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        _CountingFile.read_bytes += n
        return n


def test_a_recording_is_opened_once_and_read_forward_once(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", 30.0, 16000, 1, "wav")
    opened: list[str] = []

    def opener(url: str) -> BinaryIO:
        opened.append(url)
        return _CountingFile(io.FileIO(url, "rb"))

    spans = [(20.0, 25.0), (1.0, 4.0), (2.0, 6.0), (2.5, 3.0), (29.0, 30.0)]
    config = AudioConfig(enabled=True)
    _CountingFile.read_bytes = 0
    result = cut_entry(
        _windows(*spans),
        EntryRecording(f"file:{tmp_path}/m.jsonl", 1, "a.wav", 16000),
        config,
        opener,
    )
    assert [c.reason for c in result.clips] == [None] * 5
    assert opened == [f"{tmp_path}/a.wav"]
    # Overlapping windows share reads; the gaps are skipped: well under the file's size.
    needed = (5 + 5 + 1) * 16000 * 2
    assert _CountingFile.read_bytes < needed + 3 * audio.READ_BLOCK * 2


class _FakeSound:
    """A decoder of a long recording that returns frame numbers as samples."""

    channels, samplerate = 1, 1000

    def __init__(self, frames: int) -> None:
        self.frames, self.position, self.largest_read = frames, 0, 0

    def seek(self, frame: int) -> None:
        self.position = frame

    def read(self, dtype: str, always_2d: bool, out: np.ndarray) -> np.ndarray:
        frames = min(len(out), self.frames - self.position)
        self.largest_read = max(self.largest_read, frames)
        out[:frames, 0] = np.arange(self.position, self.position + frames) % 1_000_003
        self.position += frames
        return out[:frames]


def test_memory_stays_bounded_by_the_longest_window() -> None:
    sound = _FakeSound(6 * 3600 * 1000)  # six hours
    reader = audio._Reader(sound)
    starts = range(0, 6 * 3600 * 1000 - 200_000, 150_000)  # 200 s windows, overlapping
    largest = 0
    for first in starts:
        piece = reader.read(first, first + 200_000)
        assert piece[0, 0] == first % 1_000_003  # float32 holds these exactly
        assert piece[-1, 0] == (first + 199_999) % 1_000_003
        largest = max(largest, len(reader.buffer))
    assert largest <= 200_000 + audio.READ_BLOCK


def test_clip_json_carries_the_window_with_clip_relative_times(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.flac", 5.0, 16000, 1, "flac")
    window = WindowClip(
        1,
        4,
        1.25,
        3.0,
        {
            "text": "hi there",
            "speakers": {"a": 1.0, "b": 0.5},
            "speaker_durations": [1.0, 0.5, 0.0, 0.0, 0.0],
            "segments": [
                {"start": 1.25, "end": 2.25, "speaker": "a", "text": "hi"},
                {"start": 2.5, "end": 3.0, "speaker": "b", "text": "there"},
            ],
        },
    )
    source = f"file:{tmp_path}/m.jsonl"
    (clip,) = cut_entry(
        [window], EntryRecording(source, 9, "a.flac"), AudioConfig(enabled=True)
    ).clips
    assert json.loads(clip.meta or b"") == {
        "key": clip_key(source, 9, 1),
        "audio_filepath": "a.flac",
        "source": source,
        "line": 9,
        "window": 4,
        "position": 1,
        "start": 1.25,
        "end": 3.0,
        "duration": 1.75,
        "sample_rate": 16000,
        "channels": 1,
        "text": "hi there",
        "speakers": {"a": 1.0, "b": 0.5},
        "speaker_durations": [1.0, 0.5, 0.0, 0.0, 0.0],
        "segments": [
            {"start": 0.0, "end": 1.0, "speaker": "a", "text": "hi"},
            {"start": 1.25, "end": 1.75, "speaker": "b", "text": "there"},
        ],
    }


def test_shards_close_at_their_limits_and_are_reproducible(tmp_path: Path) -> None:
    def write(folder: Path, max_clips: int, max_bytes: int) -> list[Any]:
        folder.mkdir()
        writer = ShardWriter(
            lambda name: open(folder / name, "wb"),  # noqa: SIM115 - the writer closes it
            lambda n: f"s-{n}.tar",
            max_clips,
            max_bytes,
        )
        for k in range(5):
            writer.add(f"k{k}", [("flac", bytes([k]) * 1000), ("json", b"{}")], 1.5)
        return writer.close()

    shards = write(tmp_path / "a", 2, 10**9)
    assert [(s.name, s.clips, s.seconds) for s in shards] == [
        ("s-0.tar", 2, 3.0), ("s-1.tar", 2, 3.0), ("s-2.tar", 1, 1.5),
    ]  # fmt: skip
    with tarfile.open(tmp_path / "a" / "s-0.tar") as tar:
        assert tar.getnames() == ["k0.flac", "k0.json", "k1.flac", "k1.json"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    by_size = write(tmp_path / "b", 100, 3000)
    assert [s.clips for s in by_size] == [2, 2, 1]
    write(tmp_path / "c", 2, 10**9)
    for name in ("s-0.tar", "s-1.tar", "s-2.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()


def test_audio_metrics_name_every_reason() -> None:
    figures = dict.fromkeys([*names.AUDIO_COUNTS, *names.AUDIO_SECONDS], 0)
    figures.update(clips_written=3, seconds_written=7200.0, clips_lost_missing=2)
    metrics = audio_metrics(figures, ["shard-00000-0000.tar"], AudioConfig())
    assert metrics["hours_written"] == 2.0
    assert metrics["clips_lost"] == {
        "no_path": 0, "scheme_not_allowed": 0, "outside_root": 0, "missing": 2,
        "unreadable": 0, "corrupt": 0, "before_start": 0, "past_end": 0, "empty": 0,
        "equal_shards": 0,
    }  # fmt: skip
    assert metrics["shard_files"] == ["shard-00000-0000.tar"]


def test_after_a_repack_written_figures_are_the_published_ones_and_losses_add_up() -> None:
    first = dict.fromkeys([*names.AUDIO_COUNTS, *names.AUDIO_SECONDS], 0)
    first.update(clips_written=5, bytes_written=500, seconds_written=50.0, clips_lost_missing=2)
    second = dict.fromkeys(first, 0)
    second.update(clips_written=4, bytes_written=400, seconds_written=40.0)
    second.update(clips_lost_equal_shards=1, seconds_lost_equal_shards=10.0)
    combined = audio.repacked_figures(first, second)
    assert (combined["clips_written"], combined["bytes_written"]) == (4, 400)
    assert combined["seconds_written"] == 40.0
    assert (combined["clips_lost_missing"], combined["clips_lost_equal_shards"]) == (2, 1)
    assert combined["seconds_lost_equal_shards"] == 10.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("audio.codec=mp3", "audio.codec: expected one of flac, wav, got text 'mp3'"),
        ("audio.channels=3", "audio.channels: must be between 1 and 2, got 3"),
        ("audio.sample_rate=0", "audio.sample_rate: must be between 1000 and 384000, got 0"),
        (
            "audio.format=tar",
            "audio.format: expected one of webdataset, nemo, shar, got text 'tar'",
        ),
        ("audio.world_size=0", "audio.world_size: must be between 1 and 1000000, got 0"),
        ("audio.world_size=8", "audio.world_size: 8 needs audio.equal_shards: true"),
        ("audio.shard_max_clips=0", "audio.shard_max_clips: must be between 1 and 1000000, got 0"),
        ("audio.path_field=", "audio.path_field: expected non-empty text"),
    ],
)
def test_bad_audio_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(message)
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError):  # the same check for API users
        AudioConfig(**{key.split(".")[1]: value})


def test_audio_without_its_libraries_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = audio.importlib.import_module

    def without_soxr(name: str) -> Any:
        if name == "soxr":
            raise ImportError("No module named 'soxr'")
        return real(name)

    monkeypatch.setattr(audio.importlib, "import_module", without_soxr)
    with pytest.raises(ConfigError) as err:
        audio.check_audio_libraries()
    assert str(err.value) == (
        "audio.enabled: needs soxr (pip install 'alm_spark[audio]'): No module named 'soxr'"
    )
