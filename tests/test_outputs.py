"""What tasks write into the output (alm_spark.storage.outputs), without Spark."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alm_spark import rows
from alm_spark.storage.datafiles import NO_SPACE_WRITING, DataFile, StepNames
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.storage.outputs import (
    FileNames,
    ResultFiles,
    write_empty_table,
    write_line_batches,
    write_result_batches,
)
from alm_spark.storage.publish import drop_unrecorded

NAMES = StepNames(3, 7, "20261206T000000Z-0123abcd")
PREFIX = "part-0003-000007-20261206T000000Z-0123abcd-00000-0"

WINDOW_ROW = {
    "source": "/in/a.jsonl", "line": 2, "audio_filepath": "a.wav", "swift_audio_filepath": None,
    "audio_sample_rate": 16000.0, "position": 0, "window": 1, "start": 0.5, "end": 10.0,
    "duration": 9.5, "speakers": {"x": 5.0, "y": 4.5}, "speaker_durations": [5.0, 4.5],
    "segments": [{"start": 0.5, "end": 10.0, "speaker": "x", "text": None}], "text": "",
}  # fmt: skip


def _batch(*items: tuple[str, str, dict[str, Any]]) -> pa.RecordBatch:
    """RESULT rows from ``(kind, record, figures)``."""
    return pa.RecordBatch.from_pylist(
        [
            dict.fromkeys(rows.RESULT.names) | {"kind": kind, "record": record} | figures
            for kind, record, figures in items
        ],
        schema=rows.RESULT.arrow_schema(),
    )


def _open_step(out: Path) -> None:
    """What the driver does before a step's jobs: its fence file."""
    fence = Path(NAMES.fence(str(out)))
    fence.parent.mkdir(parents=True, exist_ok=True)
    fence.write_text("")


def _data_files(out: Path) -> list[Path]:
    """The files in ``out``, the step's scratch folder (the fence) aside."""
    return sorted(p for p in out.rglob("*") if p.is_file() and "_scratch" not in p.parts)


def _files(tmp_path: Path, **options: Any) -> ResultFiles:
    """The step's files under ``tmp_path/out``, whose folders the driver has made."""
    for folder in ("", "_lost_windows", "_windows"):
        (tmp_path / "out" / folder).mkdir(parents=True, exist_ok=True)
    _open_step(tmp_path / "out")
    root = str(tmp_path / "out")
    settings: dict[str, Any] = {
        "entries": FileNames(root, "", NAMES),
        "lost": FileNames(root, "_lost_windows", NAMES),
        "windows": FileNames(root, "_windows", NAMES),
        "format": "jsonl",
        "codec": "none",
    }
    return ResultFiles(**(settings | options))


