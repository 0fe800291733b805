"""What a person reads at the end of a run: the summary block and readable sizes."""

from __future__ import annotations

from typing import Any

from alm_spark.core.names import LOSS_COUNTERS, REJECTED_DIR


def format_bytes(size: float) -> str:
    """Human-readable size."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def format_summary(metrics: dict[str, Any], output_path: str) -> str:
    """The end-of-run block the CLI prints, from a run's ``_metrics.json`` content."""
    m = metrics
    losses = m["losses"]
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
        f"Segments:            {m['segments']:>10}   ({m['audio_duration'] / 3600:.2f} h of audio)",
        f"Builder windows:     {m['builder_windows']:>10}",
        f"Filtered windows:    {m['filtered_windows']:>10}",
        f"Filtered duration:   {m['filtered_dur']:>10.1f} s ({m['filtered_dur'] / 3600:.2f} h)",
        f"Truncation events:   {m['truncation_events']:>10}",
        f"Losses (segments):   {loss_text}",
        f"Output:              {output_path}",
        f"Wall time:           {run['wall_seconds']:.1f} s",
        rule,
    ]
    if m["internal_errors"]:
        lines.insert(
            -1, f"WARNING: {m['internal_errors']} line(s) hit an internal error; see _rejected/"
        )
    return "\n".join(lines)
