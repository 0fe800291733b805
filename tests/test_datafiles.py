"""Data files written once under their final names (alm_spark.storage.datafiles)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from alm_spark.storage.datafiles import StepNames, renames_are_free, step_prefix, write_once


def test_names_sort_by_generation_and_step_and_differ_by_run_and_attempt() -> None:
    names = StepNames(2, 31, "20261206T045516Z-3f9a1c2b")
    name = names.name(7, 41, ".jsonl")
    assert name == "part-0002-000031-20261206T045516Z-3f9a1c2b-00007-41.jsonl"
    assert name.startswith(names.prefix)
    assert names.name(7, 42, ".jsonl") != name
    assert StepNames(2, 31, "20261207T000000Z-00000000").name(7, 41, ".jsonl") != name
    assert sorted([step_prefix(1, 10), step_prefix(1, 9), step_prefix(2, 1)]) == [
        "part-0001-000009-",
        "part-0001-000010-",
        "part-0002-000001-",
    ]


@pytest.mark.parametrize(
    ("protocol", "path", "free"),
    [
        (("file", "local"), "/data/out/part-1.jsonl", True),
        ("hdfs", "/user/x/out/part-1.jsonl", True),
        (("file", "local"), "/Volumes/cat/sch/vol/out/part-1.jsonl", False),
        (("file", "local"), "/dbfs/mnt/out/part-1.jsonl", False),
        (("s3", "s3a"), "bucket/out/part-1.jsonl", False),
        (("gs", "gcs"), "bucket/out/part-1.jsonl", False),
        ("memory", "/out/part-1.jsonl", False),
    ],
)
def test_only_local_disks_and_hdfs_rename(protocol, path: str, free: bool) -> None:
    assert renames_are_free(protocol, path) is free


def test_a_local_file_appears_whole_under_its_name(tmp_path: Path) -> None:
    target = tmp_path / "out" / "part-0001-000001-r-00000-0.jsonl"
    assert write_once(str(target), [b"a\n", b"b\n"]) == 4
    assert target.read_bytes() == b"a\nb\n"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def _failing() -> Iterator[bytes]:
    yield b"half"
    raise RuntimeError("the task died")


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_failed_write_leaves_nothing(tmp_path: Path, where: str) -> None:
    url = str(tmp_path / "out" / "part.jsonl") if where == "local" else "memory://wo/out/part.jsonl"
    with pytest.raises(RuntimeError, match="the task died"):
        write_once(url, _failing())
    fs, path = fsspec.core.url_to_fs(url)
    folder = path.rsplit("/", 1)[0]
    left = fs.ls(folder) if fs.exists(folder) else []
    assert left == []


def test_a_data_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "part.jsonl"
    write_once(str(target), [b"first\n"])
    with pytest.raises(FileExistsError, match="a data file is never overwritten"):
        write_once(str(target), [b"second\n"])
    assert target.read_bytes() == b"first\n"


def test_an_object_store_gets_one_upload_under_the_final_name() -> None:
    fs = fsspec.filesystem("memory")
    url = "memory://once/out/part.jsonl"
    assert write_once(url, [b"x" * 10]) == 10
    assert fs.cat("/once/out/part.jsonl") == b"x" * 10
    assert fs.ls("/once/out", detail=False) == ["/once/out/part.jsonl"]
