"""Inputs and outputs through symlinks: each physical file read once, by its real path;
an output really inside an input refused (issue 9, classes 2 and 3)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from alm_spark.config import load_config
from alm_spark.errors import OutputError
from alm_spark.run.job import run_pipeline
from alm_spark.storage.fs import FsspecFileSystem, local_path, real_location
from alm_spark.storage.io import resolve_manifest_paths
from alm_spark.testing.compare import iter_jsonl
from tests.conftest import TWO_SPEAKER_ENTRY

FIVE_LINES = [json.dumps({**TWO_SPEAKER_ENTRY, "n": n}) for n in range(4)] + ["not json"]


def _tree(root: Path) -> Path:
    """``d/a.jsonl`` (4 entries, 1 bad line), a loop ``d/loop -> d``, ``linkd -> d``."""
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.jsonl").write_text("\n".join(FIVE_LINES) + "\n")
    (root / "d" / "loop").symlink_to("../d", target_is_directory=True)
    (root / "linkd").symlink_to("d", target_is_directory=True)
    return root


def _run(spark, out: Path, *inputs: Path | str):
    listed = ", ".join(str(i) for i in inputs)
    cfg = load_config(None, [f"input.manifest_path=[{listed}]", f"output.path={out}"])
    return run_pipeline(spark, cfg).metrics


def test_local_path_and_real_location(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert local_path("file:/a/b") == local_path("file:///a/b") == "/a/b"
    assert local_path("file://localhost/a") == "/a"
    assert local_path("s3a://bucket/a") is None
    assert local_path("file://otherhost/a") is None
    real = f"file:{tmp_path}/d"
    assert real_location(f"file:{tmp_path}/linkd") == real
    assert real_location(f"file:{tmp_path}/d/loop/loop/./loop") == real
    assert real_location(f"file:{tmp_path}/linkd/new/x") == f"{real}/new/x"
    assert real_location("s3a://bucket/x/../y") == "s3a://bucket/x/../y"


def test_a_symlink_loop_is_read_once_and_reported(spark, tmp_path: Path, caplog) -> None:
    root = _tree(tmp_path)
    with caplog.at_level(logging.WARNING, logger="alm_spark"):
        m = _run(spark, tmp_path / "out", root / "d")
    assert (m["input_lines"], m["entries_written"], m["lines_rejected"]) == (5, 4, 1)
    assert m["run"]["input_files"] == 1
    skipped = [f"{root}/d/loop/ (the same directory as {root}/d/)"]
    assert m["run"]["inputs_skipped"] == skipped
    assert f"input: 1 path(s) not read again: {skipped[0]}" in caplog.text
    assert len(list(iter_jsonl(tmp_path / "out"))) == 4


def test_one_file_through_two_spellings_is_read_once(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    m = _run(
        spark, tmp_path / "out", root / "d" / "a.jsonl", root / "linkd", root / "linkd" / "a.jsonl"
    )
    assert (m["input_lines"], m["entries_written"]) == (5, 4)
    assert m["run"]["inputs_skipped"] == [
        f"{root}/linkd/a.jsonl (the same file as {root}/d/a.jsonl)",
        f"{root}/linkd/loop/ (the same directory as {root}/linkd/)",
        f"{root}/linkd/a.jsonl (the same file as {root}/d/a.jsonl)",
    ]


def test_a_local_source_is_its_real_path(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "alias.jsonl").symlink_to(root / "d" / "a.jsonl")
    (root / ".hidden.jsonl").write_text("still bad\n")
    (root / "shown.jsonl").symlink_to(".hidden.jsonl")  # Spark skips hidden names: read by link
    (root / "d" / "gone.jsonl").symlink_to(root / "nowhere.jsonl")
    m = _run(spark, tmp_path / "out", root / "alias.jsonl", root / "shown.jsonl", root / "d")
    assert (m["input_lines"], m["lines_rejected"]) == (6, 2)
    sources = sorted(r["source"] for r in iter_jsonl(tmp_path / "out" / "_rejected"))
    assert sources == [f"file:{root}/d/a.jsonl", f"file:{root}/shown.jsonl"]
    assert m["run"]["inputs_skipped"] == [
        f"{root}/d/a.jsonl (the same file as {root}/alias.jsonl)",
        f"{root}/d/gone.jsonl (a broken symlink)",
        f"{root}/d/loop/ (the same directory as {root}/d/)",
    ]


def test_sources_name_each_physical_file_once(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    sources = resolve_manifest_paths(FsspecFileSystem(), [str(root / "linkd"), str(root / "d")])
    assert sources.files == (f"file:{root}/d/a.jsonl",)
    assert sources.local_directories == (f"file:{root}/d",)
    assert sources.directories == ()
    assert sources.local_bytes == os.path.getsize(root / "d" / "a.jsonl")


def test_an_output_inside_an_input_through_a_symlink_is_refused(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(OutputError) as err:
        _run(spark, root / "linkd" / "out", root / "d")
    assert str(err.value) == (
        f"output.path: file:{root}/linkd/out is inside the input directory file:{root}/d "
        f"(it is file:{root}/d/out); a later run would read the output as input"
    )
    assert not (root / "d" / "out").exists()
    # And an output whose real location holds an input named through a symlink.
    (root / "outlink").symlink_to("d", target_is_directory=True)
    with pytest.raises(OutputError, match=r"contains the input file:.*/d/a\.jsonl$"):
        _run(spark, root / "outlink", root / "linkd" / "a.jsonl")
    assert sorted(p.name for p in (root / "d").iterdir()) == ["a.jsonl", "loop"]


def test_trees_without_symlinks_are_listed_by_spark_whole(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "a.jsonl").write_text("{}\n")
    (tmp_path / "real" / "sub" / "b.json").write_text("{}\n")
    (tmp_path / "link").symlink_to("real", target_is_directory=True)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "c.jsonl").write_text("{}\n")
    (tmp_path / "mixed" / "to_a.jsonl").symlink_to(tmp_path / "real" / "a.jsonl")
    fs = FsspecFileSystem()
    sources = resolve_manifest_paths(fs, [str(tmp_path / "link"), str(tmp_path / "mixed")])
    assert sources.directories == (f"file:{tmp_path}/real",)  # by its real path
    assert sources.files == (f"file:{tmp_path}/mixed/c.jsonl",)
    assert sources.skipped == (
        f"{tmp_path}/mixed/to_a.jsonl (the same file as {tmp_path}/link/a.jsonl)",
    )
    # A tree holding a directory already read is named file by file.
    sources = resolve_manifest_paths(fs, [str(tmp_path / "real" / "sub"), str(tmp_path / "real")])
    assert sources.directories == (f"file:{tmp_path}/real/sub",)
    assert sources.files == (f"file:{tmp_path}/real/a.jsonl",)
