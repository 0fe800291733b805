"""JSON as compact UTF-8 bytes, the way output lines are written.

The reference writes with ``ensure_ascii=False``; output lines are assembled from
pieces encoded once and reused, so the pieces are bytes.
"""

from __future__ import annotations

import json
import re
from json import encoder as json_encoder
from typing import Any

# The reference writer's form (ensure_ascii=False), with compact separators.
# allow_nan=False: a number such as 1e999 decodes to infinity, which JSON cannot hold.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)
# JSONEncoder.encode builds a C encoder on every call; one persistent encoder saves
# a fifth of the cost of the ~1,000 segment encodings per entry.
_C_MAKE_ENCODER = getattr(json_encoder, "c_make_encoder", None)
_C_ENCODE = (
    _C_MAKE_ENCODER(
        None, _ENCODER.default, json_encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _C_MAKE_ENCODER is not None
    else None
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_lone_surrogates(text: str) -> str:
    r"""Escape lone surrogates in JSON text so it encodes as UTF-8 with the same value.

    ``"\\ud800"`` in an input line decodes to a lone surrogate, which UTF-8 cannot hold.
    """
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(value: Any) -> bytes:
    """A JSON value as compact UTF-8 bytes.

    Raises:
        ValueError: When the value holds an infinite or NaN float.
    """
    text = "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODER.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_lone_surrogates(text).encode("utf-8")


def json_list(items: list[bytes]) -> bytes:
    """A JSON array of items already encoded."""
    return b"[" + b",".join(items) + b"]"


def json_rows(matrix: list[list[float]]) -> list[bytes]:
    """Each row of a float matrix as JSON, with one encoder call for the whole matrix."""
    if not matrix:
        return []
    return [b"[" + row + b"]" for row in dumps(matrix)[2:-2].split(b"],[")]


def finite_number(value: Any) -> float | None:
    """A JSON number as a finite double, else None (text, booleans, 1e999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if number - number == 0 else None
