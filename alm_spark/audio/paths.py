"""Where a manifest's audio path points, and whether the run may read it.

A manifest can come from an outside party, so its paths are untrusted: an executor must
not read a file or fetch a URL the user did not allow (``http://169.254.169.254/`` is a
cloud's metadata service). Two rules, checked per entry before anything is opened:

- **Schemes**: a path's URL scheme (``s3``, ``gs``, ``http`` ...; plain paths are
  ``file``) must be in ``audio.allowed_schemes``, with or without ``audio.root``. fsspec's
  chained URLs (``a::b``) are refused: they name a second store inside the first.
- **Confinement**: with ``audio.root`` set, the resolved path must lie inside the root
  unless ``audio.allow_outside_root``. Local paths are compared by real path (symbolic
  links resolved) and by whole segments (``/data/a`` does not hold ``/data/ab``); a URL
  with an empty, ``.`` or ``..`` segment is refused, not normalized, since object-store
  keys are literal.

Plain Python; no Spark.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from alm_spark.config import AudioConfig
from alm_spark.names import ANY_SCHEME, AUDIO_SCHEMES
from alm_spark.storage.datafiles import fsspec_url, opened_scheme, scheme_of


class RefusedPath(Exception):
    """A path the run may not read: ``reason`` is its clips' reason, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioPaths:
    """How the audio step resolves and checks manifest paths.

    Attributes:
        root: Where relative paths resolve; None: the manifest file's folder.
        allow_outside_root: Read paths outside ``root`` too.
        schemes: The URL schemes a path may have (``*``: any).
    """

    root: str | None = None
    allow_outside_root: bool = False
    schemes: tuple[str, ...] = AUDIO_SCHEMES

    @classmethod
    def of(cls, config: AudioConfig) -> AudioPaths:
        """The rules the ``audio`` settings give."""
        return cls(config.root, config.allow_outside_root, config.allowed_schemes)

    def locate(self, path: str, source: str) -> str:
        """The URL fsspec opens for a manifest's audio path, once checked.

        Absolute paths and URLs are kept (Hadoop's ``s3a://`` spelled ``s3://``,
        Databricks' ``dbfs:/`` as its ``/dbfs`` mount); relative ones resolve against
        ``root``, or against the folder of ``source`` (the manifest file) without one.

        Raises:
            RefusedPath: With reason ``scheme_not_allowed`` or ``outside_root``.
        """
        if "::" in path:
            raise RefusedPath("scheme_not_allowed", f"{path!r} is a chained URL")
        self._check_scheme(scheme_of(path), path)
        if "://" in path or path.startswith(("/", "file:", "dbfs:", "data:")):
            url = fsspec_url(path)
        else:
            base = self.root if self.root is not None else posixpath.dirname(source)
            url = fsspec_url(base.rstrip("/") + "/" + path)
        self._check_scheme(opened_scheme(url), path)
        if self.root is not None and not self.allow_outside_root and not self._inside(url):
            raise RefusedPath("outside_root", f"{path!r} resolves outside audio.root")
        return url

    def _check_scheme(self, scheme: str, path: str) -> None:
        if ANY_SCHEME not in self.schemes and scheme not in self.schemes:
            raise RefusedPath(
                "scheme_not_allowed", f"{path!r}: scheme {scheme} is not in audio.allowed_schemes"
            )

    def _inside(self, url: str) -> bool:
        """Whether ``url`` lies inside ``root``, by whole segments."""
        root = fsspec_url(self.root or "")
        scheme = opened_scheme(url)
        if opened_scheme(root) != scheme:
            return False
        if scheme == "file":
            here, base = os.path.realpath(url), os.path.realpath(root)
            return here == base or here.startswith(base.rstrip("/") + "/")
        parts = url.split("://", 1)[1].split("/")
        if any(part in ("", ".", "..") for part in parts[1:]):
            return False  # literal keys: s3://b/r/../x is a key, not s3://b/x
        within = [part for part in root.split("://", 1)[1].split("/") if part]
        return parts[: len(within)] == within
