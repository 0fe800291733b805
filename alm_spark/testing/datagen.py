"""Deterministic, seeded generators of ALM manifest entries.

Three shapes:

* ``corner`` - small entries that switch on every odd corner of the spec
  (overlapping and zero-length segments, equal starts, missing or empty speakers,
  ``no-speaker``, missing metrics, low sample rates, truncation without word
  timestamps, keys that collide with output keys, values whose type varies).
  Used to check the fast implementation against the literal one.
* ``sample`` - conversations shaped like NeMo Curator's tutorial sample
  (~6 KB lines, no word timestamps).
* ``production`` - long conversations with word timestamps, quality metrics and
  ~50 top-level keys (0.3-1.5 MB per line), low-bandwidth stretches and
  monologues that need truncation; ``podcast`` makes one ~10 MB, 6-hour line.

With ``--audio`` (:func:`with_audio`) each entry also gets a recording of the test
signal of :mod:`alm_spark.testing.audiogen`, long enough for its segments, in
``audio/`` next to the manifest. Meant for the short profiles: ``corner``, ``sample``
and ``demo`` entries last seconds to about 15 minutes; ``production`` entries last
30-120 minutes and ``podcast`` six hours, hundreds of megabytes of audio each.

Run ``python -m alm_spark.testing.datagen --help`` to write files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alm_spark.testing.audiogen import AudioTally, with_audio

_MISSING = object()
_VOCAB = [
    "the",
    "a",
    "and",
    "we",
    "market",
    "audio",
    "model",
    "data",
    "you",
    "think",
    "right",
    "so",
    "yes",
    "no",
    "maybe",
    "café",
    "über",
    "naïve",
    "日本語",
    "नमस्ते",
    "привет",
    "señor",
    "data-set",
    "state-of-the-art",
    "okay",
    "quarterly",
    "revenue",
    "speech",
    "language",
    "window",
    "meeting",
    "agenda",
    "research",
    "training",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(max(words, 1)))


def _odd_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of a random type, so a key's type varies from line to line."""
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -7, 2**40, 2**70, -(2**64) - 1, 12345])
    if kind == 3:
        return rng.choice([0.0, -0.0, 1.5e-9, 3.25, -2.5e300, 1e21, 0.1 + 0.2])
    if kind == 4:
        return rng.choice(
            ["", "plain", 'quote"s and \\ slashes', "line\nbreak", "sep\u2028x", "é日"]
        )
    if kind == 5:
        return rng.choice(["123", "true", "null", "1e5"])
    if kind == 6:
        return [_odd_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {f"k{i}": _odd_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return {}


def _words(
    rng: random.Random, start: float, end: float, odd: bool, rate: float = 2.6
) -> list[dict[str, Any]]:
    count = rng.randrange(0, 12) if odd else max(1, int((end - start) * rate))
    span = max(end - start, 0.0)
    out = []
    t = start
    for k in range(count):
        t += rng.uniform(0.05, 0.6) if odd else span / count * rng.uniform(0.7, 1.0)
        word: dict[str, Any] = {
            "word": rng.choice(_VOCAB),
            "start": round(t - 0.2, 3),
            "end": round(t, 3),
        }
        if odd:
            roll = rng.random()
            if roll < 0.08:
                word["word"] = ""
            elif roll < 0.12:
                word["word"] = None
            elif roll < 0.15:
                del word["word"]
            elif roll < 0.18:
                word["end"] = int(t)
            elif roll < 0.2:
                word["word"] = 0  # falsy: skipped when text is rebuilt, not rejected
        out.append(word)
        if odd and k > 0 and rng.random() < 0.1:
            out[k - 1], out[k] = out[k], out[k - 1]  # word ends out of order
    return out


def corner_entry(rng: random.Random, index: int) -> dict[str, Any]:
    """One small entry exercising the spec's corners (see the module docstring)."""
    pool_size = rng.choice([1, 2, 3, 4, 6, 8])
    base = ["spk_0", "spk_1", "spk_2", "spk_3", "spk_4", "spk_5", "spk_6", "SPK_0", " spk_1"]
    speakers: list[Any] = rng.sample(base, min(pool_size, len(base)))
    for rare in ("no-speaker", "", None, _MISSING):
        if rng.random() < 0.25:
            speakers.append(rare)
    n = rng.choice(
        [
            0,
            1,
            2,
            3,
            rng.randint(4, 12),
            rng.randint(8, 40),
            rng.randint(20, 70),
            rng.randint(20, 70),
        ]
    )
    t = rng.choice([0.0, 0.0, rng.uniform(0, 50), float(rng.randint(0, 9))])
    integer_times = rng.random() < 0.1
    segments: list[dict[str, Any]] = []
    for _ in range(n):
        seg, t = _corner_segment(rng, t, speakers, integer_times=integer_times)
        segments.append(seg)
    return _corner_top_level(rng, index, segments)


def _corner_segment(
    rng: random.Random, t: float, speakers: list[Any], *, integer_times: bool
) -> tuple[dict[str, Any], float]:
    """One corner segment after time ``t``; the segment and the new ``t``."""
    gap = rng.choice(
        [
            0.0,
            0.0,
            0.1,
            0.3,
            0.5,
            rng.uniform(0, 3),
            rng.uniform(0, 3),
            rng.uniform(5, 40),
            -rng.uniform(0, 4),
        ]
    )
    length = rng.choice(
        [
            0.0,
            0.3,
            rng.uniform(0.5, 6),
            rng.uniform(0.5, 6),
            rng.uniform(2, 12),
            rng.uniform(2, 12),
            rng.uniform(15, 90),
            -1.0,
        ]
    )
    start = round(max(t + gap, 0.0), rng.choice([1, 1, 2, 3, 6]))
    end = round(start + length, rng.choice([1, 1, 2, 3]))
    if integer_times:
        start, end = int(start), int(end)
    t = max(t, float(end))
    seg: dict[str, Any] = {"start": start, "end": end}
    speaker = rng.choice(speakers)
    if speaker is not _MISSING:
        seg["speaker"] = speaker
    roll = rng.random()
    if roll < 0.08:
        pass  # no metrics: bandwidth reads as 0
    elif roll < 0.12:
        seg["metrics"] = {"pesq_squim": 2.5}
    else:
        bandwidth = rng.choice([8000, 8000, 8000, 16000, 16000, 11025, 8000.5, 7999, 4000])
        seg["metrics"] = {"bandwidth": bandwidth, "stoi_squim": round(rng.random(), 3)}
    if rng.random() < 0.7:
        seg["words"] = _words(rng, float(start), float(end), odd=True)
    if rng.random() < 0.8:
        seg["text"] = _text(rng, rng.randrange(1, 8))
    if rng.random() < 0.3:
        seg["text_ITN"] = _text(rng, 3)
    if rng.random() < 0.1:
        seg["emotion"] = _odd_value(rng)
    return seg, t


def _corner_top_level(
    rng: random.Random, index: int, segments: list[dict[str, Any]]
) -> dict[str, Any]:
    """A corner entry's top-level keys around its segments."""
    n = len(segments)
    entry: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.9:
        entry["audio_filepath"] = f"/data/corner/{index % 37:04d}.wav"  # paths repeat
    elif roll < 0.95:
        entry["audio_filepath"] = None
    roll = rng.random()
    if roll < 0.85:
        entry["audio_sample_rate"] = rng.choice([16000, 16000, 44100, 48000, 16000.0, 22050])
    elif roll < 0.93:
        entry["audio_sample_rate"] = rng.choice([8000, 15999, 0])
    for key in ("duration", "meta_a", "meta_b", "meta_c"):
        if rng.random() < 0.7:
            entry[key] = _odd_value(rng)
    roll = rng.random()
    if roll < 0.2:
        entry["swift_audio_filepath"] = f"swift://bucket/{index}.wav"
    elif roll < 0.3:
        entry["swift_audio_filepath"] = rng.choice([None, "", 7])
    for key in (
        "windows",
        "stats",
        "filtered",
        "manifest_filepath",
        "swift_filepath",
        "filtered_dur",
        "truncation_events",
        "words",
    ):
        if rng.random() < 0.06:
            entry[key] = _odd_value(rng)
    if n > 0 or rng.random() < 0.7:
        entry["segments"] = segments
    if rng.random() < 0.2:
        entry["title"] = _text(rng, 4)
    return entry


def corner_params(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Random builder and overlap settings, scaled to corner entries (seconds, not minutes)."""
    builder: dict[str, Any] = {
        "target_window_duration": rng.choice([5.0, 8.0, 10, 12.5, 15.0, 20.0, 30.0]),
        "tolerance": rng.choice([0.0, 0.1, 0.1, 0.15, 0.25, 0.5, 1.2]),
        "min_bandwidth": rng.choice([8000, 8000, 8000, 4000, 0, 8000.5]),
        "min_sample_rate": rng.choice([16000, 16000, 16000, 0, 22050]),
        "min_speakers": rng.choice([0, 1, 2, 2, 3]),
        "max_speakers": rng.choice([1, 2, 3, 5, 5, 7]),
        "truncation": rng.random() < 0.75,
        "drop_fields": rng.choice(
            ["words", "words", "words,text", "", "speaker", "metrics", "words,emotion"]
        ),
        "drop_fields_top_level": rng.choice(
            [
                "words,segments",
                "words,segments",
                "segments",
                "",
                "windows,meta_a",
                "audio_filepath,segments",
            ]
        ),
    }
    builder["max_speakers"] = max(builder["max_speakers"], builder["min_speakers"])
    overlap = {
        "overlap_percentage": rng.choice([0, 10, 50, 50, 75, 100]),
        "target_duration": rng.choice([builder["target_window_duration"], 7.0, 120.0]),
    }
    return builder, overlap


_EXTRA_KEYS = 40


def _top_level(rng: random.Random, index: int, prefix: str, duration: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "audio_filepath": f"/data/audio/{prefix}_{index:06d}.wav",
        "audio_sample_rate": rng.choice([16000, 22050, 44100, 48000, 48000, 8000]),
        "duration": round(duration, 3),
        "id": f"{prefix}_{index:06d}",
        "dataset_source": rng.choice(["podcasts", "meetings", "internet_archive"]),
        "audio_num_channels": rng.choice([1, 2]),
        "audio_size": rng.randrange(10**7, 10**9),
        "actual_duration": round(duration + rng.random(), 3),
        "language": rng.choice(["en", "de", "fr", "hi", "ja"]),
        "sample_rate": 16000,
        "resampled_audio_filepath": f"/local/resampled/{prefix}_{index:06d}.wav",
        "dataset_name": "batch1",
        "num_speakers": None,
        "split_number": f"{index % 100:05d}",
    }
    for k in range(_EXTRA_KEYS):
        entry[f"meta_{k:02d}"] = _odd_value(rng)
    if rng.random() < 0.3:
        entry["swift_audio_filepath"] = f"swift://audio/{prefix}_{index:06d}.wav"
    return entry


def conversation_entry(
    rng: random.Random,
    index: int,
    minutes: float,
    *,
    words: bool = True,
    prefix: str = "prod",
    rich_words: bool = False,
    gap_scale: float = 1.0,
    words_per_second: float = 2.6,
) -> dict[str, Any]:
    """A production-shaped conversation of about ``minutes`` minutes.

    Short turns (about 3.3 s apart, ~8 words each, as in production diarization)
    among 2-6 speakers, occasional 40-200 s monologues that need truncation,
    low-bandwidth stretches, a rare ``no-speaker`` segment. ``rich_words`` adds
    per-word confidence and punctuation, as some ASR outputs carry; ``gap_scale``
    shortens the silences between turns.
    """
    speakers = [f"spk_{k}" for k in range(rng.randint(2, 6))]
    total = minutes * 60.0
    t = rng.uniform(0, 2)
    low_bw_until = -1.0
    segments: list[dict[str, Any]] = []
    while t < total:
        length = rng.uniform(0.8, 5.2)
        if rng.random() < 0.004:
            length = rng.uniform(40.0, 200.0)
        if rng.random() < 0.003:
            low_bw_until = t + rng.uniform(30, 300)
        start, end = round(t, 3), round(t + length, 3)
        bandwidth = (
            rng.choice([4000, 6000])
            if t < low_bw_until
            else rng.choice([8000, 11000, 16000, 16000])
        )
        seg: dict[str, Any] = {
            "start": start,
            "end": end,
            "speaker": rng.choice(speakers) if rng.random() > 0.002 else "no-speaker",
            "metrics": {
                "bandwidth": bandwidth,
                "pesq_squim": round(rng.uniform(1, 4.5), 3),
                "stoi_squim": round(rng.uniform(0.6, 1), 3),
                "sisdr_squim": round(rng.uniform(-5, 25), 3),
                "hallucination": rng.random() < 0.02,
            },
        }
        if words:
            seg["words"] = _words(rng, start, end, odd=False, rate=words_per_second)
            if rich_words:
                for word in seg["words"]:
                    word["confidence"] = round(rng.uniform(0.3, 1.0), 4)
                    word["punctuated_word"] = word["word"].capitalize() + rng.choice(["", "", ","])
            seg["text"] = " ".join(w["word"] for w in seg["words"])
        else:
            seg["text"] = _text(rng, int(length * 2.5))
        seg["text_ITN"] = seg["text"]
        segments.append(seg)
        t = end + gap_scale * rng.choice([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, rng.uniform(1, 6)])
    entry = _top_level(rng, index, prefix, total)
    entry["segments"] = segments
    return entry


def sample_entry(rng: random.Random, index: int) -> dict[str, Any]:
    """A sample-shaped talk, like NeMo Curator's tutorial sample (~6 KB, no word timestamps).

    Clusters of 4-10 short turns start every 120 s over about ten minutes, so
    120-second windows reach from one cluster into the next.
    """
    speakers = [f"speaker_{k}" for k in range(rng.randint(2, 4))]
    segments: list[dict[str, Any]] = []
    for cluster in range(6):
        t = cluster * 120.0 + rng.choice([0.0, 0.0, round(rng.uniform(0, 3), 1)])
        for _ in range(rng.randint(4, 10)):
            length = round(rng.uniform(2.5, 5.2), 1)
            segments.append(
                {
                    "text": _text(rng, rng.randint(5, 9)),
                    "start": round(t, 1),
                    "end": round(t + length, 1),
                    "speaker": rng.choice(speakers),
                    "metrics": {"bandwidth": rng.choice([8200, 8350, 8500, 8650, 8800, 8900])},
                }
            )
            t += length + round(rng.uniform(0.3, 0.9), 1)
    return {
        "audio_filepath": f"/data/audio/sample_{index:04d}.wav",
        "audio_sample_rate": rng.choice([16000, 16000, 22050, 44100, 48000]),
        "duration": round(segments[-1]["end"] + 3, 1),
        "segments": segments,
    }


def demo_entry(rng: random.Random, index: int) -> dict[str, Any]:
    """The bundled sample's mix of sample-shaped talks and short conversations.

    Every fourth entry is a 10-minute conversation with word timestamps, so
    truncation rebuilds text.
    """
    if index % 4 == 3:
        return conversation_entry(rng, index, rng.uniform(8, 12), prefix="demo")
    return sample_entry(rng, index)


PROFILES: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "corner": corner_entry,
    "demo": demo_entry,
    "sample": sample_entry,
    "production": lambda rng, i: conversation_entry(rng, i, rng.uniform(30, 120)),
    # One 6-hour line like the largest seen: ~6.6k segments, ~55k words, ~10 MB.
    "podcast": lambda rng, i: conversation_entry(
        rng, i, 360, prefix="podcast", rich_words=True, gap_scale=0.2, words_per_second=3.0
    ),
}


def generate(profile: str, count: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``count`` entries of a profile; the same seed gives the same entries.

    Each entry has its own random stream (``seed``, index), so a prefix of a longer
    run equals a shorter run.
    """
    make = PROFILES[profile]
    for index in range(count):
        yield make(random.Random(f"{profile}:{seed}:{index}"), index)


def write_jsonl(path: str | Path, entries: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Write entries as JSONL (gzip when the name ends in ``.gz``); returns bytes written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    opener: Any = gzip.open if target.suffix == ".gz" else open
    written = 0
    with opener(target, "wt", encoding="utf-8", newline="\n") as handle:
        for entry in entries:
            line = json.dumps(entry, ensure_ascii=False) + "\n"
            written += len(line.encode("utf-8"))
            handle.write(line)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: write generated manifests."""
    parser = argparse.ArgumentParser(
        prog="python -m alm_spark.testing.datagen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="production")
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output .jsonl or .jsonl.gz path")
    parser.add_argument(
        "--audio",
        action="store_true",
        help="also write each entry's recording to audio/ next to the manifest and point "
        "audio_filepath at it (relative to the manifest's folder); for the short profiles "
        "(corner, sample, demo): production and podcast entries are hours of audio",
    )
    parser.add_argument(
        "--max-audio-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --audio, write no recording for an entry that would need more than "
        "SECONDS of audio; such entries keep their generated audio fields (default: no limit)",
    )
    args = parser.parse_args(argv)
    if args.max_audio_seconds is not None and not args.audio:
        parser.error("--max-audio-seconds needs --audio")
    entries: Iterator[dict[str, Any]] = generate(args.profile, args.lines, args.seed)
    tally = AudioTally()
    if args.audio:
        manifest_dir = Path(args.out).parent
        entries = with_audio(
            entries,
            manifest_dir / "audio",
            manifest_dir,
            max_seconds=args.max_audio_seconds,
            tally=tally,
        )
    size = write_jsonl(args.out, entries)
    print(f"wrote {args.lines} {args.profile} entries ({size / 1e6:.1f} MB) to {args.out}")
    if args.audio:
        print(
            f"wrote {tally.files} recordings ({tally.seconds:.1f} s of audio) to "
            f"{Path(args.out).parent / 'audio'}; skipped {tally.skipped_too_long} longer than "
            f"--max-audio-seconds and {tally.skipped_no_times} without numeric segment times"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
