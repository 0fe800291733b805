"""The golden files in tests/golden are the ones SHA256SUMS lists, byte for byte (no Spark).

Also: the cases ``make golden`` regenerates (tests/golden/regenerate.py) are the golden
tests' cases, with the same settings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from types import ModuleType
from typing import Any

from alm_spark import load_config
from tests.conftest import GOLDEN, GOLDEN_CASES, REPO

SUMS = GOLDEN / "SHA256SUMS"
_LINE = re.compile(r"(?P<digest>[0-9a-f]{64}) [ *](?P<name>\S.*)")


def _regenerate() -> ModuleType:
    """tests/golden/regenerate.py, imported without NeMo Curator and without a __pycache__."""
    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN / "regenerate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
        del sys.modules[spec.name]
    return module


def _listed() -> dict[str, str]:
    """SHA256SUMS as {path: digest}; fails naming a malformed or repeated line."""
    listed: dict[str, str] = {}
    for number, line in enumerate(SUMS.read_text(encoding="utf-8").splitlines(), 1):
        match = _LINE.fullmatch(line)
        assert match, f"SHA256SUMS line {number} is not '<sha256>  <path>': {line!r}"
        assert match["name"] not in listed, f"SHA256SUMS lists {match['name']} twice"
        listed[match["name"]] = match["digest"]
    return listed


def test_every_listed_file_has_its_checksum() -> None:
    problems = []
    for name, digest in _listed().items():
        path = GOLDEN / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: sha256 differs from SHA256SUMS")
    assert problems == [], "tests/golden: " + "; ".join(problems)


def test_every_file_is_listed() -> None:
    unlisted = sorted(set(_regenerate().listed_files(GOLDEN)) - set(_listed()))
    assert unlisted == [], f"tests/golden: not in SHA256SUMS: {', '.join(unlisted)}"


def test_sums_are_what_regenerate_writes() -> None:
    """Sorted, ``sha256sum`` format: what ``make golden`` writes, so it leaves no diff."""
    assert SUMS.read_text(encoding="utf-8") == _regenerate().sha256sums(GOLDEN)


def _as_config(args: dict[str, Any]) -> dict[str, Any]:
    """Stage arguments in the form of the job's config (comma lists as lists)."""
    return {
        key: [item.strip() for item in value.split(",") if item.strip()]
        if key.startswith("drop_fields")
        else value
        for key, value in args.items()
    }


def test_regenerated_cases_are_the_golden_cases() -> None:
    cases = {case.expected: case for case in _regenerate().CASES}
    assert sorted(cases) == sorted(expected for _, _, expected in GOLDEN_CASES)
    for source, overrides, expected in GOLDEN_CASES:
        case = cases[expected]
        assert case.source == source, expected
        config = load_config(None, overrides).to_dict()
        assert _as_config(case.builder_args()) == config["builder"], expected
        assert _as_config(case.overlap_args()) == config["overlap"], expected


def test_defaults_are_the_shipped_config() -> None:
    regenerate = _regenerate()
    config = load_config(str(REPO / "conf" / "alm_pipeline.yaml"))
    shipped = config.to_dict()
    assert _as_config(regenerate.BUILDER_DEFAULTS) == shipped["builder"]
    assert _as_config(regenerate.OVERLAP_DEFAULTS) == shipped["overlap"]
