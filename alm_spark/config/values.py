"""Value checks for settings: each turns a raw value into a valid one or names the setting.

A check is ``fn(value, name) -> value``; ``name`` is the setting's dotted name, which
starts the :class:`~alm_spark.errors.ConfigError` message of a bad value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from alm_spark.errors import ConfigError

Validator = Callable[[Any, str], Any]


#: Integer settings hold at most a signed 64-bit value (NumPy and the JVM compute with them).
MAX_INTEGER = 2**63 - 1


def _digits(value: int) -> int:
    """Decimal digits of an integer, without ``str()`` (which refuses 4,300+ digits)."""
    size = abs(value)
    digits = max(1, math.floor((size.bit_length() - 1) * math.log10(2)) + 1)
    return digits + 1 if size >= 10**digits else digits


def describe(value: Any) -> str:
    """A value as a message shows it: its type and, when short, its text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a {_digits(value)}-digit integer"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def number(*, positive: bool = False, non_negative: bool = False) -> Validator:
    """A check for a finite number, optionally positive or non-negative."""

    def check(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {describe(value)}")
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(
                    f"{name}: out of range (larger than a double), got {describe(value)}"
                ) from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise ConfigError(f"{name}: must be greater than 0, got {value!r}")
        if non_negative and value < 0:
            raise ConfigError(f"{name}: must not be negative, got {value!r}")
        return float(value) if isinstance(value, float) else value

    return check


def integer(low: int | None = None, high: int | None = None) -> Validator:
    """A check for a whole number within ``low..high`` (exact floats such as ``5e1`` too)."""

    def check(value: Any, name: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 5e1 or 50.0: an exact whole number
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected a whole number, got {describe(value)}")
        shown = describe(value) if abs(value) >= 10**30 else str(value)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name}: must be {bounds}, got {shown}")
        if abs(value) > MAX_INTEGER:
            raise ConfigError(f"{name}: must be at most {MAX_INTEGER}, got {shown}")
        return value

    return check


def optional_integer(low: int, high: int) -> Validator:
    """As :func:`integer`, or null."""
    whole = integer(low, high)

    def check(value: Any, name: str) -> int | None:
        return None if value is None else whole(value, name)

    return check


def boolean(value: Any, name: str) -> bool:
    """``true`` or ``false``; nothing else counts as one."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {describe(value)}")
    return value


def spelled(value: Any) -> Any:
    """A number YAML read from a text setting, as it was written (``8e3`` stays ``8e3``)."""
    return value.text if isinstance(value, SpelledFloat) else value


def names(value: Any, name: str) -> tuple[str, ...]:
    """Comma-separated names or a list of names; items trimmed, blanks dropped."""
    value = spelled(value)
    if value is None:
        return ()
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ConfigError(
            f"{name}: expected comma-separated names or a list, got {describe(value)}"
        )
    out: list[str] = []
    for item in map(spelled, items):
        if not isinstance(item, str):
            raise ConfigError(f"{name}: every name must be text, got {describe(item)}")
        if item.strip() and item.strip() not in out:
            out.append(item.strip())
    return tuple(out)


def paths(value: Any, name: str) -> tuple[str, ...]:
    """One path or a list of paths; each non-blank text."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in map(spelled, items):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{name}: expected a path or a list of paths, got {describe(item)}")
        out.append(item.strip())
    return tuple(out)


#: A URL scheme's name, lower-cased.
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.-]*")


def schemes(value: Any, name: str) -> tuple[str, ...]:
    """URL schemes as :func:`names` reads them, lower-cased; at least one."""
    out = tuple(dict.fromkeys(item.lower() for item in names(value, name)))
    for item in out:
        if item != "*" and not _SCHEME_NAME.fullmatch(item):
            raise ConfigError(f"{name}: {item!r} is not a URL scheme (letters, digits, + . -)")
    if not out:
        raise ConfigError(f"{name}: name at least one scheme (file: local paths)")
    return out


def choice(*allowed: str, optional: bool = False) -> Validator:
    """A check for one of ``allowed`` (or null, when ``optional``)."""

    def check(value: Any, name: str) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) and "on" in allowed:
            value = "on" if value else "off"  # YAML reads a bare on/off as a boolean
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ConfigError(
                f"{name}: expected one of {', '.join(allowed)}, got {describe(value)}"
            )
        return value.strip().lower()

    return check


