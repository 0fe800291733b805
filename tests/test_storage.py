"""Failing storage and failing workers: one line naming the file or path and the cause,
exit 1 (2 when known before any work), the old output kept (issue 9, class 5)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from alm_spark import cli
from alm_spark.config import load_config
from alm_spark.errors import OutputError
from alm_spark.run.failures import (
    DamagedInputError,
    describe_failure,
    failure_chain,
    find_damaged_input,
    names_no_damaged_file,
)
from alm_spark.run.job import run_pipeline
from alm_spark.storage.publish import check_output_parent
from alm_spark.testing.processes import spark_child_env
from tests.conftest import TWO_SPEAKER_ENTRY

BIN = Path(sys.executable).parent
HINT = "; rerun with --debug for the traceback"


class _Class:
    def __init__(self, name: str) -> None:
        self.name = name

    def getName(self) -> str:  # noqa: N802 - the Java API
        return self.name


class FakeThrowable:
    """Enough of a Java Throwable, as Py4J exposes it."""

    def __init__(self, name: str, message: str, cause: FakeThrowable | None = None) -> None:
        self.name, self.message, self.cause = name, message, cause

    def getClass(self) -> _Class:  # noqa: N802
        return _Class(self.name)

    def getMessage(self) -> str:  # noqa: N802
        return self.message

    def getCause(self) -> FakeThrowable | None:  # noqa: N802
        return self.cause


class FakePy4JJavaError(Exception):
    def __init__(self, java: FakeThrowable) -> None:
        super().__init__("An error occurred while calling o347.text.\n: " + java.message)
        self.java_exception = java


def _read_error(path: str, name: str, message: str) -> FakePy4JJavaError:
    cause = FakeThrowable(name, message)
    failed = FakeThrowable(
        "org.apache.spark.SparkException",
        f"[FAILED_READ_FILE.NO_HINT] Encountered error while reading file {path}.  SQLSTATE: KD001",
        cause,
    )
    job = FakeThrowable(
        "org.apache.spark.SparkException", "Job aborted due to stage failure", failed
    )
    return FakePy4JJavaError(job)


@pytest.mark.parametrize(
    ("name", "message", "cause"),
    [
        (
            "java.io.EOFException",
            "Unexpected end of input stream",
            "the compressed data ends early (a truncated file)",
        ),
        (
            "java.io.EOFException",
            "Unexpected end of ZLIB input stream",
            "the compressed data ends early (a truncated file)",
        ),
        ("java.io.IOException", "not a gzip file", "not gzip data, although the name ends in .gz"),
        (
            "java.util.zip.ZipException",
            "Not in GZIP format",
            "not gzip data, although the name ends in .gz",
        ),
        (
            "java.io.IOException",
            "invalid distances set",
            "corrupt compressed data (invalid distances set)",
        ),
        (
            "java.io.IOException",
            "invalid block type",
            "corrupt compressed data (invalid block type)",
        ),
        (
            "java.io.FileNotFoundException",
            "File file:/d/a.jsonl.gz does not exist",
            "it no longer exists (removed while the run read it?)",
        ),
        ("java.io.IOException", "Input/output error", "IOException: Input/output error"),
    ],
)
def test_read_failures_name_the_file_and_the_cause(name: str, message: str, cause: str) -> None:
    err = _read_error("file:///d/a.jsonl.gz", name, message)
    assert describe_failure(err) == f"cannot read file:///d/a.jsonl.gz: {cause}"


def test_spark_35s_unnamed_damage_is_named_by_the_pipeline() -> None:
    # Spark 3.5 wraps the decompressor's error in a write failure, with no file name.
    staging = "file:/d/.out.staging-20261201T204141Z-62f0d990/_data"
    spark35 = FakePy4JJavaError(
        FakeThrowable(
            "org.apache.spark.SparkException",
            f"[TASK_WRITE_FAILED] Task failed while writing rows to {staging}.",
            FakeThrowable("java.io.EOFException", "Unexpected end of input stream"),
        )
    )
    assert names_no_damaged_file(spark35)
    assert describe_failure(spark35) == "run failed: EOFException: Unexpected end of input stream"
    named = DamagedInputError("file:/d/a.jsonl.gz")
    named.__cause__ = spark35  # what ``raise ... from`` sets
    assert describe_failure(named) == (
        "cannot read file:/d/a.jsonl.gz: the compressed data ends early (a truncated file)"
    )
    assert not names_no_damaged_file(named)
    # Spark 4 names the file itself; other failures are no damaged input.
    spark4 = _read_error(
        "file:///d/a.jsonl.gz", "java.io.EOFException", "Unexpected end of input stream"
    )
    assert not names_no_damaged_file(spark4)
    assert not names_no_damaged_file(RuntimeError("boom"))


def test_find_damaged_input_reads_each_compressed_file_to_its_end(spark, tmp_path: Path) -> None:
    variants = _gzip_variants(tmp_path)
    good = tmp_path / "good.jsonl.gz"
    good.write_bytes(gzip.compress(b'{"a": 1}\n'))
    plain = tmp_path / "plain.jsonl"  # no codec: never read
    plain.write_bytes(b"not json\n")
    files = [f"file://{good}", f"file://{plain}"]
    assert find_damaged_input(spark, files) is None
    for kind, (data, _) in variants.items():
        bad = tmp_path / f"{kind}.jsonl.gz"
        bad.write_bytes(data)
        assert find_damaged_input(spark, [*files, f"file://{bad}"]) == f"file://{bad}"
    assert find_damaged_input(spark, [f"file://{tmp_path}/corrupt.jsonl.gz"], 0.0) is None


def test_a_full_disk_names_the_output_path() -> None:
    staging = "file:/mnt/.out.staging-20261201T204141Z-62f0d990/_data/_temporary/0/part-1.txt"
    err = FakePy4JJavaError(
        FakeThrowable(
            "org.apache.spark.SparkException",
            f"[TASK_WRITE_FAILED] Task failed while writing rows to {staging}. SQLSTATE: 58030",
            FakeThrowable(
                "org.apache.hadoop.fs.FSError",
                "java.io.IOException: No space left on device",
                FakeThrowable("java.io.IOException", "No space left on device"),
            ),
        )
    )
    assert describe_failure(err) == (
        "no space left on device writing file:/mnt/out (output.path); nothing was published"
    )
    python_side = OSError(errno.ENOSPC, "No space left on device")
    assert describe_failure(python_side) == "no space left on device; nothing was published"


def test_a_python_worker_error_shows_its_last_line() -> None:
    class PythonException(Exception):  # pyspark.errors' class of that name
        pass

    traceback = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "/x/fused.py", line 199, in finish\n    self.out.add(...)\n'
        "ValueError: Out of range float values are not JSON compliant\n SQLSTATE: 38000"
    )
    assert describe_failure(PythonException(traceback)) == (
        "a Python worker failed: ValueError: Out of range float values are not JSON compliant"
    )
    java = FakeThrowable(
        "org.apache.spark.SparkException",
        "Job aborted",
        FakeThrowable("org.apache.spark.api.python.PythonException", traceback),
    )
    last = "ValueError: Out of range float values are not JSON compliant"
    assert describe_failure(FakePy4JJavaError(java)) == f"a Python worker failed: {last}"


def test_other_failures_show_the_innermost_cause() -> None:
    oom = FakeThrowable("java.lang.OutOfMemoryError", "Java heap space\nmore")
    java = FakeThrowable("org.apache.spark.SparkException", "Job aborted", oom)
    assert (
        describe_failure(FakePy4JJavaError(java)) == "run failed: OutOfMemoryError: Java heap space"
    )
    assert describe_failure(RuntimeError("boom\nline two")) == "run failed: RuntimeError: boom"
    assert [n for n, _ in failure_chain(FakePy4JJavaError(java))] == [
        "FakePy4JJavaError", "org.apache.spark.SparkException", "java.lang.OutOfMemoryError",
    ]  # fmt: skip


def test_an_output_path_under_a_file_exits_2_before_spark_starts(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    (tmp_path / "file.txt").write_text("not a directory\n")
    monkeypatch.setattr(cli, "build_session", lambda *a, **k: pytest.fail("Spark was started"))
    out = tmp_path / "file.txt" / "sub" / "out"
    code = cli.main(["run", f"input.manifest_path={tmp_path / 'a.jsonl'}", f"output.path={out}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"alm-spark: error: output.path: {out} cannot be created: {tmp_path}/file.txt is a "
        "file, not a directory\n"
    )
    assert (tmp_path / "file.txt").read_text() == "not a directory\n"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=r"dangling is a broken symlink, not a directory$"):
        check_output_parent(str(tmp_path / "dangling" / "out"))
    check_output_parent(str(tmp_path / "new" / "deeper" / "out"))  # missing parents are fine
    check_output_parent("s3a://bucket/out")  # remote: checked through the file system


def _snapshot(out: Path) -> dict[str, bytes]:
    """The output's files and bytes, less its commit log (a failed run leaves a record)."""
    files = (p for p in sorted(out.rglob("*")) if p.is_file())
    return {str(p.relative_to(out)): p.read_bytes() for p in files if "_commits" not in p.parts}