def _rows(batches: Iterator[pa.RecordBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


def _task_rows() -> list[pa.RecordBatch]:
    return [
        _batch(
            ("entry", '{"n": 1}', {"windows": 2, "total_dur": 1.5}),
            ("lost", '{"lost": 1}', {}),
            ("window", json.dumps(WINDOW_ROW), {}),
            ("rejected", '{"error": "bad"}', {"internal_errors": 0}),
        ),
        _batch(("entry", '{"n": "\u00e9"}', {"windows": 1}), ("block", '{"lines": 3}', {})),
    ]


def test_entries_lost_windows_and_table_are_written_and_the_rest_passed_on(
    tmp_path: Path,
) -> None:
    out = _rows(write_result_batches(iter(_task_rows()), _files(tmp_path)))
    kinds = [
        (row["kind"], row["record"], row["windows"]) for row in out if row["kind"] != "data_file"
    ]
    assert kinds == [
        ("entry", "", 2), ("rejected", '{"error": "bad"}', None), ("entry", "", 1),
        ("block", '{"lines": 3}', None),
    ]  # fmt: skip
    written = [json.loads(row["record"]) for row in out if row["kind"] == "data_file"]
    entry_bytes = len('{"n": 1}\n{"n": "\u00e9"}\n'.encode())
    assert written == [
        {"path": f"{PREFIX}.jsonl", "holds": "entry", "rows": 2, "bytes": entry_bytes},
        {"path": f"_lost_windows/{PREFIX}.jsonl", "holds": "lost", "rows": 1, "bytes": 12},
        {"path": f"_windows/{PREFIX}.snappy.parquet", "holds": "window", "rows": 1,
         "bytes": (tmp_path / "out" / "_windows" / f"{PREFIX}.snappy.parquet").stat().st_size},
    ]  # fmt: skip
    root = tmp_path / "out"
    assert (root / f"{PREFIX}.jsonl").read_text() == '{"n": 1}\n{"n": "\u00e9"}\n'
    assert (root / "_lost_windows" / f"{PREFIX}.jsonl").read_text() == '{"lost": 1}\n'
    assert pq.read_table(root / "_windows").to_pylist() == [
        WINDOW_ROW | {"speakers": [("x", 5.0), ("y", 4.5)]}
    ]
    assert sorted(p.name for p in root.rglob(".*")) == []  # no temporary file left


def test_window_rows_are_passed_on_for_the_audio_step(tmp_path: Path) -> None:
    files = _files(tmp_path, lost=None, pass_windows=True)
    out = _rows(write_result_batches(iter(_task_rows()), files))
    kinds = ["entry", "window", "rejected", "entry", "block", "data_file", "data_file"]
    assert [row["kind"] for row in out] == kinds  # entries and table written, lost dropped
    assert json.loads(out[1]["record"]) == WINDOW_ROW


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_lines(tmp_path: Path, codec: str) -> None:
    files = _files(tmp_path, codec=codec, lost=None, windows=None)
    _rows(write_result_batches(iter(_task_rows()), files))
    (part,) = (tmp_path / "out").glob("part-*")
    if codec == "gzip":
        assert part.name == f"{PREFIX}.jsonl.gz"
        text = gzip.decompress(part.read_bytes()).decode()
    else:
        assert part.name == f"{PREFIX}.jsonl.zst"
        with pa.input_stream(str(part), compression="zstd") as stream:
            text = stream.read().decode()
    assert text == '{"n": 1}\n{"n": "\u00e9"}\n'


def test_parquet_entries_keep_their_figures(tmp_path: Path) -> None:
    files = _files(tmp_path, format="parquet", codec="zstd", lost=None, windows=None)
    _rows(write_result_batches(iter(_task_rows()), files))
    (part,) = (tmp_path / "out").glob("part-*")
    assert part.name == f"{PREFIX}.zstd.parquet"
    table = pq.read_table(part)
    assert table.column_names == [
        "entry", "total_segments", "windows", "filtered_windows", "filtered_pairs",
        "truncation_events", "total_dur", "filtered_dur",
    ]  # fmt: skip
    assert table.select(["entry", "windows", "total_dur"]).to_pylist() == [
        {"entry": '{"n": 1}', "windows": 2, "total_dur": 1.5},
        {"entry": '{"n": "\u00e9"}', "windows": 1, "total_dur": None},
    ]


def test_a_failing_task_leaves_no_file(tmp_path: Path) -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield from _task_rows()
        raise RuntimeError("the task failed")

    with pytest.raises(RuntimeError, match="the task failed"):
        _rows(write_result_batches(failing(), _files(tmp_path)))
    assert _data_files(tmp_path / "out") == []


@pytest.mark.parametrize(("output_format", "codec"), [("jsonl", "zstd"), ("parquet", "snappy")])
def test_a_task_failing_while_committing_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_format: str, codec: str
) -> None:
    """The entry file is committed, the lost-window file's commit fails: both go."""
    real = DataFile.commit

    def commit(self: DataFile) -> int:
        if "_lost_windows" in self.url:
            raise OSError(28, "No space left on device")
        return real(self)

    monkeypatch.setattr(DataFile, "commit", commit)
    files = _files(tmp_path, format=output_format, codec=codec)
    with pytest.raises(OSError, match="No space left"):
        _rows(write_result_batches(iter(_task_rows()), files))
    assert _data_files(tmp_path / "out") == []


def test_a_full_disk_names_the_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write error names no file; the driver needs to know it was the output's disk."""
    (tmp_path / "out").mkdir()
    file = DataFile(str(tmp_path / "out" / "part-x.jsonl"))

    def full(data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file.handle, "write", full)
    with pytest.raises(
        OSError, match=rf"^\[Errno 28\] {NO_SPACE_WRITING} .*part-x\.jsonl$"
    ) as raised:
        file.write(b"line\n")
    assert raised.value.errno == 28
    file.abort()
    assert sorted((tmp_path / "out").iterdir()) == []


def test_a_taken_name_is_never_overwritten(tmp_path: Path) -> None:
    files = _files(tmp_path)
    (tmp_path / "out" / f"{PREFIX}.jsonl").write_text("earlier\n")
    with pytest.raises(FileExistsError, match="never overwritten"):
        _rows(write_result_batches(iter(_task_rows()), files))
    assert (tmp_path / "out" / f"{PREFIX}.jsonl").read_text() == "earlier\n"


def test_a_task_never_brings_back_a_removed_folder(tmp_path: Path) -> None:
    """A task of a failed job that Spark has not stopped yet, after the driver removed the
    run's folder: its write fails, and the folder stays gone."""
    files = _files(tmp_path)
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        _rows(write_result_batches(iter(_task_rows()), files))
    assert sorted(tmp_path.iterdir()) == []


def test_a_late_task_of_an_abandoned_step_commits_nothing(tmp_path: Path) -> None:
    """A task of a failed job that is still running when the driver abandons the step
    (Spark 3.5's run on after the job failed): the fence is gone, so its file is dropped
    at commit, even though its folder is still there."""
    files = _files(tmp_path)
    shutil.rmtree(tmp_path / "out" / "_scratch")  # the driver's abandon
    with pytest.raises(OSError, match="its commit step was abandoned; the file is dropped"):
        _rows(write_result_batches(iter(_task_rows()), files))
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == []


def test_lines_of_one_task_go_to_one_file(tmp_path: Path) -> None:
    (tmp_path / "out" / "_rejected").mkdir(parents=True)
    _open_step(tmp_path / "out")
    where = FileNames(str(tmp_path / "out"), "_rejected", NAMES)
    batches = [
        pa.RecordBatch.from_pylist([{"value": '{"line": 6}'}, {"value": '{"line": 9}'}]),
        pa.RecordBatch.from_pylist([{"value": '{"line": 12}'}]),
    ]
    (row,) = _rows(write_line_batches(iter(batches), where, "none"))
    assert row == {"path": f"_rejected/{PREFIX}.jsonl", "holds": "rejected", "rows": 3, "bytes": 37}
    assert (
        tmp_path / "out" / row["path"]
    ).read_text() == '{"line": 6}\n{"line": 9}\n{"line": 12}\n'
    assert _rows(write_line_batches(iter([]), where, "gzip")) == []  # no lines, no file


def test_an_empty_table_has_the_columns(tmp_path: Path) -> None:
    (tmp_path / "out" / "_windows").mkdir(parents=True)
    _open_step(tmp_path / "out")
    where = FileNames(str(tmp_path / "out"), "_windows", NAMES)
    path = write_empty_table(where, rows.WINDOW)
    table = pq.read_table(tmp_path / "out" / path)
    assert (table.num_rows, table.column_names) == (0, rows.WINDOW.names)


def test_files_no_committed_attempt_reported_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    for name in (
        f"{PREFIX}.jsonl",  # reported
        "part-0003-000007-20261206T000000Z-0123abcd-00001-9.jsonl",  # a retried attempt's
        ".part-0003-000007-20261206T000000Z-0123abcd-00002-4.jsonl.1f2e3d4c.tmp",  # killed
        "_rejected/part-0003-000007-20261206T000000Z-0123abcd-00000-5.jsonl",  # reported
        "_rejected/part-0003-000007-20261206T000000Z-0123abcd-00001-6.jsonl",  # speculative
        "_metrics.json",  # not a data file
        "_data/kind=block/part-00000.txt",  # not in a data folder
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    recorded = {
        f"{PREFIX}.jsonl",
        "_rejected/part-0003-000007-20261206T000000Z-0123abcd-00000-5.jsonl",
    }
    other_step = "part-0002-000001-20261205T000000Z-89abcdef-00000-1.jsonl"  # live, say
    (root / other_step).write_text("x\n")
    dropped = drop_unrecorded(
        FsspecFileSystem(), str(root), ("", "_rejected", "_windows"), NAMES.prefix, recorded
    )
    assert dropped == 3
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    kept = [*recorded, other_step, "_metrics.json", "_data/kind=block/part-00000.txt"]
    assert left == sorted(kept)
