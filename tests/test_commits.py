"""The commit log (alm_spark.storage.commits): records, generations, races, checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alm_spark.storage.commits import (
    COMMITS_DIR,
    LAST_CHECKPOINT,
    Commit,
    CommitConflict,
    CommitLog,
    CommitLogError,
    DataFile,
    InputFile,
    LogState,
    record_path,
)
from alm_spark.storage.fs import FsspecFileSystem

A = InputFile("file:///in/a.jsonl", 10, "1700000000.0")
B = InputFile("file:///in/b.jsonl", 20, "1700000001.0")
SETTINGS = {"builder": {"target_window_duration": 120}}


def part(name: str, *inputs: InputFile) -> DataFile:
    return DataFile(name, "entries", tuple(i.uri for i in inputs))


@pytest.fixture
def log(tmp_path: Path) -> CommitLog:
    return CommitLog(FsspecFileSystem(), str(tmp_path / "out"))


def first_generation(log: CommitLog) -> LogState:
    """A first run: opens generation 1 with one step, a second step, then closes it."""
    state = log.append(LogState(), Commit(1, 1, "r1", opens=True, settings=SETTINGS))
    state = log.append(state, Commit(2, 1, "r1", step=1, inputs=(A,), added=(part("p-1", A),)))
    assert state.live_files == {}  # an open generation is pending, not the output
    assert state.pending is not None
    assert set(state.pending.files) == {"p-1"}
    state = log.append(state, Commit(3, 1, "r1", step=2, inputs=(B,), added=(part("p-2", B),)))
    return log.append(state, Commit(4, 1, "r1", closes=True))


def test_an_empty_log_has_no_files(log: CommitLog) -> None:
    assert log.read() == LogState()
    assert log.read().next_generation == 1


def test_a_generation_is_the_output_once_closed(log: CommitLog) -> None:
    state = first_generation(log)
    assert sorted(state.live_files) == ["p-1", "p-2"]
    assert state.pending is None
    assert state.live is not None
    assert state.live.settings == SETTINGS
    assert sorted(state.live.inputs) == [A.uri, B.uri]
    assert log.read() == state  # what was appended is what a reader replays


def test_update_steps_are_live_at_once_and_retire_what_they_replace(log: CommitLog) -> None:
    state = first_generation(log)
    changed = InputFile(A.uri, 11, "1700000100.0")
    step = Commit(5, 1, "r2", inputs=(changed,), added=(part("p-3", changed),),
                  retired=("p-1",))  # fmt: skip
    state = log.append(state, step)
    assert sorted(state.live_files) == ["p-2", "p-3"]
    assert state.live is not None
    assert state.live.inputs[A.uri] == changed
    assert state.retired == ("p-1",)
    assert log.read() == state


def test_a_retired_step_takes_its_inputs_and_figures_with_it(log: CommitLog) -> None:
    state = log.append(LogState(), Commit(1, 1, "r1", opens=True, settings=SETTINGS))
    first = Commit(2, 1, "r1", step=1, inputs=(A, B), added=(part("part-0001-000001-x", A),),
                   figures={"n": 1})  # fmt: skip
    state = log.append(state, first)
    state = log.append(state, Commit(3, 1, "r1", closes=True))
    assert state.live is not None
    assert state.live.step_files(1) == ["part-0001-000001-x"]
    # A changed A retires step 1; B, still listed, is processed again in step 2.
    changed = InputFile(A.uri, 11, "1700000100.0")
    again = Commit(4, 1, "r2", step=2, inputs=(changed, B), retired=("part-0001-000001-x",),
                   retired_steps=(1,), added=(part("part-0001-000002-y", changed),),
                   figures={"n": 2})  # fmt: skip
    state = log.append(state, again)
    assert state.live is not None
    assert state.live.figures == {2: {"n": 2}}
    assert state.live.input_steps == {A.uri: 2, B.uri: 2}
    assert state.live.inputs[A.uri] == changed
    assert sorted(state.live_files) == ["part-0001-000002-y"]
    assert log.read() == state


def test_a_killed_overwrite_leaves_the_old_output_live(log: CommitLog) -> None:
    state = first_generation(log)
    state = log.append(state, Commit(5, 2, "r2", opens=True, settings={"other": 1}))
    state = log.append(state, Commit(6, 2, "r2", inputs=(A,), added=(part("q-1", A),)))
    reread = log.read()  # the run was killed here
    assert sorted(reread.live_files) == ["p-1", "p-2"]
    assert reread.pending is not None
    assert reread.pending.settings == {"other": 1}
    assert reread.next_generation == 3
    # A later run resumes generation 2 and closes it: generation 1 retires.
    state = log.append(reread, Commit(7, 2, "r3", inputs=(B,), added=(part("q-2", B),)))
    state = log.append(state, Commit(8, 2, "r3", closes=True))
    assert sorted(state.live_files) == ["q-1", "q-2"]
    assert sorted(state.retired) == ["p-1", "p-2"]


def test_a_new_overwrite_abandons_an_open_generation(log: CommitLog) -> None:
    state = first_generation(log)
    state = log.append(state, Commit(5, 2, "r2", opens=True))
    state = log.append(state, Commit(6, 2, "r2", added=(part("q-1", A),)))
    state = log.append(state, Commit(7, 3, "r3", opens=True))
    assert state.retired == ("q-1",)
    assert state.pending is not None
    assert state.pending.number == 3
    assert sorted(state.live_files) == ["p-1", "p-2"]


def test_the_loser_of_a_race_for_a_record_aborts(log: CommitLog) -> None:
    state = log.append(LogState(), Commit(1, 1, "r1", opens=True))
    rival = CommitLog(log.fs, log.output)
    rival.append(state, Commit(2, 1, "rival", added=(part("x", A),)))
    with pytest.raises(CommitConflict, match=r"another run committed record 2 of .* first"):
        log.append(state, Commit(2, 1, "r1", added=(part("p-1", A),)))
    pending = log.read().pending
    assert pending is not None
    assert sorted(pending.files) == ["x"]


def test_a_retried_record_that_landed_is_taken_as_written(log: CommitLog) -> None:
    """An upload that failed after landing is retried: the record is this writer's own."""
    state = log.append(LogState(), Commit(1, 1, "r1", opens=True))
    commit = Commit(2, 1, "r1", added=(part("p-1", A),))
    Path(record_path(log.output, 2)).write_text(json.dumps(commit.to_json()))
    assert log.append(state, commit) == log.read()


