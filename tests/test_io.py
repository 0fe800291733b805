"""Finding and reading manifests."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from alm_spark.errors import InputError
from alm_spark.storage.fs import FsspecFileSystem, HadoopFileSystem
from alm_spark.storage.io import check_local_inputs, read_manifest_lines, resolve_manifest_paths


def _tree(root: Path) -> Path:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.jsonl").write_text('{"n": 1}\n\n{"n": 2}\n')
    (root / "d" / "sub" / "b.json").write_text('{"n": 3}\n')
    with gzip.open(root / "d" / "sub" / "c.jsonl.gz", "wt") as handle:
        handle.write('{"n": 4}\n')
    (root / "d" / "notes.txt").write_text("not a manifest\n")
    (root / "d" / "_hidden.jsonl").write_text('{"n": 99}\n')
    (root / "d" / ".dot.jsonl").write_text('{"n": 98}\n')
    (root / "other.txt").write_text('{"n": 5}\n')
    return root


def _values(df) -> list[str]:
    return sorted(r.value for r in df.collect())


def test_directories_are_searched_for_manifests_only(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    fs = HadoopFileSystem(spark)
    df = read_manifest_lines(spark, resolve_manifest_paths(fs, [str(root / "d")]))
    assert _values(df) == ["", '{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}']
    assert df.columns == ["source", "block_start", "value"]
    assert {r.source.rsplit("/", 1)[1] for r in df.collect()} == {"a.jsonl", "b.json", "c.jsonl.gz"}


def test_named_files_are_read_whatever_their_name(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    fs = HadoopFileSystem(spark)
    sources = resolve_manifest_paths(fs, [str(root / "other.txt"), str(root / "d" / "a.jsonl")])
    assert _values(read_manifest_lines(spark, sources)) == ["", '{"n": 1}', '{"n": 2}', '{"n": 5}']


def test_globs_expand_to_files_and_directories(spark, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    fs = HadoopFileSystem(spark)
    sources = resolve_manifest_paths(fs, [str(root / "d" / "s*")])
    assert [p.rsplit("/", 1)[1] for p in sources.local_directories] == ["sub"]
    assert _values(read_manifest_lines(spark, sources)) == ['{"n": 3}', '{"n": 4}']


def test_hidden_files_named_explicitly_are_refused(spark, tmp_path: Path) -> None:
    fs = HadoopFileSystem(spark)
    (tmp_path / "_part.jsonl").write_text("{}\n")
    (tmp_path / "a.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match=r"names start with '_' or '\.'; rename"):
        resolve_manifest_paths(fs, [str(tmp_path / "_part.jsonl")])
    # A glob skips hidden names, as a directory read does.
    sources = resolve_manifest_paths(fs, [str(tmp_path / "*.jsonl")])
    assert [p.rsplit("/", 1)[1] for p in sources.files] == ["a.jsonl"]


def test_missing_and_empty_inputs_are_refused(spark, tmp_path: Path) -> None:
    fs = HadoopFileSystem(spark)
    with pytest.raises(InputError, match=r"input\.manifest_path: no such file or directory"):
        resolve_manifest_paths(fs, [str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="the pattern matches nothing"):
        resolve_manifest_paths(fs, [str(tmp_path / "*.jsonl")])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("{}\n")
    sources = resolve_manifest_paths(fs, [str(tmp_path / "empty")])
    with pytest.raises(InputError, match="no manifest files"):
        read_manifest_lines(spark, sources)


def test_check_local_inputs(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("{}\n")
    check_local_inputs([str(tmp_path / "a.jsonl"), str(tmp_path / "*.jsonl"), "s3a://bucket/x"])
    with pytest.raises(InputError, match=r"^input.manifest_path: no such file or directory: "):
        check_local_inputs([str(tmp_path / "b.jsonl")])


@pytest.mark.parametrize("kind", [pytest.param("hadoop", marks=pytest.mark.spark), "fsspec"])
def test_file_systems(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    fs = (
        HadoopFileSystem(request.getfixturevalue("spark"))
        if kind == "hadoop"
        else FsspecFileSystem()
    )
    base = str(tmp_path)
    assert fs.qualify(base).startswith("file:")
    fs.mkdirs(f"{base}/a/b")
    fs.write_text(f"{base}/a/b/x.json", '{"é": 1}\n')
    assert fs.read_text(f"{base}/a/b/x.json") == '{"é": 1}\n'
    assert fs.exists(f"{base}/a/b/x.json")
    assert not fs.is_dir(f"{base}/a/b/x.json")
    assert fs.is_dir(f"{base}/a")
    fs.rename(f"{base}/a/b/x.json", f"{base}/a/y.json")
    names = sorted(info.path.rsplit("/", 1)[1] for info in fs.list_dir(f"{base}/a"))
    assert [n for n in names if not n.startswith(".")] == ["b", "y.json"]
    assert [i.path.rsplit("/", 1)[1] for i in fs.glob(f"{base}/a/*.json")] == ["y.json"]
    with pytest.raises(OSError, match="destination exists"):
        fs.rename(f"{base}/a/b", f"{base}/a/y.json")
    fs.delete(f"{base}/a")
    assert not fs.exists(f"{base}/a")
    fs.delete(f"{base}/a")  # absent: no error
