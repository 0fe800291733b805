"""What a person reads at the end of a run: the summary block and readable sizes."""

from __future__ import annotations

from typing import Any

from alm_spark.names import LOSS_COUNTERS, REJECTED_AUDIO_DIR, REJECTED_DIR


def format_bytes(size: float) -> str:
    """Human-readable size."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


#: From here on a figure is shown with three significant digits (``4.72e+304``).
LARGE_FIGURE = 1e12
#: What a total that overflowed a double (null in ``_metrics.json``) is shown as.
OVERFLOW = "overflow"


def format_figure(value: float | None, decimals: int = 2) -> str:
    """A figure a person can read: fixed decimals, three significant digits when huge.

    None is a total that overflowed a double (see :func:`~alm_spark.report.figures.mark_overflows`).
    """
    if value is None:
        return OVERFLOW
    if abs(value) >= LARGE_FIGURE:
        return f"{value:.3g}"
    return f"{value:.{decimals}f}"


def format_hours(seconds: float | None) -> str:
    """Seconds as readable hours (``2.08 h``), or ``overflow``."""
    return OVERFLOW if seconds is None else f"{format_figure(seconds / 3600)} h"


def _audio_lines(m: dict[str, Any], output_path: str) -> list[str]:
    audio = m.get("audio")
    if not audio:
        return []
    lost = sum(audio["clips_lost"].values())
    return [
        f"Audio clips:         {audio['clips_written']:>10}   "
        f"({format_hours(audio['seconds_written'])} in {audio['shards']} shard(s))",
        f"Audio clips lost:    {lost:>10}"
        + (f"   see {output_path}/{REJECTED_AUDIO_DIR}/" if lost else ""),
    ]


def format_summary(metrics: dict[str, Any], output_path: str) -> str:
    """The end-of-run block the CLI prints, from a run's ``_metrics.json`` content."""
    m = metrics
    if "recut_from" in m:
        return _recut_summary(m, output_path)
    losses = m["losses"]
    audio, filtered = m["audio_duration"], m["filtered_dur"]
    audio_text = f"{format_hours(audio)} of audio" if audio is not None else "audio: overflow"
    loss_text = "  ".join(f"{name.removeprefix('lost_')}={losses[name]}" for name in LOSS_COUNTERS)
    run = m["run"]
    rule = "=" * 64
    lines = [
        rule,
        "ALM PIPELINE COMPLETE",
        rule,
        f"Input lines:         {m['input_lines']:>10}   (non-blank, from {run['input_files']} "
        f"file(s); {m['blank_lines']} blank line(s) skipped)",
        f"Entries written:     {m['entries_written']:>10}",
        f"Lines rejected:      {m['lines_rejected']:>10}"
        + (f"   see {output_path}/{REJECTED_DIR}/" if m["lines_rejected"] else ""),
        f"Segments:            {m['segments']:>10}   ({audio_text})",
        f"Builder windows:     {m['builder_windows']:>10}",
        f"Filtered windows:    {m['filtered_windows']:>10}",
        f"Filtered duration:   {format_figure(filtered, 1):>10} s ({format_hours(filtered)})",
        f"Truncation events:   {m['truncation_events']:>10}",
        f"Losses (segments):   {loss_text}",
        *_audio_lines(m, output_path),
        f"Output:              {output_path}",
        f"Wall time:           {run['wall_seconds']:.1f} s",
        rule,
    ]
    if m["internal_errors"]:
        lines.insert(
            -1, f"WARNING: {m['internal_errors']} line(s) hit an internal error; see _rejected/"
        )
    overflowed = m.get("overflowed") or []
    if overflowed:
        shown = ", ".join(overflowed[:5]) + (
            f" and {len(overflowed) - 5} more" if len(overflowed) > 5 else ""
        )
        lines.insert(
            -1,
            f"NOTE: {len(overflowed)} total(s) exceed the largest double, shown as "
            f"{OVERFLOW} (null in _metrics.json): {shown}",
        )
    return "\n".join(lines)


def _recut_summary(m: dict[str, Any], output_path: str) -> str:
    """The block ``alm-spark recut`` prints: the windows it read, the clips it wrote."""
    rule = "=" * 64
    return "\n".join(
        [
            rule,
            "ALM AUDIO RE-CUT COMPLETE",
            rule,
            f"Windows from:        {m['recut_from']}",
            f"Filtered windows:    {m['filtered_windows']:>10}",
            *_audio_lines(m, output_path),
            f"Output:              {output_path}",
            f"Wall time:           {m['run']['wall_seconds']:.1f} s",
            rule,
        ]
    )
