"""Input files as the commit log records them: one spelling and one version per file.

An ``update`` run skips an input file committed with the same identity and processes a
changed one again, so the identity must not depend on how a path was spelled: Hadoop's
``s3a://`` and fsspec's ``s3://`` name the same object, ``dbfs:/Volumes/...`` and
``/Volumes/...`` the same Unity Catalog file, and a local file is known by its real path
(symlinks and ``..`` resolved).

Where a store's times are not trusted, ``input.identity: checksum`` versions a file by the
SHA-256 of its bytes instead, hashed on the executors (:func:`checksum_batches`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from alm_spark.storage.commits import InputFile
from alm_spark.storage.datafiles import fsspec_url
from alm_spark.storage.fs import FileSystem, os_path

#: Remote input files asked for their identity at once.
_STAT_THREADS = 32
#: Bytes read at a time while hashing a file.
_CHUNK = 8 << 20

_S3_SPELLINGS = ("s3a://", "s3n://")
_VOLUMES = "dbfs:/Volumes/"


def normalize_uri(path: str) -> str:
    """The one spelling of an input file's location.

    Args:
        path: A local path, a ``file:`` URI, or a store's URI as Hadoop or fsspec spells it.
    """
    for spelling in _S3_SPELLINGS:
        if path.startswith(spelling):
            return "s3://" + path[len(spelling) :]
    if path.startswith(_VOLUMES):
        return "/Volumes/" + path[len(_VOLUMES) :]
    local = os_path(path)
    if local is not None:
        return os.path.realpath(local)
    return path


def identify(fs: FileSystem, path: str) -> InputFile:
    """An input file's identity: its normalized location, size and version."""
    status = fs.stat(path)
    return InputFile(normalize_uri(path), status.size, status.version)


def identify_all(fs: FileSystem, paths: Sequence[str]) -> list[InputFile]:
    """The identities of ``paths``, in order; remote ones asked for many at a time.

    On an object store each is a request (a HEAD on S3) that mostly waits, so 10^5
    input files asked one by one would keep the driver for minutes.
    """
    if all(os_path(path) is not None for path in paths):
        return [identify(fs, path) for path in paths]
    with ThreadPoolExecutor(max_workers=_STAT_THREADS) as pool:
        return list(pool.map(lambda path: identify(fs, path), paths))


def checksum_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each file's version as ``sha256:<hex>`` of its bytes (``mapInArrow``).

    Args:
        batches: Rows of ``uri`` (the normalized location) and ``path`` (as Spark lists it).

    Yields:
        Rows of ``uri`` and ``version``.
    """
    for batch in batches:
        uris = batch.column("uri").to_pylist()
        versions = [f"sha256:{_sha256(path)}" for path in batch.column("path").to_pylist()]
        yield pa.record_batch([pa.array(uris), pa.array(versions)], names=["uri", "version"])


def _sha256(path: str) -> str:
    import fsspec

    digest = hashlib.sha256()
    with fsspec.open(fsspec_url(path), "rb") as handle:  # the stored bytes, compressed or not
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
