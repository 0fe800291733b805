"""The run report: one self-contained HTML page built from ``_metrics.json``.

Charts are inline SVG drawn here, so the page needs no script, font or network. The
numbers come from the run's metrics (totals observed while writing, and figures summed
by Spark), never from reading entries back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from itertools import pairwise
from typing import Any

from alm_spark.report.summary import LARGE_FIGURE, OVERFLOW

BLUE = "#2f6db5"
TEAL = "#2a9d8f"
ORANGE = "#e07a2f"
GREY = "#8a94a6"
RED = "#c0392b"

_LOSS_LABELS = {
    "lost_bw": "low bandwidth (start segment)",
    "lost_sr": "sample rate below minimum",
    "lost_spk": "speakers out of range, or no-speaker",
    "lost_win": "no valid window (length, < 2 segments)",
    "lost_no_spkr": "  of which: next segment without speaker",
    "lost_next_seg_bm": "  of which: next segment low bandwidth",
}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;
background:#f4f6f9}
header{background:#1d3557;color:#fff;padding:24px 40px}header h1{margin:0 0 6px;font-size:26px}
header p{margin:2px 0;color:#d6e0ee;font-size:14px}
main{padding:8px 40px 40px;max-width:1180px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);
margin:20px 0;padding:18px 24px}
h2{font-size:19px;margin:0 0 12px}h3{font-size:15px;margin:8px 0;color:#44516a}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.tile{background:#f0f4fa;border-radius:6px;padding:10px 16px;min-width:140px}
.tile b{display:block;font-size:22px;color:#1d3557}.tile span{font-size:12px;color:#5b6678}
.row{display:flex;flex-wrap:wrap;gap:24px}.row>div{flex:1;min-width:300px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e8ef}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
p.note{font-size:13px;color:#5b6678;margin:6px 0 0}
svg text{font-family:inherit}
"""


def _hours(seconds: float | None) -> str:
    """Readable hours; ``overflow`` for a total beyond the largest double (null)."""
    if seconds is None:
        return OVERFLOW
    hours = seconds / 3600
    return f"{hours:.3g} h" if abs(hours) >= LARGE_FIGURE else f"{hours:,.2f} h"


def _num(value: float | None) -> str:
    if value is None:
        return OVERFLOW
    if abs(value) >= LARGE_FIGURE:
        return f"{value:.3g}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _value(value: float | None) -> float:
    """A figure as a bar length: an overflowed total (None) draws no bar."""
    return 0.0 if value is None else float(value)


def _ratio(part: float | None, whole: float | None) -> float | None:
    """``part / whole``, None when either overflowed or ``whole`` is 0."""
    if part is None or whole is None or not whole:
        return None
    return part / whole


