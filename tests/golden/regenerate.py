"""Regenerate the golden files with NeMo Curator's own ALM stages: ``make golden``.

For every case in :data:`CASES`, the case's input goes through nemo-curator 1.4.0's
``ALMDataBuilderStage`` then ``ALMDataOverlapStage``, one entry at a time, and the
entries they return are written to ``expected/`` the way the reference's
``ManifestWriterStage`` writes them. ``SHA256SUMS`` is rewritten last. Reruns give
identical bytes (``.gz`` files get a fixed mtime and no file name).

It runs in the environment ``make golden`` builds (``.venv-golden``: nemo-curator and
torch only), never in the project's: it imports nothing from ``alm_spark``, and the test
suite imports this file without NeMo Curator (the cases and the checksum format).

Usage::

    .venv-golden/bin/python tests/golden/regenerate.py [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
#: The reference release the golden files come from.
NEMO_CURATOR_VERSION = "1.4.0"
#: Files under tests/golden that are not golden data, so not in SHA256SUMS.
NOT_LISTED = frozenset({"README.md", "SHA256SUMS", "regenerate.py", ".gitattributes"})
#: The mtime written into regenerated ``.gz`` headers (0: "no time stamp"), for identical bytes.
GZIP_MTIME = 0

#: The shipped config's builder settings (conf/alm_pipeline.yaml; the stage's defaults too).
BUILDER_DEFAULTS: dict[str, Any] = {
    "target_window_duration": 120.0,
    "tolerance": 0.1,
    "min_bandwidth": 8000,
    "min_sample_rate": 16000,
    "min_speakers": 2,
    "max_speakers": 5,
    "truncation": True,
    "drop_fields": "words",
    "drop_fields_top_level": "words,segments",
}
#: The shipped config's overlap settings: the stage's class defaults to 0, the config to 50.
OVERLAP_DEFAULTS: dict[str, Any] = {"overlap_percentage": 50, "target_duration": 120.0}


@dataclass(frozen=True)
class Case:
    """One golden case: an input under tests/golden and the settings that differ.

    Attributes:
        source: The input file or folder, relative to tests/golden.
        expected: The output file's name in ``expected/`` (``.gz``: gzip-compressed).
        builder: ``ALMDataBuilderStage`` arguments that differ from :data:`BUILDER_DEFAULTS`.
        overlap: ``ALMDataOverlapStage`` arguments that differ from :data:`OVERLAP_DEFAULTS`.
    """

    source: str
    expected: str
    builder: dict[str, Any] = field(default_factory=dict)
    overlap: dict[str, Any] = field(default_factory=dict)

    def builder_args(self) -> dict[str, Any]:
        """The builder stage's keyword arguments for this case."""
        return {**BUILDER_DEFAULTS, **self.builder}

    def overlap_args(self) -> dict[str, Any]:
        """The overlap stage's keyword arguments for this case."""
        return {**OVERLAP_DEFAULTS, **self.overlap}


#: The cases of tests/golden/README.md (tests/conftest.py's GOLDEN_CASES, in stage arguments).
CASES: tuple[Case, ...] = (
    Case("sample_input.jsonl", "sample_input.default.jsonl"),
    Case("sample_input.jsonl", "sample_input.overlap0.jsonl", overlap={"overlap_percentage": 0}),
    Case(
        "sample_input.jsonl", "sample_input.overlap100.jsonl", overlap={"overlap_percentage": 100}
    ),
    Case(
        "sample_input.jsonl",
        "sample_input.t60.jsonl",
        builder={"target_window_duration": 60.0, "tolerance": 0.15},
        overlap={"target_duration": 60.0},
    ),
    Case("nested_manifests", "nested.default.jsonl"),
    Case("parity/realistic.jsonl.gz", "realistic.default.jsonl.gz"),
    Case(
        "parity/realistic.jsonl.gz",
        "realistic.variant.jsonl.gz",
        builder={
            "truncation": False,
            "min_speakers": 1,
            "max_speakers": 7,
            "min_bandwidth": 4000,
            "drop_fields": "words,text",
            "drop_fields_top_level": "segments",
        },
        overlap={"overlap_percentage": 100},
    ),
    Case("parity/adversarial.jsonl.gz", "adversarial.default.jsonl.gz"),
)


def listed_files(root: Path = HERE) -> list[str]:
    """The files under ``root`` that SHA256SUMS lists: all but :data:`NOT_LISTED` and caches.

    Args:
        root: The golden folder.

    Returns:
        Their paths relative to ``root``, with ``/``, sorted.
    """
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and p.relative_to(root).as_posix() not in NOT_LISTED
        and "__pycache__" not in p.relative_to(root).parts
    )


def sha256sums(root: Path = HERE) -> str:
    """The text of SHA256SUMS for ``root``, in ``sha256sum`` format (``sha256sum -c`` reads it).

    Args:
        root: The golden folder.

    Returns:
        One ``<hex>  <path>`` line per listed file, sorted by path.
    """
    return "".join(
        f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n"
        for name in listed_files(root)
    )