def _good_output(spark, tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    good = tmp_path / "in" / "good.jsonl"
    good.parent.mkdir()
    good.write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    out = tmp_path / "out"
    cfg = load_config(None, [f"input.manifest_path={good}", f"output.path={out}"])
    run_pipeline(spark, cfg)
    return good, out, _snapshot(out)


def _gzip_variants(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    data = gzip.compress(
        ("".join(json.dumps(TWO_SPEAKER_ENTRY) + "\n" for _ in range(2000))).encode()
    )
    corrupt = bytearray(data)
    corrupt[100:150] = bytes(50)
    return {
        "truncated": (data[: len(data) // 2], "the compressed data ends early (a truncated file)"),
        "corrupt": (bytes(corrupt), "corrupt compressed data (invalid distance"),
        "not-gzip": (b"plain text\n", "not gzip data, although the name ends in .gz"),
    }


def test_a_damaged_gz_names_the_file_and_keeps_the_old_output(spark, tmp_path: Path) -> None:
    good, out, before = _good_output(spark, tmp_path)
    for kind, (data, cause) in _gzip_variants(tmp_path).items():
        bad = good.parent / f"{kind}.jsonl.gz"
        bad.write_bytes(data)
        cfg = load_config(None, [f"input.manifest_path={good.parent}", f"output.path={out}"])
        with pytest.raises(Exception) as err:  # noqa: PT011 - whatever Spark raises
            run_pipeline(spark, cfg)
        # zlib names the damage it met first ("invalid distances set", "... too far back").
        assert describe_failure(err.value).startswith(f"cannot read file://{bad}: {cause}")
        assert _snapshot(out) == before
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []
        bad.unlink()


def _cli_run(source: Path, out: Path, env: dict[str, str] | None = None, *extra: str):
    command = [str(BIN / "alm-spark"), "run", "-q", f"input.manifest_path={source}",
               f"output.path={out}", "spark.master=local[2]", *extra]  # fmt: skip
    return subprocess.run(
        command, env=env or spark_child_env(), capture_output=True, text=True, timeout=300,
        check=False, cwd=out.parent,
    )  # fmt: skip


def _assert_one_line(stderr: str, message: str) -> None:
    lines = [
        line for line in stderr.splitlines() if not line.startswith("WARNING: Using incubator")
    ]
    assert "at org.apache" not in stderr
    assert "Py4JJavaError" not in stderr
    assert lines[-1] == f"alm-spark: error: {message}{HINT}"


@pytest.mark.slow
def test_cli_prints_one_line_for_a_truncated_gz(tmp_path: Path) -> None:
    data, cause = _gzip_variants(tmp_path)["truncated"]
    bad = tmp_path / "in.jsonl.gz"
    bad.write_bytes(data)
    proc = _cli_run(bad, tmp_path / "out")
    assert proc.returncode == 1
    _assert_one_line(proc.stderr, f"cannot read file://{bad}: {cause}")
    assert "Traceback" not in proc.stderr
    # Besides the JVM's start-up notice and our line, only Spark's own WARN log lines
    # (spark.log_level defaults to WARN) may appear: never a stack trace or an INFO flood.
    others = [
        line
        for line in proc.stderr.splitlines()[:-1]
        if not line.startswith("WARNING: Using incubator") and " WARN " not in line
    ]
    assert others == []
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_shows_a_python_worker_error(tmp_path: Path) -> None:
    other = getattr(sys, "_base_executable", "")
    probe = subprocess.run(
        [other, "-c", "import alm_spark"], capture_output=True, check=False, cwd=tmp_path
    )
    if not other or probe.returncode == 0:
        pytest.skip("no interpreter without alm_spark to run the workers with")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    proc = _cli_run(source, tmp_path / "out", spark_child_env(PYSPARK_PYTHON=other), "--debug")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr  # --debug shows it
    assert HINT not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("alm-spark: error: a Python worker failed: ModuleNotFoundError: "
                                "No module named ")  # fmt: skip
    assert not (tmp_path / "out").exists()


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, check=False)  # fmt: skip
    return proc.returncode == 0


@pytest.mark.slow
def test_a_full_disk_keeps_the_old_output(spark, tmp_path: Path, monkeypatch) -> None:
    disk = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    big = tmp_path / "big.jsonl"  # its output (~3 MB) cannot fit beside the old one
    big.write_text("".join(json.dumps({**TWO_SPEAKER_ENTRY, "n": n}) + "\n" for n in range(3000)))
    if _mount_tmpfs(disk, "1m"):
        try:
            out = disk / "out"
            run_pipeline(
                spark, load_config(None, [f"input.manifest_path={small}", f"output.path={out}"])
            )
            before = _snapshot(out)
            proc = _cli_run(big, out)
            assert proc.returncode == 1
            _assert_one_line(
                proc.stderr,
                f"no space left on device writing file:{out} (output.path); nothing was published",
            )
            assert _snapshot(out) == before
            assert sorted(p.name for p in disk.iterdir()) == ["out"]  # no staging left
        finally:
            subprocess.run(["umount", str(disk)], check=False)
        return
    # No mount allowed here: inject ENOSPC where the run writes its metrics.
    from alm_spark.storage import fs as fs_module

    _, out, before = _good_output(spark, tmp_path)

    def full(self: Any, path: str, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(fs_module.HadoopFileSystem, "write_text", full)
    cfg = load_config(None, [f"input.manifest_path={big}", f"output.path={out}"])
    with pytest.raises(OSError, match="No space left on device") as err:
        run_pipeline(spark, cfg)
    assert describe_failure(err.value) == "no space left on device; nothing was published"
    assert _snapshot(out) == before
