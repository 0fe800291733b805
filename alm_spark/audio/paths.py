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
  with an empty, ``.`` or ``..`` segment (or a percent-encoded dot, slash or backslash)
  is refused, not normalized, since object-store keys are literal.

Plain Python; no Spark.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from alm_spark.config import AudioConfig
from alm_spark.names import ANY_SCHEME, AUDIO_SCHEMES
from alm_spark.storage.datafiles import fsspec_url, lower_scheme, opened_scheme, scheme_of

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Percent-encoded dots, slashes and backslashes: an HTTP client may decode them into
#: segments the check never saw.
_ENCODED = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


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
        Databricks' ``dbfs:/`` as its ``/dbfs`` mount, schemes in lower case); relative
        ones resolve against ``root``, or against the folder of ``source`` (the manifest
        file) without one. A local path checked against the root is returned resolved
        (the file checked is the file opened, whatever links change meanwhile).

        Raises:
            RefusedPath: With reason ``scheme_not_allowed``, ``outside_root`` or
                ``unreadable`` (a control character in the path).
        """
        if _CONTROL.search(path):
            raise RefusedPath("unreadable", f"{path!r} holds a control character")
        if "::" in path:
            raise RefusedPath("scheme_not_allowed", f"{path!r} is a chained URL")
        path = lower_scheme(path)
        if "://" in path or path.startswith(("/", "file:", "dbfs:", "data:")):
            self._check_scheme(scheme_of(path), path)
            url = fsspec_url(path)
            if "://" in url:  # what fsspec will make of it (x/http://h is protocol x/http)
                self._check_scheme(opened_scheme(url), path)
        else:  # relative: the scheme is the base's, however the path is spelled
            base = self.root if self.root is not None else posixpath.dirname(source)
            url = fsspec_url(lower_scheme(base).rstrip("/") + "/" + path)
            self._check_scheme(opened_scheme(url), path)
        if self.root is None or self.allow_outside_root:
            return url
        inside = self._inside(url)
        if inside is None:
            raise RefusedPath("outside_root", f"{path!r} resolves outside audio.root")
        return inside

    def _check_scheme(self, scheme: str, path: str) -> None:
        if ANY_SCHEME not in self.schemes and scheme not in self.schemes:
            raise RefusedPath(
                "scheme_not_allowed", f"{path!r}: scheme {scheme} is not in audio.allowed_schemes"
            )

    def _inside(self, url: str) -> str | None:
        """``url`` as opened when it lies inside ``root`` (by whole segments), else None."""
        root = fsspec_url(lower_scheme(self.root or ""))
        scheme = opened_scheme(url)
        if opened_scheme(root) != scheme:
            return None
        if scheme == "file":
            here, base = os.path.realpath(url), os.path.realpath(root)
            inside = here == base or here.startswith(base.rstrip("/") + "/")
            return here if inside else None
        parts = url.split("://", 1)[1].split("/")
        within = root.split("://", 1)[1].rstrip("/").split("/")  # the host kept, even empty
        if any(part in ("", ".", "..") or _ENCODED.search(part) for part in parts[1:]):
            return None  # literal keys: s3://b/r/../x is a key, not s3://b/x
        return url if parts[: len(within)] == within else None
