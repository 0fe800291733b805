"""Input files as the commit log records them: one spelling and one version per file.

An ``update`` run skips an input file committed with the same identity and processes a
changed one again, so the identity must not depend on how a path was spelled: Hadoop's
``s3a://`` and fsspec's ``s3://`` name the same object, ``dbfs:/Volumes/...`` and
``/Volumes/...`` the same Unity Catalog file, and a local file is known by its real path
(symlinks and ``..`` resolved).
"""

from __future__ import annotations

import os

from alm_spark.storage.commits import InputFile
from alm_spark.storage.fs import FileSystem, os_path

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
