"""The commit log: which data files of an output are live, decided by small records.

Data files are written once, under their final names, by the tasks that make them; they
are never renamed or copied. What makes them part of the output is a commit record the
driver creates afterwards, exclusively, under the output::

    _commits/00000000000000000001.json             one record per commit
    _commits/00000000000000000100.checkpoint.json  the whole state as of record 100
    _commits/_last_checkpoint                      a hint: the newest checkpoint's number

Records are numbered from 1 without gaps. A writer creates record ``N`` only if no
record ``N`` exists (``O_EXCL`` locally, ``If-None-Match: *`` on S3 and Azure,
``ifGenerationMatch=0`` on GCS, ``create(overwrite=false)`` on HDFS); the loser of a race
for a number aborts (:class:`CommitConflict`). Reading the log loads the newest
checkpoint the hint names, then reads records forward until one is missing: a reader
never lists the data folders, and never more than a checkpoint interval of records.

Files belong to a *generation*. A run in ``overwrite`` mode opens a new one; its records
add files that stay pending until the record that closes the generation, which retires
every older generation in the same step. So a killed overwrite leaves the old output
live, and a later run can resume the open generation under the settings it recorded.
Records of the live generation (``update`` steps) are live as soon as they exist.

This module knows paths relative to the output, input identities and figures; it does
not know Spark. It imports no pyspark.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from alm_spark.storage.datafiles import step_prefix
from alm_spark.storage.fs import FileSystem, join

log = logging.getLogger(__name__)

#: The commit log's folder under the output.
COMMITS_DIR = "_commits"
#: The hint naming the newest checkpoint (overwritten; a lagging hint only costs reads).
LAST_CHECKPOINT = "_last_checkpoint"
#: Record format; a reader refuses a newer one instead of misreading it.
FORMAT = 1
#: A checkpoint after every this many records keeps a reader's work bounded.
CHECKPOINT_INTERVAL = 100
_DIGITS = 20


class CommitConflict(RuntimeError):
    """Another writer created the record this one meant to create."""


class CommitLogError(RuntimeError):
    """The commit log cannot be read: a record is damaged or of a newer format."""


@dataclass(frozen=True)
class InputFile:
    """One input file as committed: where it is and which version of it was read.

    Attributes:
        uri: The normalized location (see :func:`normalize_uri`).
        size: Bytes.
        version: The ETag or generation on object stores, the modification time elsewhere.
    """

    uri: str
    size: int
    version: str

    def to_json(self) -> dict[str, Any]:
        """The record's form."""
        return {"uri": self.uri, "size": self.size, "version": self.version}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputFile:
        """Read the record's form."""
        return cls(str(data["uri"]), int(data["size"]), str(data["version"]))


@dataclass(frozen=True)
class DataFile:
    """A data file a commit made live.

    Attributes:
        path: Relative to the output (``part-...jsonl``, ``_shards/...``).
        kind: What it holds (``entries``, ``rejected``, ``windows``, ``shard``, ...).
        inputs: URIs of the input files whose entries or clips it holds.
        step: The commit step that made it live (set from its record's step; numbered
            shards' names do not say it).
    """

    path: str
    kind: str
    inputs: tuple[str, ...] = ()
    step: int = 0

    def to_json(self) -> dict[str, Any]:
        """The record's form (and, in a checkpoint, its step)."""
        data = {"path": self.path, "kind": self.kind, "inputs": list(self.inputs)}
        return {**data, "step": self.step} if self.step else data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataFile:
        """Read the record's form."""
        inputs = tuple(data.get("inputs", ()))
        return cls(str(data["path"]), str(data["kind"]), inputs, int(data.get("step", 0)))


