"""Generated test audio: a signal known frame by frame, written in four formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alm_spark.testing.audiogen import (
    BLOCK_FRAMES,
    FORMATS,
    AudioTally,
    audio_spec,
    signal,
    with_audio,
    write_audio,
)
from alm_spark.testing.datagen import generate, main

# Measured with libsndfile 1.2.2 (LAME / libvorbis): both lossy formats decode to exactly
# the frames written, sample-aligned (no encoder delay or padding left in), so the
# frame-count tolerance is 0. Worst errors seen against the signal, over 16/44.1/48 kHz,
# mono and stereo, 0.05-1.5 s: max |error| 0.051 (OGG) and 0.028 (MP3); RMS error 0.0101
# (OGG, 16 kHz stereo) and 0.0037 (MP3). The signal's RMS is 0.214.
LOSSY_FRAME_TOLERANCE = 0
LOSSY_MAX_ERROR = 0.1
LOSSY_RMS_ERROR = 0.02


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def test_signal_is_deterministic_and_block_independent() -> None:
    whole = signal(0, 10_000, 44100, 2)
    assert whole.dtype == np.float32
    assert whole.shape == (10_000, 2)
    assert np.array_equal(whole, signal(0, 10_000, 44100, 2))
    for split in (1, 4321, 9_999):
        parts = np.concatenate(
            [signal(0, split, 44100, 2), signal(split, 10_000 - split, 44100, 2)]
        )
        assert np.array_equal(whole, parts)
    # Any slice far into a long recording equals the same frames of a longer computation.
    late = 6 * 3600 * 48000
    assert np.array_equal(signal(late + 3, 5, 48000, 1), signal(late, 8, 48000, 1)[3:])


def test_signal_shape_and_level() -> None:
    block = signal(0, 48000, 48000, 3)
    assert 0.4 < np.abs(block).max() <= 0.5  # well below full scale, yet not silent
    assert not np.array_equal(block[:, 0], block[:, 1])  # channels differ
    assert not np.array_equal(block[:, 0], block[:, 2])
    assert not np.array_equal(signal(0, 100, 16000, 1), signal(0, 100, 48000, 1))
    # No short period: the signal 50 ms on (a multiple of every whole-hertz period) differs.
    assert np.abs(signal(2400, 4800, 48000, 1) - signal(0, 4800, 48000, 1)).max() > 1e-3
    assert signal(7, 0, 16000, 1).shape == (0, 1)
    with pytest.raises(ValueError, match="start_frame"):
        signal(-1, 10, 16000, 1)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (48000, 2)])
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_files_hold_the_quantized_signal_exactly(
    tmp_path: Path, fmt: str, rate: int, channels: int
) -> None:
    # Longer than one block at every rate, and not a whole number of blocks.
    duration = 1.5 if rate == 48000 else (BLOCK_FRAMES + 1234) / rate
    path = tmp_path / f"a.{fmt}"
    frames = write_audio(path, duration, rate, channels, fmt)
    assert frames == round(duration * rate) > BLOCK_FRAMES
    info = sf.info(str(path))
    assert (info.format, info.subtype) == FORMATS[fmt]
    assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames)

    # libsndfile 1.2.2 scales floats by 32768 to 16 bits: WAV rounds down, FLAC to nearest
    # (ties to even); reading as float divides by 32768.
    scaled = signal(0, frames, rate, channels) * np.float32(32768)
    quantize = np.floor if fmt == "wav" else np.rint
    expected = quantize(scaled).astype(np.int16)
    stored, read_rate = sf.read(str(path), dtype="int16", always_2d=True)
    assert read_rate == rate
    assert np.array_equal(stored, expected)
    as_float, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert np.array_equal(as_float, expected.astype(np.float32) / np.float32(32768))


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (16000, 2), (44100, 2), (48000, 1)])
@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_lossy_files_have_the_requested_length_and_the_signal(
    tmp_path: Path, fmt: str, rate: int, channels: int
) -> None:
    path = tmp_path / f"a.{fmt}"
    frames = write_audio(path, 0.37, rate, channels, fmt)
    assert frames == round(0.37 * rate)
    info = sf.info(str(path))
    assert (info.format, info.subtype) == FORMATS[fmt]
    assert (info.samplerate, info.channels) == (rate, channels)
    decoded, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert abs(info.frames - frames) <= LOSSY_FRAME_TOLERANCE
    assert abs(len(decoded) - frames) <= LOSSY_FRAME_TOLERANCE
    expected = signal(0, frames, rate, channels)
    assert np.abs(decoded - expected).max() < LOSSY_MAX_ERROR
    assert _rms(decoded, expected) < LOSSY_RMS_ERROR
    # The bound is tight enough to see a misaligned cut: 8 frames off fails it.
    assert _rms(decoded[8:], expected[:-8]) > 2 * LOSSY_RMS_ERROR


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'aiff'"):
        write_audio(tmp_path / "a.aiff", 1.0, 16000, 1, "aiff")
    assert not (tmp_path / "a.aiff").exists()


def test_plan_covers_every_format_rate_and_channel_count() -> None:
    first = [audio_spec(i) for i in range(8)]
    assert {spec.fmt for spec in first} == set(FORMATS)
    assert {spec.rate for spec in first} == {16000, 44100, 48000}
    assert {(spec.fmt, spec.channels) for spec in first} == {
        (fmt, channels) for fmt in FORMATS for channels in (1, 2)
    }
    assert {(s.fmt, s.rate) for s in map(audio_spec, range(12))} == {
        (fmt, rate) for fmt in FORMATS for rate in (16000, 44100, 48000)
    }
    assert audio_spec(24) == audio_spec(0)  # cycles
    assert first[0] == ("wav", 16000, 1)


def _entry(end: float, **fields: object) -> dict[str, object]:
    return {
        "audio_filepath": "/data/x.wav",
        **fields,
        "segments": [{"start": 0.0, "end": end / 2}, {"start": end / 4, "end": end}],
        "audio_sample_rate": 8000,
    }


def test_with_audio_writes_matching_files(tmp_path: Path) -> None:
    entries = [
        _entry(0.3, audio_num_channels=7),
        _entry(0.2),
        {"segments": [{"start": "0", "end": 1.0}], "audio_filepath": "/keep"},
        {"segments": [{"start": 0, "end": True}]},
        {"no_segments": 1},
        _entry(5.0),  # longer than max_seconds
        {"segments": []},
        {"segments": [{"start": 0.1, "end": 0.05}, {"start": 0, "end": 0}]},  # odd but numeric
    ]
    manifests = tmp_path / "data" / "manifests"
    manifests.mkdir(parents=True)
    tally = AudioTally()
    out = list(
        with_audio(
            entries,
            tmp_path / "data" / "audio",
            manifests,
            max_seconds=2.0,
            tail_seconds=0.25,
            tally=tally,
        )
    )
    for index in (2, 3, 4, 5):
        assert out[index] is entries[index]
    assert (tally.files, tally.skipped_no_times, tally.skipped_too_long) == (4, 3, 1)
    written = {0: 0.3 + 0.25, 1: 0.2 + 0.25, 6: 0.25, 7: 0.1 + 0.25}
    assert tally.seconds == pytest.approx(sum(written.values()), abs=1e-3)
    for index, duration in written.items():
        spec = audio_spec(index)
        relative = f"../audio/{index:06d}.{spec.fmt}"
        assert out[index]["audio_filepath"] == relative
        assert out[index]["audio_sample_rate"] == spec.rate
        assert list(out[index]) == list(entries[index]) + (
            [] if "audio_filepath" in entries[index] else ["audio_filepath", "audio_sample_rate"]
        )
        info = sf.info(str(manifests / relative))
        assert (info.samplerate, info.channels) == (spec.rate, spec.channels)
        assert info.frames == round(duration * spec.rate)
    assert out[0]["audio_num_channels"] == audio_spec(0).channels
    assert "audio_num_channels" not in out[1]
    assert sorted(p.name for p in (tmp_path / "data" / "audio").iterdir()) == sorted(
        f"{i:06d}.{audio_spec(i).fmt}" for i in written
    )


def test_cli_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Of corner entries 0-9 (seed 0) only entry 9 needs less than 5 s of audio.
    out = tmp_path / "run" / "m.jsonl"
    argv = ["--profile", "corner", "--lines", "10", "--out", str(out), "--audio"]
    assert main([*argv, "--max-audio-seconds", "5"]) == 0
    assert "wrote 1 recordings" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = list(generate("corner", 10))
    assert lines[:9] == expected[:9]
    end = max(max(s["start"], s["end"]) for s in expected[9]["segments"])
    assert end + 1.0 < 5
    spec = audio_spec(9)
    assert lines[9] == {
        **expected[9],
        "audio_filepath": f"audio/000009.{spec.fmt}",
        "audio_sample_rate": spec.rate,
    }
    info = sf.info(str(out.parent / lines[9]["audio_filepath"]))
    assert (info.samplerate, info.channels) == (spec.rate, spec.channels)
    assert info.frames == round((end + 1.0) * spec.rate)
    assert [p.name for p in (out.parent / "audio").iterdir()] == [f"000009.{spec.fmt}"]

    with pytest.raises(SystemExit):
        main(["--out", str(out), "--max-audio-seconds", "5"])
    assert "needs --audio" in capsys.readouterr().err