def _import_reference() -> tuple[type[Any], type[Any], type[Any], Any]:
    """Import the two ALM stages, ``AudioTask`` and the reference's file lister.

    ``nemo_curator.stages.audio.alm`` also imports its audio-pretrain subpackage
    (``nemo_curator.stages.audio.alm.pretrain``), which needs soundfile and torchaudio
    (torchaudio has no build for the pinned torch here) and which neither ALM stage uses.
    That one import is stubbed: an empty module stands in for the subpackage, and any name
    taken from it is a placeholder class. Nothing else is replaced.

    Returns:
        ``ALMDataBuilderStage``, ``ALMDataOverlapStage``, ``AudioTask`` and
        ``get_all_file_paths_under``.
    """
    installed = metadata.version("nemo-curator")
    if installed != NEMO_CURATOR_VERSION:
        sys.exit(f"regenerate.py: nemo-curator {NEMO_CURATOR_VERSION} needed, {installed} found")

    stub = types.ModuleType("nemo_curator.stages.audio.alm.pretrain")
    stub.__doc__ = "Stand-in for the audio-pretrain subpackage (tests/golden/regenerate.py)."

    def placeholder(name: str) -> type[Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__module__": stub.__name__})

    stub.__getattr__ = placeholder  # PEP 562: names taken from the stub
    sys.modules[stub.__name__] = stub

    from nemo_curator.stages.audio.alm import ALMDataBuilderStage, ALMDataOverlapStage
    from nemo_curator.tasks import AudioTask
    from nemo_curator.utils.file_utils import get_all_file_paths_under

    return ALMDataBuilderStage, ALMDataOverlapStage, AudioTask, get_all_file_paths_under


def _entries(source: Path, list_files: Any) -> Iterator[dict[str, Any]]:
    """The entries of an input, read as the reference's ``ManifestReader`` reads them.

    Files are found as its ``FilePartitioningStage`` finds them (``.jsonl``/``.json``
    under a folder, recursively, sorted by path; ``notes.txt`` is left out), and each
    non-blank line is ``json.loads(line.strip())``, as in its ``ManifestReaderStage``
    (nemo_curator/stages/audio/common.py, not imported: it needs soundfile). The
    reference reads no ``.gz``, so a ``.gz`` input is decompressed here first.

    Args:
        source: An input file or folder.
        list_files: The reference's ``get_all_file_paths_under``.

    Yields:
        One decoded entry per non-blank line, in file and line order.
    """
    paths = (
        [str(source)]
        if source.name.endswith(".gz")
        else list_files(
            str(source), recurse_subdirectories=True, keep_extensions=[".jsonl", ".json"]
        )
    )
    for path in paths:
        with _open_text(path) as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line.strip())


def _open_text(path: str) -> TextIO:
    """A manifest opened as text (universal newlines, as the reference's fsspec opens it)."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _gzip(data: bytes) -> bytes:
    """Gzip ``data`` at level 9 with a fixed mtime and no file name: the same bytes every run."""
    buffer = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=GZIP_MTIME
    ) as f:
        f.write(data)
    return buffer.getvalue()


def run_case(case: Case, reference: tuple[type[Any], type[Any], type[Any], Any]) -> bytes:
    """The expected file's bytes for one case, from the reference's stages.

    Args:
        case: The case.
        reference: What :func:`_import_reference` returns.

    Returns:
        The file's bytes (gzip-compressed for a ``.gz`` name).
    """
    builder_cls, overlap_cls, task_cls, list_files = reference
    builder = builder_cls(**case.builder_args())
    overlap = overlap_cls(**case.overlap_args())
    lines = []
    for entry in _entries(HERE / case.source, list_files):
        task = overlap.process(builder.process(task_cls(data=entry)))
        # As ManifestWriterStage.process writes each task.
        lines.append(json.dumps(task.data, ensure_ascii=False) + "\n")
    data = "".join(lines).encode("utf-8")
    return _gzip(data) if case.expected.endswith(".gz") else data


def main(argv: list[str] | None = None) -> int:
    """Regenerate every case's expected file, then SHA256SUMS.

    Args:
        argv: Command-line arguments (``--check``: write nothing, fail if a file would change).

    Returns:
        The exit code: 0, or 1 when ``--check`` found a difference.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file would change"
    )
    args = parser.parse_args(argv)
    reference = _import_reference()
    changed = []
    for case in CASES:
        target = HERE / "expected" / case.expected
        data = run_case(case, reference)
        same = target.is_file() and target.read_bytes() == data
        print(f"{'unchanged' if same else 'differs  '}  expected/{case.expected}")
        if not same:
            changed.append(target)
            if not args.check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    sums = HERE / "SHA256SUMS"
    text = sha256sums()
    if not sums.is_file() or sums.read_text(encoding="utf-8") != text or changed:
        print("differs    SHA256SUMS")
        changed.append(sums)
        if not args.check:
            sums.write_text(text, encoding="utf-8")
    else:
        print("unchanged  SHA256SUMS")
    verb = "would change" if args.check else "rewritten"
    print(f"{len(changed)} file(s) {verb}" + "".join(f"\n  {p.relative_to(HERE)}" for p in changed))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
