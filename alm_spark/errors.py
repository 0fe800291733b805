"""Exceptions raised by alm_spark."""

from __future__ import annotations


class AlmSparkError(Exception):
    """Base class of the errors this package raises on purpose."""


class ConfigError(AlmSparkError, ValueError):
    """A setting is unknown, has the wrong type or an invalid value.

    The message starts with the setting's name (``section.key``), so a user can fix
    it without reading a traceback.
    """


class InputError(AlmSparkError):
    """The input cannot be read: a path is missing or holds no manifest files."""


class OutputError(AlmSparkError):
    """The output location cannot be written or published."""