def hbar_chart(
    rows: Sequence[tuple[str, float | None, str]], color: str = BLUE, width: int = 760
) -> str:
    """Horizontal bars: (label, value, text shown at the bar's end)."""
    label_w, bar_h, gap = 290, 22, 8
    height = len(rows) * (bar_h + gap) + 8
    top = max((_value(v) for _, v, _ in rows if _value(v) > 0), default=0) or 1
    room = width - label_w - 210  # leaves space for the value text after the longest bar
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for i, (label, value, text) in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        w = min(max(_value(value) / top * room, 1 if value else 0), room)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="13">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}" rx="3"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" fill="#44516a">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def column_chart(
    labels: Sequence[str],
    counts: Sequence[float],
    color: str = TEAL,
    *,
    x_title: str = "",
    size: tuple[int, int] = (360, 210),
) -> str:
    """Vertical bars with a light axis: a histogram or a bar per category."""
    width, height = size
    left, bottom, top_pad = 44, 42, 10
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    peak = max(counts, default=0) or 1
    step = plot_w / max(len(counts), 1)
    parts = [
        f'<svg width="{width}" height="{height}" role="img">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'stroke="#9aa5b5"/>',
        f'<text x="{left - 6}" y="{top_pad + 8}" text-anchor="end" font-size="11" '
        f'fill="#5b6678">{_num(peak)}</text>',
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" font-size="11" '
        'fill="#5b6678">0</text>',
    ]
    every = max(1, len(labels) // 8)
    for i, count in enumerate(counts):
        h = count / peak * plot_h
        x = left + i * step
        tip = f"<title>{escape(labels[i])}: {_num(count)}</title>"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="{color}">{tip}</rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle" '
                f'font-size="10" fill="#5b6678">{escape(labels[i])}</text>'
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="12" '
        f'fill="#44516a">{escape(x_title)}</text></svg>'
    )
    return "".join(parts)


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    width: int = 760,
) -> str:
    """Bars per category, one colour per series, with a legend."""
    height, left, bottom, top_pad = 240, 60, 46, 28
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    peak = max((max(_value(v), 0) for _, values, _ in series for v in values), default=0) or 1
    group = plot_w / max(len(categories), 1)
    bar = min(group * 0.8 / max(len(series), 1), 60)
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for k, (name, _, color) in enumerate(series):
        parts.append(
            f'<rect x="{left + k * 170}" y="4" width="12" height="12" fill="{color}"/>'
            f'<text x="{left + k * 170 + 18}" y="14" font-size="12">{escape(name)}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'stroke="#9aa5b5"/>'
    )
    for i, category in enumerate(categories):
        x0 = left + i * group + (group - bar * len(series)) / 2
        for k, (name, values, color) in enumerate(series):
            h = min(max(_value(values[i]), 0) / peak * plot_h, plot_h)
            tip = f"<title>{escape(name)} {escape(category)}: {_num(values[i])}</title>"
            parts.append(
                f'<rect x="{x0 + k * bar:.1f}" y="{top_pad + plot_h - h:.1f}" '
                f'width="{bar - 2:.1f}" height="{h:.1f}" fill="{color}">{tip}</rect>'
            )
        parts.append(
            f'<text x="{left + i * group + group / 2:.1f}" y="{top_pad + plot_h + 16}" '
            f'text-anchor="middle" font-size="12">{escape(category)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    head = "".join(
        f'<th class="n">{escape(h)}</th>' if i >= numeric_from else f"<th>{escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(str(c))}</td>'
            if i >= numeric_from
            else f"<td>{escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _tile(value: str, label: str) -> str:
    return f'<div class="tile"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _overview(m: dict[str, Any], report: dict[str, Any]) -> str:
    coverage = report.get("coverage_seconds", {})
    speech = m["audio_duration"]
    inside_builder = coverage.get("builder", 0.0)
    inside_filtered = coverage.get("filtered", 0.0)
    bars = [
        ("speech in the input (all segments)", speech, _hours(speech)),
        ("inside builder windows", inside_builder, _hours(inside_builder)),
        ("inside filtered windows", inside_filtered, _hours(inside_filtered)),
    ]
    tiles = "".join(
        [
            _tile(f"{m['entries_written']:,}", "entries written"),
            _tile(f"{m['lines_rejected']:,}", "lines rejected"),
            _tile(f"{m['builder_windows']:,}", "builder windows"),
            _tile(f"{m['filtered_windows']:,}", "filtered windows"),
            _tile(_hours(m["filtered_dur"]), "filtered_dur (training audio)"),
            _tile(f"{m['truncation_events']:,}", "truncation events"),
        ]
    )
    share = _ratio(inside_filtered, speech)
    share_text = _percent(share)
    return (
        "<section id='overview'><h2>From audio to training windows</h2>"
        f"<div class='tiles'>{tiles}</div>{hbar_chart(bars)}"
        f"<p class='note'>{share_text} of the input speech (the segments' summed durations) "
        "lies inside at least one filtered window. Windows overlap and include silences, so "
        f"their summed durations (builder {_hours(m['builder_windows_duration'])}, filtered "
        f"{_hours(m['filtered_dur'])}) can exceed the speech they hold.</p></section>"
    )


def _losses(m: dict[str, Any]) -> str:
    losses = m["losses"]
    segments = m["segments"] or 1
    rows = [
        (
            label,
            losses[f"dur_{name}"],
            f"{losses[name]:,} segments, {_hours(losses[f'dur_{name}'])}",
        )
        for name, label in _LOSS_LABELS.items()
    ]
    table = _table(
        ["reason", "start segments", "share of segments", "duration"],
        [
            (
                label.strip(),
                f"{losses[name]:,}",
                f"{losses[name] / segments:.1%}",
                _hours(losses[f"dur_{name}"]),
            )
            for name, label in _LOSS_LABELS.items()
        ],
    )
    return (
        "<section id='losses'><h2>Where audio was lost</h2>"
        "<h3>Duration of the start segments whose window was lost, by reason</h3>"
        f"{hbar_chart(rows, color=ORANGE)}{table}"
        "<p class='note'>As in the reference, a loss is counted per start segment and its "
        "duration is that segment's, not the audio a window would have held. The two "
        "'of which' rows are part of 'no valid window', which counts windows outside the "
        "allowed duration or with fewer than two segments.</p></section>"
    )


def _distributions(report: dict[str, Any]) -> str:
    durations = report["window_duration"]
    edges = durations["edges"]
    duration_labels = [f"{(a + b) / 2:.0f}" for a, b in pairwise(edges)]
    speakers = report["window_speakers"]
    shares = report["dominant_share"]
    share_labels = [f"{e:.0%}" for e in shares["edges"][:-1]]
    charts = [
        (
            "Window duration",
            column_chart(duration_labels, durations["counts"], BLUE, x_title="seconds"),
        ),
        (
            "Speakers per window",
            column_chart(speakers["labels"], speakers["counts"], TEAL, x_title="distinct speakers"),
        ),
        (
            "Speaker balance",
            column_chart(
                share_labels, shares["counts"], ORANGE, x_title="main speaker's share of speech"
            ),
        ),
    ]
    body = "".join(f"<div><h3>{escape(t)}</h3>{svg}</div>" for t, svg in charts)
    total = sum(durations["counts"])
    return (
        f"<section id='windows'><h2>Training windows ({total:,} in filtered_windows)</h2>"
        f"<div class='row'>{body}</div></section>"
    )


def _rates(report: dict[str, Any]) -> str:
    rates = report.get("sample_rates", {})
    if not rates:
        return ""
    names = [f"{k} Hz" if k != "other" else k for k in rates]
    speech = [_ratio(v["speech_seconds"], 3600) for v in rates.values()]
    kept = [_ratio(v["speech_in_filtered_seconds"], 3600) for v in rates.values()]
    chart = grouped_bars(
        names, [("speech in (h)", speech, GREY), ("inside filtered windows (h)", kept, TEAL)]
    )
    rows = [
        (
            name,
            f"{v['entries']:,}",
            _hours(v["speech_seconds"]),
            _hours(v["speech_in_filtered_seconds"]),
            _percent(_ratio(v["speech_in_filtered_seconds"], v["speech_seconds"])),
            f"{v['filtered_windows']:,}",
            _hours(v["filtered_dur"]),
        )
        for name, v in zip(names, rates.values(), strict=True)
    ]
    header = ["sample rate", "entries", "speech", "inside filtered windows", "yield"]
    table = _table([*header, "filtered windows", "filtered_dur"], rows)
    return f"<section id='rates'><h2>Yield by sample rate</h2>{chart}{table}</section>"


def _rejected(m: dict[str, Any], report: dict[str, Any]) -> str:
    reasons = report.get("rejected_reasons", {})
    if not reasons:
        return (
            "<section id='rejected'><h2>Rejected lines</h2><p>None: every non-blank line "
            f"became an output entry ({m['blank_lines']:,} blank lines skipped).</p></section>"
        )
    rows = [(reason, f"{count:,}") for reason, count in reasons.items()]
    return (
        f"<section id='rejected'><h2>Rejected lines ({m['lines_rejected']:,})</h2>"
        f"{_table(['reason (positions removed)', 'lines'], rows)}"
        "<p class='note'>Each rejected line is in <code>_rejected/</code> with its file, line "
        "number, reason and text.</p></section>"
    )


def _settings(m: dict[str, Any]) -> str:
    run = m.get("run", {})
    rows = [
        (f"{section}.{key}", json.dumps(value))
        for section, values in m.get("config", {}).items()
        for key, value in values.items()
    ]
    rows = [
        ("input.manifest_path", json.dumps(run["input_paths"]))
        if name == "input.manifest_path" and "input_paths" in run
        else (name, value)
        for name, value in rows
    ]
    steps = [
        (f"  {step.replace('_', ' ')}", f"{sec:.1f} s")
        for step, sec in run.get("timings", {}).items()
    ]
    timing = [
        ("run id", run.get("run_id", "")),
        ("started", run.get("started_at", "")),
        ("finished", run.get("finished_at", "")),
        ("wall time", f"{run.get('wall_seconds', 0):.1f} s"),
        *steps,
        ("Spark", run.get("spark_version", "")),
        ("input files", run.get("input_files", "")),
        ("output part files", run.get("part_files", "")),
    ]
    return (
        "<section id='run'><div class='row'>"
        f"<div><h2>Configuration</h2>{_table(['setting', 'value'], rows, numeric_from=9)}</div>"
        f"<div><h2>Run</h2>{_table(['', ''], timing, numeric_from=9)}</div></div></section>"
    )


#: ``_rejected_audio/`` reasons as the report names them.
_AUDIO_REASON_LABELS = {
    "no_path": "no audio path in the entry",
    "scheme_not_allowed": "URL scheme not in audio.allowed_schemes",
    "outside_root": "path outside audio.root",
    "missing": "audio file missing",
    "unreadable": "audio file unreadable",
    "corrupt": "corrupt audio stream",
    "before_start": "window starts before 0",
    "past_end": "window ends past the file's end",
    "empty": "window shorter than one sample",
    "equal_shards": "left out to give every shard as many clips",
}


def _shard_balance(a: dict[str, Any]) -> str:
    """How evenly shards are filled: hours per shard, and the spread of each figure."""
    balance = a.get("shard_balance")  # older outputs lack it
    if not balance or not a.get("shards"):
        return ""
    histogram = balance["hours_histogram"]
    edges = histogram["edges"]
    labels = [f"{edges[n] * 60:.1f}" for n in range(len(histogram["counts"]))]
    chart = column_chart(labels, histogram["counts"], TEAL, x_title="minutes of audio per shard")
    scales = (("clips", "clips", 1.0, 0), ("minutes of audio", "hours", 60.0, 1),
              ("megabytes", "bytes", 1e-6, 1), ("recordings", "recordings", 1.0, 0))  # fmt: skip
    rows = [
        (name, *(f"{balance[key][end] * scale:,.{digits}f}" for end in ("min", "median", "max")))
        for name, key, scale, digits in scales
    ]
    table = _table(["per shard", "min", "median", "max"], rows)
    indexed = balance.get("shards", a["shards"])
    note = "" if indexed == a["shards"] else f" ({indexed:,} of {a['shards']:,}, those indexed)"
    return f"<h3>Shard balance{note}</h3>{chart}{table}"


def _audio(m: dict[str, Any]) -> str:
    """The audio step: clips and hours written, and lost by reason (in hours)."""
    a = m["audio"]
    lost = sum(a["clips_lost"].values())
    lost_hours = sum(a["seconds_lost"].values())
    each = a.get("clips_per_shard")  # equal shards
    shards = f"{escape(a['format'])} shards" + (f" of {each:,} clips" if each is not None else "")
    tiles = "".join(
        [
            _tile(f"{a['clips_written']:,}", "clips written"),
            _tile(_hours(a["seconds_written"]), "of audio in clips"),
            _tile(f"{a['shards']:,}", shards),
            _tile(f"{lost:,}", f"clips lost ({_hours(lost_hours)})"),
        ]
    )
    rows = [
        (label, a["seconds_lost"][reason], f"{a['clips_lost'][reason]:,} clips, "
         f"{_hours(a['seconds_lost'][reason])}")
        for reason, label in _AUDIO_REASON_LABELS.items()
        if reason in a["clips_lost"]  # older outputs lack the newer reasons
    ]  # fmt: skip
    table = _table(
        ["reason", "clips", "hours"],
        [
            (label, f"{a['clips_lost'][reason]:,}", _hours(a["seconds_lost"][reason]))
            for reason, label in _AUDIO_REASON_LABELS.items()
            if reason in a["clips_lost"]
        ],
    )
    return (
        "<section id='audio'><h2>Audio clips</h2>"
        f"<div class='tiles'>{tiles}</div>"
        "<h3>Windows whose clip could not be cut, by reason (hours of window)</h3>"
        f"{hbar_chart(rows, color=ORANGE)}{table}{_shard_balance(a)}"
        f"<p class='note'>{a['sample_rate']:,} Hz, {a['channels']} channel(s), "
        f"{escape(a['codec'])}; {a['files_rate_mismatch']:,} file(s) whose own rate differs "
        "from audio_sample_rate were decoded at their own rate. Every lost clip has a line "
        "in _rejected_audio/.</p></section>"
    )


def render_report(metrics: dict[str, Any]) -> str:
    """The report page for a finished run's ``_metrics.json`` content."""
    report = metrics.get("report") or {}
    run = metrics.get("run", {})
    title = f"ALM windows report: {run.get('output_path', '')}"
    header = (
        f"<header><h1>ALM windows report</h1><p>{escape(str(run.get('output_path', '')))}</p>"
        f"<p>{metrics['input_lines']:,} input lines from {run.get('input_files', '?')} file(s), "
        f"finished {escape(str(run.get('finished_at', '')))} in "
        f"{run.get('wall_seconds', 0):.1f} s</p></header>"
    )
    sections = [_overview(metrics, report), _losses(metrics)]
    if report:
        sections += [_distributions(report), _rates(report)]
    if metrics.get("audio"):
        sections.append(_audio(metrics))
    sections += [_rejected(metrics, report), _settings(metrics)]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"{header}<main>{''.join(sections)}</main></body></html>"
    )
