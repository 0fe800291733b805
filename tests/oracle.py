"""A literal, slow transcription of ALM_SPEC §1 and §2: the test oracle.

Written rule by rule from the specification, on plain dicts, with no attempt at
speed. The fast implementation in :mod:`alm_spark.algorithm.builder` and
:mod:`alm_spark.algorithm.entry` must agree with it on every input. The benchmark
harness also uses it as the "plain script" a user would write.

Sums are explicit left-to-right loops: Python 3.12's ``sum()`` uses compensated
summation for floats, which the reference does not.
"""

from __future__ import annotations

import copy
from typing import Any

Segment = dict[str, Any]
Entry = dict[str, Any]

STAT_KEYS = (
    "total_segments",
    "total_dur",
    "swift_path",
    "audio_sample_rate",
    "lost_bw",
    "dur_lost_bw",
    "lost_sr",
    "dur_lost_sr",
    "lost_spk",
    "dur_lost_spk",
    "lost_win",
    "dur_lost_win",
    "lost_no_spkr",
    "dur_lost_no_spkr",
    "lost_next_seg_bm",
    "dur_lost_next_seg_bm",
    "lost_win_full_data",
)


#: What the overlap filter sets, only where absent, for an entry without windows (§2).
OVERLAP_DEFAULTS: dict[str, Any] = {
    "filtered_windows": [],
    "filtered_dur": 0.0,
    "filtered_dur_list": [],
    "total_dur_window": 0.0,
    "total_dur_list_window": [],
    "total_dur_list_window_timestamps": [],
    "filtered": [],
    "manifest_filepath": None,
    "swift_filepath": None,
}


