"""Nothing is renamed or copied: a whole job into an object-store path, every file event seen.

Unity Catalog volumes (``/Volumes/...``) look local but are object stores, where a rename
is a copy; the job treats such a path as one (tasks upload each data file once, under its
final name). Here a job writes into a folder under ``/Volumes`` on the local disk while
the kernel's inotify reports every file created and every rename in the output, Spark's
scratch rows and the commit records aside: each data file must be created once, under the
name the commit log records, and nothing renamed.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alm_spark.config import load_config
from alm_spark.run.job import run_pipeline
from alm_spark.storage.commits import CommitLog
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.testing.audiogen import write_audio
from alm_spark.testing.layout import output_problems
from tests.conftest import write_jsonl

IN_CREATE, IN_MOVED_FROM, IN_MOVED_TO, IN_ISDIR = 0x100, 0x40, 0x80, 0x40000000
#: Spark's own small rows and the driver's records: not data files.
NOT_DATA = ("_scratch", "_commits")


class FileEvents:
    """Every file created and every rename under a folder, subfolders included (inotify)."""

    def __init__(self, root: Path) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        assert self._fd >= 0, os.strerror(ctypes.get_errno())
        self._root, self._dirs = root, {}
        self.created: list[str] = []
        self.renamed: list[str] = []
        self._stop = threading.Event()
        self._watch(root)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _watch(self, folder: Path) -> None:
        mask = IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO
        wd = self._libc.inotify_add_watch(self._fd, str(folder).encode(), mask)
        if wd >= 0:
            self._dirs[wd] = folder
            for child in folder.iterdir():  # made before the watch took hold
                if child.is_dir():
                    self._watch(child)

    def _run(self) -> None:
        while not self._stop.is_set():
            if select.select([self._fd], [], [], 0.05)[0]:
                self._read()
        self._read()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1 << 20)
        except BlockingIOError:
            return
        offset = 0
        while offset < len(data):
            wd, mask, _, size = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + size].rstrip(b"\0").decode()
            offset += 16 + size
            path = self._dirs.get(wd, self._root) / name
            relative = str(path.relative_to(self._root))
            if mask & IN_ISDIR:
                if mask & IN_CREATE:
                    self._watch(path)
            elif mask & IN_CREATE:
                self.created.append(relative)
            else:
                self.renamed.append(relative)

    def close(self) -> None:
        """Stop watching (events read so far stay)."""
        self._stop.set()
        self._thread.join()
        os.close(self._fd)


@pytest.fixture
def volume() -> Iterator[Path]:
    """A folder of our own under ``/Volumes`` (removed after; ``/Volumes`` too if we made it)."""
    if os.geteuid() != 0 and not os.access("/Volumes", os.W_OK):
        pytest.skip("needs to create a folder under /Volumes (root, as CI runs)")
    made = not Path("/Volumes").exists()
    folder = Path("/Volumes") / f"alm-spark-test-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if made:
            with_contents = list(Path("/Volumes").iterdir())
            if not with_contents:
                Path("/Volumes").rmdir()


def _entry(path: str, seconds: float) -> dict[str, Any]:
    segments = [
        {"start": t, "end": t + 2.5, "speaker": "ab"[k % 2], "text": f"turn {k}",
         "metrics": {"bandwidth": 8000}}
        for k, t in enumerate(np.arange(0.0, seconds - 2.4, 2.5).tolist())
    ]  # fmt: skip
    return {"audio_filepath": path, "audio_sample_rate": 16000, "segments": segments}


def _data_files(events: list[str]) -> list[str]:
    """The data files among paths: not Spark's scratch rows, records or checksum files."""
    return sorted(
        p for p in events if p.split("/", 1)[0] not in NOT_DATA and not p.endswith(".crc")
    )


@pytest.mark.slow
def test_a_job_into_an_object_store_path_writes_each_file_once_and_renames_nothing(
    spark: Any, volume: Path
) -> None:
    folder = volume / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_jsonl(folder / "m1.jsonl", [json.dumps(_entry("audio/a.flac", 30.0)), "{bad"])
    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/missing.flac", 20.0))])
    out = volume / "out"
    settings = [
        f"input.manifest_path={folder}", f"output.path={out}", "audio.enabled=true",
        "audio.format=nemo", "audio.shard_max_clips=2", "output.step_files=1",
        "builder.target_window_duration=10", "builder.tolerance=0.2", "overlap.target_duration=10",
        "output.mode=update",
    ]  # fmt: skip
    recorded: set[str] = set()
    for round_ in range(2):  # a first run, then an update with one new file
        if round_:
            write_jsonl(folder / "m3.jsonl", [json.dumps(_entry("audio/a.flac", 20.0))])
        out.mkdir(exist_ok=True)
        events = FileEvents(out)
        try:
            run_pipeline(spark, load_config(None, settings))
        finally:
            events.close()
        state = CommitLog(FsspecFileSystem(), str(out)).read()
        assert state.live is not None
        assert _data_files(events.renamed) == [], round_
        created = _data_files(events.created)
        assert len(created) == len(set(created)), round_  # each written once
        data = set(created) - {"_metrics.json", "_report.html", "_SUCCESS"}
        assert data == set(state.live.files) - recorded, round_
        assert any(p.startswith("_shards/audio_") for p in data)
        assert any(p.startswith("_rejected_audio/") for p in data) == (round_ == 0)
        recorded |= set(state.live.files)
    assert output_problems(out) == []
