"""File-system operations the driver needs: find inputs, publish the output.

Two implementations of one small interface:

* :class:`HadoopFileSystem` goes through the session's Hadoop configuration, so it
  reaches every scheme the cluster's Spark reads (``file:``, ``hdfs:``, ``s3a:``,
  ``abfss:``, ``gs:``, ``dbfs:``) with the cluster's own credentials;
* :class:`FsspecFileSystem` is used where there is no JVM to talk to (Spark Connect)
  and in tests without Spark.

Only metadata and small files (``_metrics.json``, ``_SUCCESS``) pass through here;
data is always read and written by Spark.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Protocol

GLOB_CHARS = frozenset("*?[{")


@dataclass(frozen=True)
class FileInfo:
    """A listed path."""

    path: str
    is_dir: bool


@dataclass(frozen=True)
class FileStatus:
    """What identifies one version of a file.

    Attributes:
        size: Bytes.
        version: ``etag:...`` or ``generation:...`` on object stores, else
            ``mtime:<milliseconds>`` (local files read the same through Hadoop and fsspec).
    """

    size: int
    version: str


class FileSystem(Protocol):
    """What the pipeline needs from a file system. Paths are URIs or local paths."""

    def qualify(self, path: str) -> str:
        """Absolute, scheme-qualified form of ``path``."""
        ...

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is an existing directory."""
        ...

    def glob(self, pattern: str) -> list[FileInfo]:
        """Paths matching a glob pattern."""
        ...

    def list_dir(self, path: str) -> list[FileInfo]:
        """Direct children of a directory."""
        ...

    def mkdirs(self, path: str) -> None:
        """Create a directory and its parents."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file or a directory tree; no error when absent."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``, which must not exist."""
        ...

    def write_text(self, path: str, text: str) -> None:
        """Create or replace a small UTF-8 file."""
        ...

    def create_exclusive(self, path: str, text: str) -> bool:
        """Create a small UTF-8 file unless ``path`` exists; False when it does.

        Atomic on local file systems and HDFS; see :mod:`alm_spark.storage.lock` for
        object stores.
        """
        ...

    def read_text(self, path: str) -> str:
        """Read a small UTF-8 file."""
        ...

    def stat(self, path: str) -> FileStatus:
        """The size and version of a file."""
        ...


def join(base: str, *names: str) -> str:
    """Join path segments with ``/`` (URIs and POSIX paths alike)."""
    return "/".join([base.rstrip("/"), *names])


def parent_and_name(path: str) -> tuple[str, str]:
    """Split a path or URI into its parent and last segment."""
    trimmed = path.rstrip("/")
    head, _, tail = trimmed.rpartition("/")
    return head, tail


def has_glob(path: str) -> bool:
    """Whether a path holds glob characters."""
    return any(ch in GLOB_CHARS for ch in path)


def is_within(path: str, root: str) -> bool:
    """Whether qualified ``path`` equals ``root`` or lies under it."""
    path, root = path.rstrip("/"), root.rstrip("/")
    return path == root or path.startswith(root + "/")


def relative_to(root: str, path: str) -> str:
    """``path`` relative to ``root``, which must contain it."""
    root = root.rstrip("/")
    if not path.startswith(root + "/"):
        raise ValueError(f"{path} is not inside {root}")
    return path[len(root) + 1 :]


def local_path(path: str) -> str | None:
    """The local file-system path of a qualified ``file:`` URI; None for other schemes."""
    if not path.startswith("file:"):
        return None
    rest = path[len("file:") :]
    if rest.startswith("//"):  # file:///x or file://localhost/x
        host, _, tail = rest[2:].partition("/")
        if host not in ("", "localhost"):
            return None
        rest = "/" + tail
    return rest or "/"


def os_path(path: str) -> str | None:
    """The local file-system path of a plain path or ``file:`` URI; None for other URIs."""
    if "://" not in path and not path.startswith(("file:", "hdfs:", "dbfs:")):
        return path
    return local_path(path)