def _split_names(value: str | list[str]) -> set[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return {item.strip() for item in items if item.strip()}


def _bw(seg: Segment) -> Any:
    metrics = seg.get("metrics")
    if metrics is None:
        return 0
    return metrics.get("bandwidth", 0)


def _dur(seg: Segment) -> Any:
    return seg["end"] - seg["start"]


def _spk(segs: list[Segment]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for seg in segs:
        label = seg.get("speaker")
        if label is None or label == "":
            continue
        out[label] = out.get(label, 0) + _dur(seg)
    return out


def _speaker_check_fails(segs: list[Segment], max_speakers: int) -> bool:
    m = _spk(segs)
    return len(m) > max_speakers or "no-speaker" in m


def build_entry(entry: Entry, params: dict[str, Any]) -> Entry:
    """Spec §1, one entry."""
    target = params.get("target_window_duration", 120.0)
    tolerance = params.get("tolerance", 0.1)
    min_bw = params.get("min_bandwidth", 8000)
    min_sr = params.get("min_sample_rate", 16000)
    min_spk = params.get("min_speakers", 2)
    max_spk = params.get("max_speakers", 5)
    truncation = params.get("truncation", True)
    drop = _split_names(params.get("drop_fields", "words"))
    drop_top = _split_names(params.get("drop_fields_top_level", "words,segments"))
    min_dur = target - target * tolerance
    max_dur = target + target * tolerance

    def strip(seg: Segment) -> Segment:
        return {k: v for k, v in seg.items() if k not in drop}

    segs: list[Segment] = entry.get("segments", [])
    total_dur: Any = 0
    for seg in segs:
        total_dur = total_dur + _dur(seg)
    stats: dict[str, Any] = {
        "total_segments": len(segs),
        "total_dur": total_dur,
        "swift_path": entry.get("swift_audio_filepath", ""),
        "audio_sample_rate": entry.get("audio_sample_rate", 0),
        "lost_bw": 0,
        "dur_lost_bw": 0.0,
        "lost_sr": 0,
        "dur_lost_sr": 0.0,
        "lost_spk": 0,
        "dur_lost_spk": 0.0,
        "lost_win": 0,
        "dur_lost_win": 0.0,
        "lost_no_spkr": 0,
        "dur_lost_no_spkr": 0.0,
        "lost_next_seg_bm": 0,
        "dur_lost_next_seg_bm": 0.0,
        "lost_win_full_data": [],
    }
    truncation_events = 0

    if entry.get("audio_sample_rate", 0) < min_sr:
        stats["lost_sr"] = len(segs)
        stats["dur_lost_sr"] = total_dur
        return {
            "audio_filepath": entry.get("audio_filepath"),
            "windows": [],
            "stats": stats,
            "truncation_events": 0,
        }

    windows: list[dict[str, Any]] = []
    for i, s in enumerate(segs):
        if _bw(s) < min_bw:
            stats["lost_bw"] += 1
            stats["dur_lost_bw"] = stats["dur_lost_bw"] + _dur(s)
            continue
        window: list[Segment] = []
        wstart = s["start"]
        wend = s["end"]
        c = i
        for c in range(i, len(segs)):
            cs = segs[c]
            if _bw(cs) < min_bw:
                break
            if cs["end"] - wstart > max_dur:
                if not truncation:
                    break
                tend = wstart + max_dur
                if cs["start"] >= tend:
                    break
                truncation_events += 1
                kept = [w for w in cs.get("words", []) if w["end"] <= tend]
                part = dict(cs)
                part["words"] = kept
                part["text"] = " ".join(w["word"] for w in kept if w.get("word"))
                part["end"] = kept[-1]["end"] if kept else cs["start"]
                if _speaker_check_fails([*window, part], max_spk):
                    break
                window.append(strip(part))
                wend = part["end"]
                break
            if _speaker_check_fails([*window, cs], max_spk):
                break
            wend = cs["end"]
            window.append(strip(cs))

        wdur = wend - wstart
        loss = not (min_dur <= wdur <= max_dur)
        if not loss:
            loss = len(window) < 2 or any(_bw(w) < min_bw for w in window)
        if loss:
            stats["lost_win"] += 1
            stats["dur_lost_win"] = stats["dur_lost_win"] + _dur(s)
            nxt = segs[min(c, len(segs) - 1)]
            if "speaker" not in nxt or nxt["speaker"] == "no-speaker":
                stats["lost_no_spkr"] += 1
                stats["dur_lost_no_spkr"] = stats["dur_lost_no_spkr"] + _dur(s)
            elif _bw(nxt) < min_bw:
                stats["lost_next_seg_bm"] += 1
                stats["dur_lost_next_seg_bm"] = stats["dur_lost_next_seg_bm"] + _dur(s)
            stats["lost_win_full_data"].append(
                {
                    "index": i,
                    "window_segs": window,
                    "next_seg": strip(nxt),
                    "prev_seg": strip(segs[max(i - 1, 0)]),
                }
            )
            continue
        m = _spk(window)
        if not (min_spk <= len(m) <= max_spk) or "no-speaker" in m:
            stats["lost_spk"] += 1
            stats["dur_lost_spk"] = stats["dur_lost_spk"] + _dur(s)
            continue
        durations = sorted(m.values(), reverse=True)[:5]
        durations += [0.0] * (5 - len(durations))
        windows.append({"segments": window, "speaker_durations": durations})

    out = {k: v for k, v in entry.items() if k not in drop_top}
    out["windows"] = windows
    out["stats"] = stats
    out["truncation_events"] = truncation_events
    return out


def _filter_pairs(pairs: list[list[Any]], threshold: float, target: float) -> list[list[Any]]:
    ordered = sorted(pairs, key=lambda p: (p[1], p[0]))
    removed: set[int] = set()
    for i in range(len(ordered)):
        if i in removed:
            continue
        end_i, start_i = ordered[i]
        dur_i = end_i - start_i
        for j in range(i + 1, len(ordered)):
            if j in removed:
                continue
            end_j, start_j = ordered[j]
            if start_j >= end_i:
                break
            dur_j = end_j - start_j
            overlap = max(0, min(end_i, end_j) - max(start_i, start_j))
            smaller = min(dur_i, dur_j)
            ratio = overlap / smaller if smaller != 0 else 0
            if ratio >= threshold:
                di = abs(dur_i - target)
                dj = abs(dur_j - target)
                if di < dj:
                    removed.add(j)
                elif dj < di:
                    removed.add(i)
                    break
                elif dur_i >= dur_j:
                    removed.add(j)
                else:
                    removed.add(i)
                    break
    return [p for k, p in enumerate(ordered) if k not in removed]


def overlap_entry(entry: Entry, params: dict[str, Any]) -> Entry:
    """Spec §2, one builder output."""
    threshold = params.get("overlap_percentage", 50) / 100
    target = params.get("target_duration", 120.0)
    out = dict(entry)
    windows = entry.get("windows") or []
    if not windows:
        for key, value in OVERLAP_DEFAULTS.items():
            if key not in out:
                out[key] = copy.deepcopy(value)
        return out

    pairs: list[list[Any]] = []
    durs: list[Any] = []
    total: Any = 0
    for w in windows:
        segs = w["segments"]
        if not segs:
            continue
        d = segs[-1]["end"] - segs[0]["start"]
        durs.append(d)
        total = total + d
        pairs.append([segs[-1]["end"], segs[0]["start"]])
    kept = _filter_pairs(pairs, threshold, target)
    rounded = {(round(e, 6), round(s, 6)) for e, s in kept}
    filtered_windows = [
        w
        for w in windows
        if w["segments"]
        and (round(w["segments"][-1]["end"], 6), round(w["segments"][0]["start"], 6)) in rounded
    ]
    filtered_dur: Any = 0
    dur_list = []
    for e, s in kept:
        filtered_dur = filtered_dur + (e - s)
        dur_list.append(e - s)
    stats = entry.get("stats")
    out["total_dur_window"] = total
    out["total_dur_list_window"] = durs
    out["total_dur_list_window_timestamps"] = pairs
    out["filtered"] = kept
    out["filtered_windows"] = filtered_windows
    out["filtered_dur"] = filtered_dur
    out["filtered_dur_list"] = dur_list
    out["manifest_filepath"] = stats.get("manifest_path") if isinstance(stats, dict) else None
    out["swift_filepath"] = stats.get("swift_path") if isinstance(stats, dict) else None
    return out


def process_entry(entry: Entry, builder: dict[str, Any], overlap: dict[str, Any]) -> Entry:
    """Builder then overlap filter, as the reference pipeline runs them."""
    return overlap_entry(build_entry(entry, builder), overlap)