@dataclass(frozen=True)
class Commit:
    """One record: what a step of a run made live or retired.

    Attributes:
        number: Its place in the log, from 1.
        generation: The generation it belongs to.
        step: The commit step of the generation whose files and inputs it records
            (numbered from 1; 0 for a record that only opens, closes or purges).
        run_id: The run that wrote it.
        opens: It opens ``generation`` (an ``overwrite`` run's first record).
        closes: It closes ``generation``: the generation becomes live, older ones retire.
        settings: The output-changing settings (on the record that opens a generation).
        inputs: Input files this step processed.
        added: Data files this step made live (or pending, in an open generation).
        retired: Paths of files this step retired (a changed input's old outputs).
        retired_steps: Earlier steps whose files are all in ``retired``: their inputs
            and figures leave the generation (their inputs still listed are in this
            step again).
        moves: ``(from, to)`` paths of files still to be moved into place: written only
            by versions that cut audio shards in scratch (this one writes every file
            under its final name); a run that finds them unfinished finishes them first.
        purges: The files retired before this record are deleted.
        figures: The step's figures, summed into ``_metrics.json``.
        writer: A token unique to the writer, to recognize its own record after an
            ambiguous failure (a retried upload that had landed).
    """

    number: int
    generation: int
    run_id: str
    step: int = 0
    opens: bool = False
    closes: bool = False
    settings: Mapping[str, Any] | None = None
    inputs: tuple[InputFile, ...] = ()
    added: tuple[DataFile, ...] = ()
    retired: tuple[str, ...] = ()
    retired_steps: tuple[int, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()
    purges: bool = False
    figures: Mapping[str, Any] = field(default_factory=dict)
    writer: str = field(default_factory=lambda: secrets.token_hex(8))

    def to_json(self) -> dict[str, Any]:
        """The record's form."""
        return {
            "format": FORMAT,
            "number": self.number,
            "generation": self.generation,
            "run_id": self.run_id,
            "step": self.step,
            "writer": self.writer,
            "opens": self.opens,
            "closes": self.closes,
            "settings": self.settings,
            "inputs": [i.to_json() for i in self.inputs],
            "added": [f.to_json() for f in self.added],
            "retired": list(self.retired),
            "retired_steps": list(self.retired_steps),
            "moves": [list(move) for move in self.moves],
            "purges": self.purges,
            "figures": dict(self.figures),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Commit:
        """Read the record's form."""
        _check_format(data)
        return cls(
            number=int(data["number"]),
            generation=int(data["generation"]),
            run_id=str(data["run_id"]),
            step=int(data.get("step", 0)),
            opens=bool(data["opens"]),
            closes=bool(data["closes"]),
            settings=data.get("settings"),
            inputs=tuple(InputFile.from_json(i) for i in data["inputs"]),
            added=tuple(DataFile.from_json(f) for f in data["added"]),
            retired=tuple(data["retired"]),
            retired_steps=tuple(int(n) for n in data.get("retired_steps") or ()),
            moves=tuple((str(a), str(b)) for a, b in data.get("moves") or ()),
            purges=bool(data.get("purges", False)),
            figures=dict(data.get("figures") or {}),
            writer=str(data["writer"]),
        )


@dataclass(frozen=True)
class Generation:
    """The state of one generation: its settings, inputs, files and figures by step.

    Attributes:
        number: The generation's number.
        settings: The settings recorded when it opened.
        closed: Whether its closing record exists (it is, or was, the live one).
        inputs: Committed input files by URI.
        input_steps: The step that committed each input, by URI.
        files: Committed data files by path.
        figures: Each step's figures, by step.
        last_step: The highest step recorded (a new step takes the next number).
    """

    number: int
    settings: Mapping[str, Any] | None
    closed: bool = False
    inputs: Mapping[str, InputFile] = field(default_factory=dict)
    input_steps: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, DataFile] = field(default_factory=dict)
    figures: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    last_step: int = 0

    def apply(self, commit: Commit) -> Generation:
        """This generation after one of its records."""
        retired, gone = set(commit.retired), set(commit.retired_steps)
        files = {p: f for p, f in self.files.items() if p not in retired}
        files.update((f.path, replace(f, step=commit.step)) for f in commit.added)
        steps = {u: n for u, n in self.input_steps.items() if n not in gone}
        steps.update((i.uri, commit.step) for i in commit.inputs)
        inputs = dict(self.inputs)
        inputs.update((i.uri, i) for i in commit.inputs)
        inputs = {u: i for u, i in inputs.items() if u in steps}
        figures = {n: f for n, f in self.figures.items() if n not in gone}
        if commit.figures:
            figures[commit.step] = commit.figures
        return replace(
            self,
            closed=self.closed or commit.closes,
            inputs=inputs,
            input_steps=steps,
            files=files,
            figures=figures,
            last_step=max(self.last_step, commit.step),
        )

    def step_files(self, step: int) -> list[str]:
        """The paths of the files step ``step`` made live.

        Files recorded before steps were (an adopted output's: step 0) are the step's
        whose name starts with its prefix.
        """
        prefix = step_prefix(self.number, step)
        return [
            path
            for path, file in self.files.items()
            if file.step == step or (not file.step and path.rsplit("/", 1)[-1].startswith(prefix))
        ]

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's form."""
        return {
            "number": self.number,
            "settings": self.settings,
            "closed": self.closed,
            "inputs": [
                {**i.to_json(), "step": self.input_steps[u]} for u, i in self.inputs.items()
            ],
            "files": [f.to_json() for f in self.files.values()],
            "figures": {str(n): f for n, f in self.figures.items()},
            "last_step": self.last_step,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Generation:
        """Read the checkpoint's form."""
        inputs = [(InputFile.from_json(i), int(i.get("step", 0))) for i in data["inputs"]]
        files = (DataFile.from_json(f) for f in data["files"])
        return cls(
            number=int(data["number"]),
            settings=data.get("settings"),
            closed=bool(data["closed"]),
            inputs={i.uri: i for i, _ in inputs},
            input_steps={i.uri: n for i, n in inputs},
            files={f.path: f for f in files},
            figures=_figures_by_step(data.get("figures")),
            last_step=int(data.get("last_step", 0)),
        )


def _figures_by_step(data: Any) -> dict[int, Mapping[str, Any]]:
    """Figures by step (a list: an early checkpoint's, all of step 0)."""
    if isinstance(data, list):
        return {0: data[-1]} if data else {}
    return {int(n): f for n, f in (data or {}).items()}


@dataclass(frozen=True)
class LogState:
    """The commit log replayed: the live generation and the open one, if any.

    Attributes:
        last: The number of the newest record (0 for an empty log).
        live: The newest closed generation, whose files are the output.
        pending: A generation opened after it and not closed yet (a run in progress,
            or one that was killed).
        retired: Files of generations closed over, which the run that closed them
            deletes at its end (a trainer may still be reading them meanwhile).
        moves: The newest record's moves, unfinished if their sources still exist.
    """

    last: int = 0
    live: Generation | None = None
    pending: Generation | None = None
    retired: tuple[str, ...] = ()
    moves: tuple[tuple[str, str], ...] = ()

    @property
    def live_files(self) -> Mapping[str, DataFile]:
        """The output's data files by path (none before a generation closes)."""
        return self.live.files if self.live else {}

    @property
    def recorded_files(self) -> set[str]:
        """The paths a record made live or pending: no run may delete or reuse them."""
        return {*self.live_files, *(self.pending.files if self.pending else ())}

    @property
    def next_generation(self) -> int:
        """The number a new generation gets."""
        numbers = [g.number for g in (self.live, self.pending) if g is not None]
        return max(numbers, default=0) + 1

    def apply(self, commit: Commit) -> LogState:
        """The state after the next record."""
        if commit.number != self.last + 1:
            raise CommitLogError(f"record {commit.number} follows record {self.last}")
        live, pending = self.live, self.pending
        retired = [] if commit.purges else list(self.retired)
        if commit.opens:
            if pending is not None:  # an abandoned overwrite: its files are dead
                retired.extend(pending.files)
            pending = Generation(commit.generation, commit.settings)
        in_pending = pending is not None and pending.number == commit.generation
        target = pending if in_pending else live
        if target is None or target.number != commit.generation:
            raise CommitLogError(
                f"record {commit.number} is for generation {commit.generation}, "
                "which is neither live nor open"
            )
        retired.extend(p for p in commit.retired if p in target.files)
        updated = target.apply(commit)
        if not in_pending:
            live = updated
        elif updated.closed:  # the open generation becomes the output; the old one retires
            if live is not None:
                retired.extend(live.files)
            live, pending = updated, None
        else:
            pending = updated
        return LogState(commit.number, live, pending, tuple(retired), commit.moves)

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's form."""
        return {
            "format": FORMAT,
            "last": self.last,
            "live": self.live.to_json() if self.live else None,
            "pending": self.pending.to_json() if self.pending else None,
            "retired": list(self.retired),
            "moves": [list(move) for move in self.moves],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogState:
        """Read the checkpoint's form."""
        _check_format(data)
        live, pending = data.get("live"), data.get("pending")
        return cls(
            last=int(data["last"]),
            live=Generation.from_json(live) if live else None,
            pending=Generation.from_json(pending) if pending else None,
            retired=tuple(data.get("retired") or ()),
            moves=tuple((str(a), str(b)) for a, b in data.get("moves") or ()),
        )


def _check_format(data: Mapping[str, Any]) -> None:
    if int(data.get("format", 0)) > FORMAT:
        raise CommitLogError(
            f"commit log format {data['format']} is newer than this alm_spark reads "
            f"({FORMAT}); upgrade alm_spark"
        )


def record_path(output: str, number: int) -> str:
    """Where record ``number`` of an output's log lives."""
    return join(output, COMMITS_DIR, f"{number:0{_DIGITS}d}.json")


def checkpoint_path(output: str, number: int) -> str:
    """Where the checkpoint as of record ``number`` lives."""
    return join(output, COMMITS_DIR, f"{number:0{_DIGITS}d}.checkpoint.json")


class CommitLog:
    """An output's commit log, read and appended by the driver.

    Args:
        fs: The driver's file system.
        output: The output path.
        checkpoint_interval: Records between checkpoints.
    """

    def __init__(
        self, fs: FileSystem, output: str, checkpoint_interval: int = CHECKPOINT_INTERVAL
    ) -> None:
        self.fs = fs
        self.output = output
        self.checkpoint_interval = checkpoint_interval

    def read(self) -> LogState:
        """The log's state: the newest checkpoint the hint names, then records forward."""
        state = self._checkpoint()
        while True:
            path = record_path(self.output, state.last + 1)
            if not self.fs.exists(path):
                return state
            state = state.apply(self._load(path))

    def append(self, state: LogState, commit: Commit) -> LogState:
        """Create ``commit`` as the record after ``state``; return the new state.

        Raises:
            CommitConflict: When another writer created that record first.
        """
        if commit.number != state.last + 1:
            raise ValueError(f"commit {commit.number} cannot follow record {state.last}")
        new_state = state.apply(commit)  # a record that does not apply is never written
        path = record_path(self.output, commit.number)
        text = json.dumps(commit.to_json(), sort_keys=True)
        try:
            created = self.fs.create_exclusive(path, text)
        except OSError:
            # An upload that failed may have landed: the record says whose it is.
            created = self._written_by(path, commit.writer)
            if not created and not self.fs.exists(path):
                raise
        else:
            created = created or self._written_by(path, commit.writer)
        if not created:
            raise CommitConflict(
                f"another run committed record {commit.number} of {self.output} first"
            )
        if commit.number % self.checkpoint_interval == 0:
            try:
                self._write_checkpoint(new_state)
            except Exception:  # the record is committed; a missing checkpoint costs reads
                log.warning("could not write the checkpoint of record %d", commit.number)
        return new_state

    def _written_by(self, path: str, writer: str) -> bool:
        for attempt in range(3):  # a record just written may not read back at once
            try:
                return bool(json.loads(self.fs.read_text(path)).get("writer") == writer)
            except Exception:  # absent or unreadable: not ours as far as we can tell
                time.sleep(0.2 * (attempt + 1))
        return False

    def _write_checkpoint(self, state: LogState) -> None:
        text = json.dumps(state.to_json(), sort_keys=True)
        self.fs.write_text(checkpoint_path(self.output, state.last), text)
        self.fs.write_text(join(self.output, COMMITS_DIR, LAST_CHECKPOINT), str(state.last))

    def _checkpoint(self) -> LogState:
        hint = join(self.output, COMMITS_DIR, LAST_CHECKPOINT)
        if not self.fs.exists(hint):
            return LogState()
        try:
            number = int(self.fs.read_text(hint).strip())
        except ValueError:  # a damaged hint costs reads, not correctness
            return LogState()
        path = checkpoint_path(self.output, number)
        if not self.fs.exists(path):
            return LogState()
        return LogState.from_json(self._json(path))

    def _load(self, path: str) -> Commit:
        return Commit.from_json(self._json(path))

    def _json(self, path: str) -> dict[str, Any]:
        text = self.fs.read_text(path)
        try:
            data = json.loads(text)
        except ValueError as err:
            raise CommitLogError(f"{path}: not a commit record ({err})") from err
        if not isinstance(data, dict):
            raise CommitLogError(f"{path}: not a commit record")
        return data


def live_files(fs: FileSystem, output: str) -> Mapping[str, DataFile]:
    """The data files of an output by path (relative to it), as its commit log says.

    A reader that must not wait for ``_SUCCESS`` (a run may be adding to the output)
    reads this instead of listing the folders: files that are pending, or retired and
    not yet deleted, are not in it.
    """
    return CommitLog(fs, output).read().live_files