def test_a_record_that_does_not_apply_is_never_written(log: CommitLog) -> None:
    with pytest.raises(CommitLogError, match="generation 4, which is neither live nor open"):
        log.append(LogState(), Commit(1, 4, "r1"))
    assert not Path(record_path(log.output, 1)).exists()
    with pytest.raises(ValueError, match="commit 3 cannot follow record 0"):
        log.append(LogState(), Commit(3, 1, "r1", opens=True))


@pytest.mark.parametrize("hint", ["6", "3", "garbage", None])
def test_checkpoints_give_the_same_state_as_replaying_every_record(
    tmp_path: Path, hint: str | None
) -> None:
    out = str(tmp_path / "out")
    log = CommitLog(FsspecFileSystem(), out, checkpoint_interval=3)
    state = first_generation(log)
    for number in (5, 6, 7):
        added = (part(f"u-{number}", A),)
        record = Commit(number, 1, "r2", step=number - 2, added=added, figures={"n": number})
        state = log.append(state, record)
    commits = Path(out) / COMMITS_DIR
    assert sorted(p.name for p in commits.glob("*.checkpoint.json")) == [
        f"{3:020d}.checkpoint.json",
        f"{6:020d}.checkpoint.json",
    ]
    hint_path = commits / LAST_CHECKPOINT
    assert hint_path.read_text() == "6"
    if hint is None:
        hint_path.unlink()
    else:
        hint_path.write_text(hint)  # a lagging or damaged hint costs reads only
    replayed = CommitLog(FsspecFileSystem(), out, checkpoint_interval=1000).read()
    assert replayed == state == log.read()
    assert replayed.live is not None
    assert {step: f["n"] for step, f in replayed.live.figures.items()} == {3: 5, 4: 6, 5: 7}
    assert replayed.live.last_step == 5


def test_damaged_and_newer_records_are_refused_by_name(log: CommitLog) -> None:
    state = log.append(LogState(), Commit(1, 1, "r1", opens=True))
    path = Path(record_path(log.output, 2))
    path.write_text("{not json")
    with pytest.raises(CommitLogError, match=re.escape(f"{path}: not a commit record")):
        log.read()
    newer = {**Commit(2, 1, "r1").to_json(), "format": 99}
    path.write_text(json.dumps(newer))
    with pytest.raises(CommitLogError, match="format 99 is newer than this alm_spark reads"):
        log.read()
    assert state.last == 1
