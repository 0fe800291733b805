"""The fused engine: every line's whole job in one ``mapInArrow`` where it was read.

A plain function over ``pyarrow.RecordBatch`` iterators, testable without Spark.
One manifest line is one complete entry, so all the work for a line happens in the
task that read it: decode, build windows, filter overlaps, render. No shuffle carries
recordings anywhere.

Rows of one input split arrive in file order, so the function also counts the
lines of every split it sees. Those counts (``block`` rows) let the driver turn
"row k of the split starting at byte B" into a line number for rejected lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import unquote

import pyarrow as pa

from alm_spark.algorithm.render import dumps
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.engines.results import Counter, LineTask, is_blank, texts
from alm_spark.names import KIND_BLOCK


def map_line_batches(
    batches: Iterator[pa.RecordBatch],
    builder: BuilderConfig,
    overlap: OverlapConfig,
    *,
    lost_windows: str = "inline",
    windows_table: bool = False,
    audio_path_field: str | None = None,
    line_offsets: Mapping[tuple[str, int], int] | None = None,
    progress: Counter | None = None,
) -> Iterator[pa.RecordBatch]:
    """Turn batches of ``(source, block_start, value)`` lines into result rows.

    Args:
        batches: Input lines (schema :data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`),
            rows of one split contiguous and in file order, as Spark's scan yields them.
        builder: Builder settings.
        overlap: Overlap-filter settings.
        lost_windows: ``inline``, ``separate`` or ``drop`` (``output.lost_window_details``).
        windows_table: Also emit one ``window`` record per filtered window.
        audio_path_field: With window rows, also carry this manifest field as ``audio_path``
            (``audio.path_field``, for the audio step).
        line_offsets: Lines before each ``(source, block_start)`` split, needed to key
            separate lost-window and windows-table records by line number.
        progress: Counts processed non-blank lines, once per input batch.

    Yields:
        Batches of :data:`~alm_spark.storage.schemas.RESULT_ARROW_SCHEMA`: one ``entry`` or
        ``rejected`` row per non-blank line (plus ``lost`` and ``window`` rows when
        asked for), then one ``block`` row per split and the task's ``report`` rows.

    Raises:
        RuntimeError: When a split has no line count (the input was split differently
            when its lines were counted).
    """
    keyed = lost_windows == "separate" or windows_table
    if keyed and line_offsets is None:
        raise ValueError("separate lost windows and the windows table need line_offsets")
    task = LineTask(
        builder,
        overlap,
        lost_windows,
        windows_table=windows_table,
        audio_path_field=audio_path_field,
    )
    blocks: dict[tuple[str, int], list[int]] = {}
    current: tuple[str, int] | None = None
    row = -1
    tally = [0, 0]
    offset = 0
    for batch in batches:
        sources = batch.column("source").to_pylist()
        starts = batch.column("block_start").to_pylist()
        processed = 0
        for source, block_start, text in zip(
            sources, starts, texts(batch.column("value")), strict=True
        ):
            if (source, block_start) != current:
                current, row = (source, block_start), 0
                tally = blocks.setdefault(current, [0, 0])
                if line_offsets is not None:
                    found = line_offsets.get(current)
                    if found is None:
                        raise RuntimeError(
                            f"no line count for the split of {source} at byte {block_start}: "
                            "the input was split differently when its lines were counted"
                        )
                    offset = found
            else:
                row += 1
            tally[0] += 1
            if text is None or is_blank(text):
                tally[1] += 1
                continue
            processed += 1
            path = unquote(source)
            location = {"source": path, "block_start": block_start, "row": row}
            key = (path, offset + row + 1) if keyed else None
            yield from task.render_line(location, text, key)
        if progress is not None and processed:
            progress.add(processed)
    for (source, block_start), (lines, blank) in blocks.items():
        record = {"source": unquote(source), "block_start": block_start, "lines": lines}
        task.out.add(KIND_BLOCK, dumps(record), {"lines": lines, "blank_lines": blank})
    yield from task.finish(seen_input=bool(blocks))
