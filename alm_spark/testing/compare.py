"""Compare two ALM manifests under the equality rules of ALM_SPEC §3.

Two outputs are equal when they hold the same lines in any order, where lines are
equal as JSON values with key order ignored, numbers compared by value (floats to
1e-6; ``true`` is not ``1``) and a key holding ``null`` equal to an absent key.

Used by the test suite against the reference's golden files, and by
``alm-spark compare`` for users checking a run against NeMo Curator's output.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLOAT_TOLERANCE = 1e-6


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_equal(a: float, b: float) -> bool:
    """Integers exactly; floats to 1e-6 (or to rounding, for magnitudes past 1e9)."""
    if a == b:
        return True
    if isinstance(a, int) and isinstance(b, int):
        return False
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(FLOAT_TOLERANCE, 1e-15 * max(abs(a), abs(b)))


def first_difference(actual: Any, expected: Any, path: str = "$") -> str | None:
    """Describe the first place where two JSON values differ, or None when equal.

    Args:
        actual: A decoded JSON value.
        expected: The decoded JSON value it should equal.
        path: The JSON path of these values, used in the description.

    Returns:
        ``None`` when the values are equal under spec §3, else a one-line description.
    """
    if _is_number(actual) and _is_number(expected):
        if _numbers_equal(actual, expected):
            return None
        return f"{path}: {actual!r} != {expected!r}"
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected)):
            a, e = actual.get(key), expected.get(key)
            if key not in actual and e is not None:
                return f"{path}.{key}: missing (expected {_short(e)})"
            if key not in expected and a is not None:
                return f"{path}.{key}: unexpected key (value {_short(a)})"
            diff = first_difference(a, e, f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return f"{path}: {len(actual)} items != {len(expected)} items"
        for index, (a, e) in enumerate(zip(actual, expected, strict=False)):
            diff = first_difference(a, e, f"{path}[{index}]")
            if diff:
                return diff
        return None
    if type(actual) is type(expected) and actual == expected:
        return None
    return f"{path}: {_short(actual)} != {_short(expected)}"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signature(entry: Any) -> tuple[Any, ...]:
    """A coarse key that equal entries share, so matching stays near-linear."""
    if not isinstance(entry, dict):
        return ("<non-object>",)
    stats = entry.get("stats")
    segments = stats.get("total_segments") if isinstance(stats, dict) else None
    windows = entry.get("windows")
    path = entry.get("audio_filepath")
    return (
        path if isinstance(path, str) else repr(path),
        segments if _is_number(segments) else None,
        len(windows) if isinstance(windows, list) else None,
    )


@dataclass
class ComparisonResult:
    """Outcome of comparing two manifests.

    Attributes:
        actual_lines: Lines read from the actual side.
        expected_lines: Lines read from the expected side.
        matched: Lines paired with an equal line on the other side.
        problems: One description per unmatched line (empty when equal).
    """

    actual_lines: int = 0
    expected_lines: int = 0
    matched: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """True when every line on each side has an equal partner."""
        return not self.problems and self.actual_lines == self.expected_lines == self.matched


def compare_entries(actual: Iterable[Any], expected: Iterable[Any]) -> ComparisonResult:
    """Match decoded entries one to one, ignoring order.

    Args:
        actual: Decoded output entries.
        expected: Decoded reference entries.

    Returns:
        The comparison, with a description of every unmatched entry.
    """
    result = ComparisonResult()
    pool: dict[tuple[Any, ...], list[tuple[str, Any]]] = defaultdict(list)
    for entry in actual:
        result.actual_lines += 1
        pool[_signature(entry)].append((_canonical(entry), entry))
    for entry in expected:
        result.expected_lines += 1
        candidates = pool.get(_signature(entry), [])
        index = _match(candidates, _canonical(entry), entry)
        if index is not None:
            del candidates[index]
            result.matched += 1
            continue
        label = _signature(entry)[0]
        if candidates:
            diff = first_difference(candidates[0][1], entry)
            result.problems.append(f"expected entry {label}: closest output differs at {diff}")
        else:
            result.problems.append(f"expected entry {label}: no output entry with its signature")
    for leftovers in pool.values():
        for _, entry in leftovers:
            result.problems.append(f"unexpected output entry {_signature(entry)[0]}")
    return result


def _canonical(entry: Any) -> str:
    """The entry as JSON text with sorted keys: equal texts are equal values (in C, fast).

    Unequal texts may still be equal values (``1`` and ``1.0``, floats within the
    tolerance, ``null`` and an absent key), which :func:`first_difference` decides.
    """
    return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def _match(candidates: list[tuple[str, Any]], canonical: str, entry: Any) -> int | None:
    """The index of the first candidate equal to ``entry``: same text first, then by value."""
    for index, (text, _) in enumerate(candidates):
        if text == canonical:
            return index
    for index, (_, candidate) in enumerate(candidates):
        if first_difference(candidate, entry) is None:
            return index
    return None


def iter_jsonl(path: str | Path) -> Iterator[Any]:
    r"""Yield decoded lines of a JSONL, ``.gz``, ``.zst`` or (our) Parquet file, or folder.

    Lines are split on ``\\n`` only: JSON strings may hold U+2028 and friends raw.
    Files whose names start with ``_`` or ``.`` are skipped, as Spark readers do.
    """
    return (json.loads(line) for line in iter_lines(path))


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield the non-blank lines of the files :func:`iter_jsonl` reads, as text."""
    root = Path(path)
    files = (
        sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root))
        if root.is_dir()
        else [root]
    )
    for file in files:
        if file.suffix == ".parquet":  # alm-spark's parquet output: the line in "entry"
            import pyarrow.parquet as pq

            yield from pq.read_table(file, columns=["entry"]).column("entry").to_pylist()
            continue
        if file.suffix == ".zst":
            import pyarrow as pa

            with pa.input_stream(str(file), compression="zstd") as stream:
                text = stream.read().decode("utf-8")
            yield from (line for line in text.split("\n") if line.strip())
            continue
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", newline="\n") as handle:
            yield from (line.rstrip("\n") for line in handle if line.strip())


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)


def compare_paths(actual: str | Path, expected: str | Path) -> ComparisonResult:
    """Compare two manifests on disk (files, ``.gz`` files or output directories).

    Lines with the same text on both sides are matched without being decoded (the same
    text is the same value); only the rest are decoded and compared by value.
    """
    actual_lines, expected_lines = Counter(iter_lines(actual)), Counter(iter_lines(expected))
    common = sum((actual_lines & expected_lines).values())
    result = compare_entries(
        (json.loads(line) for line in (actual_lines - expected_lines).elements()),
        (json.loads(line) for line in (expected_lines - actual_lines).elements()),
    )
    result.actual_lines += common
    result.expected_lines += common
    result.matched += common
    return result