def text(value: Any, name: str) -> str:
    """Non-blank text, as written (a number YAML read is given back as spelled)."""
    value = spelled(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected non-empty text, got {describe(value)}")
    return value.strip()


def optional_text(value: Any, name: str) -> str | None:
    """As :func:`text`, or null."""
    return None if value is None else text(value, name)


#: Master URLs Spark accepts (``sc://`` is Spark Connect's, not a master).
_MASTER_URL = re.compile(
    r"local(\[([1-9][0-9]*|\*)(,\s*[0-9]+)?\])?"
    r"|local-cluster\[\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*\]"
    r"|yarn|(spark|k8s|mesos)://\S+"
)


def master(value: Any, name: str) -> str | None:
    """A Spark master URL, checked here: Spark would fail deep inside its start-up."""
    master = optional_text(value, name)
    if master is not None and not _MASTER_URL.fullmatch(master):
        raise ConfigError(
            f"{name}: expected local, local[N], local[*], spark://HOST:PORT, yarn or "
            f"k8s://URL, got {describe(master)}"
        )
    return master


#: Levels ``spark.log_level`` accepts (log4j's, as ``SparkContext.setLogLevel`` takes them).
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def log_level(value: Any, name: str) -> str:
    """A log4j level name, in capitals (``off`` may be written bare)."""
    if value is False:
        value = "OFF"  # YAML reads a bare off as a boolean
    if not isinstance(value, str) or value.strip().upper() not in LOG_LEVELS:
        raise ConfigError(f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {describe(value)}")
    return value.strip().upper()


def remote(value: Any, name: str) -> str | None:
    """A Spark Connect URL ``sc://host[:port]``, or null."""
    value = spelled(value)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().startswith("sc://"):
        raise ConfigError(
            f"{name}: expected a Spark Connect address sc://host:port, got {describe(value)}"
        )
    return value.strip()


def spark_conf(value: Any, name: str) -> dict[str, str]:
    """Extra Spark settings: a mapping of names to single values, kept as text."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping of Spark settings, got {describe(value)}")
    out: dict[str, str] = {}
    for spelled_key, spelled_item in value.items():
        key, item = spelled(spelled_key), spelled(spelled_item)
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{name}: setting names must be text, got {describe(key)}")
        if isinstance(item, bool):
            out[key] = str(item).lower()
        elif isinstance(item, (int, float, str)):
            out[key] = str(item)
        else:
            raise ConfigError(f"{name}.{key}: expected a single value, got {describe(item)}")
    return out


#: Option names that hold secrets: ``audio.storage_options`` refuses them (credentials come
#: from the environment, a profile or the cluster's role, never from a config file).
_SECRET = re.compile(
    r"^(key|secret|token|password|passwd|pkey|auth|sas|credentials?)$"
    r"|secret|password|credential|account_key|sas_token|sas_url|connection_string|access_key"
    r"|api_key|private_key|session_token",
    re.IGNORECASE,
)
#: gcsfs's ``token`` values that name a way to authenticate, not a secret.
_NAMED_TOKENS = ("anon", "google_default", "cloud", "browser")


def storage_options(value: Any, name: str) -> dict[str, dict[str, Any]]:
    """Options for fsspec by URL scheme: ``{s3: {endpoint_url: ..., anon: true}}``; no secrets.

    Schemes are keyed as the store is opened (``s3a`` is ``s3``, ``gcs`` is ``gs``,
    ``abfss``/``az`` are ``abfs``); values are single values or mappings of them (s3fs's
    ``client_kwargs``); ``block_size`` is a whole number of bytes.
    """
    from alm_spark.storage.datafiles import store_of

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{name}: expected a mapping of schemes to options, got {describe(value)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for scheme, options in value.items():
        if not isinstance(scheme, str) or not _SCHEME_NAME.fullmatch(scheme.lower()):
            raise ConfigError(f"{name}: {scheme!r} is not a URL scheme")
        where = f"{name}.{scheme}"
        kept = _options(options, where)
        if "block_size" in kept:
            kept["block_size"] = integer(1, 1 << 40)(kept["block_size"], f"{where}.block_size")
        out.setdefault(store_of(scheme), {}).update(kept)
    return out


def _options(options: Any, where: str) -> dict[str, Any]:
    """One scheme's options (or a nested mapping of them), secrets refused."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping of options, got {describe(options)}")
    kept: dict[str, Any] = {}
    for key, item in options.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{where}: option names must be text, got {describe(key)}")
        named_token = key == "token" and item in _NAMED_TOKENS
        if _SECRET.search(key) and not named_token:
            raise ConfigError(
                f"{where}.{key}: credentials are not taken from settings; use the environment, "
                "a profile or the cluster's role"
            )
        if isinstance(item, dict):
            kept[key] = _options(item, f"{where}.{key}")
        elif item is None or isinstance(item, (bool, int, float, str)):
            kept[key] = float(item) if isinstance(item, SpelledFloat) else item
        else:
            raise ConfigError(f"{where}.{key}: expected a single value, got {describe(item)}")
    return kept


class SpelledFloat(float):
    """A number written with an exponent but no dot (``8e3``), with its spelling."""

    text: str