def create_local_exclusive(path: str, text: str) -> bool:
    """``O_EXCL`` creation of a local file (parents created); False when it exists."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    return True


def real_location(path: str) -> str:
    """A qualified path with symlinks resolved for local paths; remote URIs unchanged.

    Two spellings of one local file or directory (through a symlink, ``..``) give the
    same real location, so containment is checked on what is stored, not on names.
    """
    local = local_path(path)
    return path if local is None else "file:" + os.path.realpath(local)


#: A URL's scheme and authority (``s3a://bucket``, ``file:``): the store a path is on.
_STORE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")
#: File systems bound to more than a store: each Hadoop archive (``har:``) is its own.
_PER_PATH_SCHEMES = ("har:",)


class HadoopFileSystem:
    """File operations through the JVM's Hadoop FileSystem (classic Spark only)."""

    def __init__(self, spark: Any) -> None:
        """Bind to a classic SparkSession's JVM and Hadoop configuration."""
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._new_path = self._jvm.org.apache.hadoop.fs.Path
        # LocalFileSystem, or a subclass such as Hive's ProxyLocalFileSystem (pyspark 4.3).
        self._checksummed = self._jvm.java.lang.Class.forName(
            "org.apache.hadoop.fs.ChecksumFileSystem"
        )
        # Each store's file system, found once: every call to the JVM is a round trip,
        # and a run's driver makes hundreds of file operations.
        self._stores: dict[str, Any] = {}

    def _path(self, path: str) -> tuple[Any, Any]:
        if "://" not in path and not path.startswith(("/", "file:")) and ":" not in path[:12]:
            # Relative to this process's directory, not the JVM's (a notebook may chdir).
            path = os.path.abspath(path)
        jpath = self._new_path(path)
        store = _STORE.match(path)
        key = store.group(0) if store else ""  # no scheme: the default file system
        fs = self._stores.get(key)
        if fs is None or key.lower().startswith(_PER_PATH_SCHEMES):
            fs = jpath.getFileSystem(self._conf)
            if self._checksummed.isInstance(fs) and fs.getUri().getScheme() == "file":
                # The checksumming local file system writes a .crc beside every file and
                # moves it along on rename; its raw file system does neither, so no .crc
                # reaches an output whatever session (and Hadoop settings) the job was given.
                fs = fs.getRawFileSystem()
            self._stores[key] = fs
        return jpath, fs

    def qualify(self, path: str) -> str:  # noqa: D102
        jpath, fs = self._path(path)
        return str(fs.makeQualified(jpath).toString())

    def exists(self, path: str) -> bool:  # noqa: D102
        jpath, fs = self._path(path)
        return bool(fs.exists(jpath))

    def is_dir(self, path: str) -> bool:  # noqa: D102
        jpath, fs = self._path(path)
        return bool(fs.exists(jpath) and fs.getFileStatus(jpath).isDirectory())

    def glob(self, pattern: str) -> list[FileInfo]:  # noqa: D102
        jpath, fs = self._path(pattern)
        statuses = fs.globStatus(jpath) or []
        return [FileInfo(str(s.getPath().toString()), bool(s.isDirectory())) for s in statuses]

    def list_dir(self, path: str) -> list[FileInfo]:  # noqa: D102
        jpath, fs = self._path(path)
        return [
            FileInfo(str(s.getPath().toString()), bool(s.isDirectory()))
            for s in fs.listStatus(jpath)
        ]

    def mkdirs(self, path: str) -> None:  # noqa: D102
        jpath, fs = self._path(path)
        if not fs.mkdirs(jpath):
            raise OSError(f"cannot create directory {path}")

    def delete(self, path: str) -> None:  # noqa: D102
        jpath, fs = self._path(path)
        if fs.exists(jpath) and not fs.delete(jpath, True):
            raise OSError(f"cannot delete {path}")

    def rename(self, src: str, dst: str) -> None:  # noqa: D102
        jsrc, fs = self._path(src)
        jdst, _ = self._path(dst)
        if fs.exists(jdst):
            raise OSError(f"cannot move {src} to {dst}: destination exists")
        if not fs.rename(jsrc, jdst):
            raise OSError(f"cannot move {src} to {dst}")

    def write_text(self, path: str, text: str) -> None:  # noqa: D102
        jpath, fs = self._path(path)
        stream = fs.create(jpath, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def create_exclusive(self, path: str, text: str) -> bool:  # noqa: D102
        local = local_path(self.qualify(path))
        if local is not None:  # Hadoop's local create checks, then opens: not atomic
            return create_local_exclusive(local, text)
        jpath, fs = self._path(path)
        try:
            stream = fs.create(jpath, False)
        except Exception as err:
            if "FileAlreadyExists" in str(err) or fs.exists(jpath):
                return False
            raise
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        return True

    def stat(self, path: str) -> FileStatus:  # noqa: D102
        local = local_path(self.qualify(path))
        if local is not None:
            return local_file_status(local)
        jpath, fs = self._path(path)
        status = fs.getFileStatus(jpath)
        try:  # S3A and ABFS statuses carry the ETag (Hadoop's EtagSource)
            etag = status.getEtag()
        except Exception:
            etag = None
        version = _version("etag", etag) if etag else f"mtime:{status.getModificationTime()}"
        return FileStatus(int(status.getLen()), version)

    def read_text(self, path: str) -> str:  # noqa: D102
        jpath, fs = self._path(path)
        stream = fs.open(jpath)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


class FsspecFileSystem:
    """File operations through fsspec (local paths, and remote ones with its extras)."""

    def _fs(self, path: str) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(path)
        return fs, root

    @staticmethod
    def _unstrip(fs: Any, original: str, path: str) -> str:
        return str(fs.unstrip_protocol(path)) if "://" in original else path

    def qualify(self, path: str) -> str:  # noqa: D102
        fs, root = self._fs(path)
        if "://" in path:
            return str(fs.unstrip_protocol(root))
        return "file:" + posixpath.normpath(root)

    def exists(self, path: str) -> bool:  # noqa: D102
        fs, root = self._fs(path)
        return bool(fs.exists(root))

    def is_dir(self, path: str) -> bool:  # noqa: D102
        fs, root = self._fs(path)
        return bool(fs.isdir(root))

    def glob(self, pattern: str) -> list[FileInfo]:  # noqa: D102
        fs, root = self._fs(pattern)
        return [
            FileInfo(self._unstrip(fs, pattern, p), bool(fs.isdir(p)))
            for p in sorted(fs.glob(root))
        ]

    def list_dir(self, path: str) -> list[FileInfo]:  # noqa: D102
        fs, root = self._fs(path)
        return [
            FileInfo(self._unstrip(fs, path, item["name"]), item["type"] == "directory")
            for item in fs.ls(root, detail=True)
        ]

    def mkdirs(self, path: str) -> None:  # noqa: D102
        fs, root = self._fs(path)
        fs.makedirs(root, exist_ok=True)

    def delete(self, path: str) -> None:  # noqa: D102
        fs, root = self._fs(path)
        if fs.exists(root):
            fs.rm(root, recursive=True)

    def rename(self, src: str, dst: str) -> None:  # noqa: D102
        fs, src_root = self._fs(src)
        _, dst_root = self._fs(dst)
        if fs.exists(dst_root):
            raise OSError(f"cannot move {src} to {dst}: destination exists")
        fs.mv(src_root, dst_root, recursive=True)

    def write_text(self, path: str, text: str) -> None:  # noqa: D102
        fs, root = self._fs(path)
        with fs.open(root, "w", encoding="utf-8") as handle:
            handle.write(text)

    def read_text(self, path: str) -> str:  # noqa: D102
        fs, root = self._fs(path)
        with fs.open(root, "r", encoding="utf-8") as handle:
            return str(handle.read())

    def create_exclusive(self, path: str, text: str) -> bool:  # noqa: D102
        local = local_path(self.qualify(path))
        if local is not None:
            return create_local_exclusive(local, text)
        fs, root = self._fs(path)
        try:
            with fs.open(root, "xb") as handle:  # exclusive where the store supports it
                handle.write(text.encode("utf-8"))
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # no "x" mode: check, then write
            if fs.exists(root):
                return False
            self.write_text(path, text)
        return True

    def stat(self, path: str) -> FileStatus:  # noqa: D102
        local = local_path(self.qualify(path))
        if local is not None:
            return local_file_status(local)
        fs, root = self._fs(path)
        return file_status(fs.info(root))


#: fsspec's names for a file's version, most specific first: the ETag (s3fs, adlfs), the
#: generation (gcsfs); the modification time where a store has neither.
_VERSION_KEYS = ("ETag", "etag", "generation")
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created")


def _version(kind: str, value: Any) -> str:
    """``etag:...`` or ``generation:...``; an ETag's quotes are the HTTP header's, not its."""
    return f"{kind}:{str(value).strip(chr(34))}"


def local_file_status(path: str) -> FileStatus:
    """A local file's size and modification time in whole milliseconds (as Java reads it)."""
    status = os.stat(path)
    return FileStatus(status.st_size, f"mtime:{status.st_mtime_ns // 1_000_000}")


def file_status(info: dict[str, Any]) -> FileStatus:
    """A file's status from what ``fsspec``'s ``info`` returns, whatever the store."""
    for key in _VERSION_KEYS:
        if info.get(key):
            return FileStatus(int(info["size"]), _version(key.lower(), info[key]))
    for key in _TIME_KEYS:
        value = info.get(key)
        if value is not None:
            stamp = value.timestamp() if hasattr(value, "timestamp") else float(value)
            return FileStatus(int(info["size"]), f"mtime:{round(stamp * 1000)}")
    raise OSError(f"{info.get('name')}: the store gives no version (ETag, generation or time)")


def filesystem_for(spark: Any) -> FileSystem:
    """The Hadoop file system of a classic session, else fsspec (e.g. Spark Connect)."""
    try:
        spark.sparkContext._jsc  # noqa: B018 - raises under Spark Connect
    except Exception:
        return FsspecFileSystem()
    return HadoopFileSystem(spark)
