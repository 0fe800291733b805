"""Tar shards of clips, as WebDataset reads them: ``<key>.<ext>`` members side by side.

Members are written in a stream (``tarfile`` mode ``w|``), so a shard goes straight
to object storage without seeking, with fixed owners, modes and times so the same
clips give the same bytes.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class ShardFile:
    """A finished shard: its name, how many clips, bytes and seconds of audio."""

    name: str
    clips: int
    bytes: int
    seconds: float


class ShardWriter:
    """Packs clips into tar files, starting a new one at a clip or size limit.

    Args:
        open_shard: Opens a new shard by name for binary writing.
        name_for: The name of the ``n``-th shard this writer starts (0, 1, ...).
        max_clips: Clips per shard at most.
        max_bytes: A shard is closed once it holds this many bytes or more.
    """

    def __init__(
        self,
        open_shard: Callable[[str], BinaryIO],
        name_for: Callable[[int], str],
        max_clips: int,
        max_bytes: int,
    ) -> None:
        """Prepare; no file is opened before the first clip."""
        self._open, self._name_for = open_shard, name_for
        self._max_clips, self._max_bytes = max_clips, max_bytes
        self._handle: BinaryIO | None = None
        self._tar: tarfile.TarFile | None = None
        self._name = ""
        self._clips = self._bytes = 0
        self._seconds = 0.0
        self.finished: list[ShardFile] = []

    def add(self, key: str, members: list[tuple[str, bytes]], seconds: float) -> str:
        """Write one clip's members (``(extension, data)``); returns the shard's name."""
        if self._tar is None:
            self._start()
        assert self._tar is not None
        for extension, data in members:
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            self._tar.addfile(info, io.BytesIO(data))
            self._bytes += len(data) + 512 + (-len(data)) % 512
        self._clips += 1
        self._seconds += seconds
        name = self._name
        if self._clips >= self._max_clips or self._bytes >= self._max_bytes:
            self._finish()
        return name

    def close(self) -> list[ShardFile]:
        """Finish the open shard; returns every shard written."""
        if self._tar is not None:
            self._finish()
        return self.finished

    def abort(self) -> None:
        """Close the open file without finishing it (a failed task)."""
        if self._handle is not None:
            self._handle.close()
        self._handle = self._tar = None

    def _start(self) -> None:
        self._name = self._name_for(len(self.finished))
        self._handle = self._open(self._name)
        self._tar = tarfile.open(  # noqa: SIM115 - closed by _finish, across calls
            fileobj=self._handle, mode="w|", format=tarfile.USTAR_FORMAT
        )
        self._clips = self._bytes = 0
        self._seconds = 0.0

    def _finish(self) -> None:
        assert self._tar is not None
        assert self._handle is not None
        self._tar.close()
        self._handle.close()
        self.finished.append(ShardFile(self._name, self._clips, self._bytes, self._seconds))
        self._handle = self._tar = None
