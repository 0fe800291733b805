"""Both engines' per-entry logic without Spark, for sweeps against the oracle.

``fused`` renders a line directly. ``dataframe`` goes the way the DataFrame engine
does: the line's typed segment fields as exploded rows, the builder's grouped
function, the overlap filter's grouped function, then the renderer fed with the
results rebuilt from those rows. Only Spark's row transport is left out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from alm_spark.algorithm.entry import decode_line, parse_entry
from alm_spark.algorithm.render import EntryRenderer, LineOutcome, RowOptions
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.engines.grouped import (
    ROW_STATS,
    ROW_WINDOW,
    SEGMENT_COLUMNS,
    STATS_COLUMNS,
    WINDOW_COLUMNS,
    build_entry,
    filter_entry,
    rebuild_results,
    segment_fields,
)

KEY_NAMES = ("source", "line")
KEY = ("file:/in.jsonl", 1)


def segment_rows(line: str) -> pd.DataFrame:
    """The exploded segment rows of one valid line, as explode_segments gives them."""
    data = decode_line(line)
    table = parse_entry(data).table
    rate = data.get("audio_sample_rate")
    rows: list[dict[str, Any]] = [
        {"segment": k, "audio_sample_rate": rate, **segment_fields(seg, bw)}
        for k, (seg, bw) in enumerate(zip(table.segments, table.bandwidth.tolist(), strict=True))
    ]
    if not rows:  # explode_outer keeps an entry without segments as one null row
        rows = [dict.fromkeys(SEGMENT_COLUMNS)]
        rows[0]["audio_sample_rate"] = rate
    frame = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    frame.insert(0, "line", KEY[1])
    frame.insert(0, "source", KEY[0])
    return frame


def dataframe_outcome(
    line: str, builder: BuilderConfig, overlap: OverlapConfig, lost_windows: str = "inline"
) -> LineOutcome:
    """Render a line the way the DataFrame engine does."""
    built = build_entry(KEY, segment_rows(line), KEY_NAMES, builder)
    windows = built[built["kind"] == ROW_WINDOW][[*KEY_NAMES, *WINDOW_COLUMNS]]
    stats = built[built["kind"] == ROW_STATS].iloc[0][list(STATS_COLUMNS)].to_dict()
    kept = filter_entry(KEY, windows, KEY_NAMES, overlap) if len(windows) else windows

    def results(table: Any) -> Any:
        return rebuild_results(
            table, builder, stats, windows.to_dict("records"), kept.to_dict("records")
        )

    renderer = EntryRenderer(builder, overlap, RowOptions(lost_windows=lost_windows))
    return renderer.render(line, KEY if lost_windows == "separate" else None, results)


def engine_outcome(
    engine: str, line: str, builder: BuilderConfig, overlap: OverlapConfig
) -> LineOutcome:
    """One line's outcome through ``engine``'s per-entry logic."""
    if engine == "dataframe":
        return dataframe_outcome(line, builder, overlap)
    return EntryRenderer(builder, overlap).render(line)
