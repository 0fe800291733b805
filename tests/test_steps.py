"""Which input files a run processes, and in which steps (no Spark)."""

from __future__ import annotations

from alm_spark.storage.commits import Commit, DataFile, Generation, InputFile
from alm_spark.storage.steps import plan_inputs, split_into_steps


def _file(name: str, size: int = 10, version: str = "1") -> InputFile:
    return InputFile(f"/in/{name}", size, version)


def _generation() -> Generation:
    """a and b committed by step 1, c by step 2; each step wrote one part file."""
    generation = Generation(1, {"builder": {}})
    step_one = Commit(2, 1, "r1", step=1, inputs=(_file("a"), _file("b")),
                      added=(DataFile("part-0001-000001-r1-00000-1.jsonl", "entry"),))  # fmt: skip
    step_two = Commit(3, 1, "r1", step=2, inputs=(_file("c"),),
                      added=(DataFile("part-0001-000002-r1-00000-2.jsonl", "entry"),))  # fmt: skip
    return generation.apply(step_one).apply(step_two)


def test_a_first_run_processes_everything() -> None:
    listed = [_file("a"), _file("b")]
    plan = plan_inputs(None, listed)
    assert (plan.process, plan.new, plan.skipped) == (tuple(listed), 2, 0)


def test_committed_files_are_skipped_and_new_ones_processed() -> None:
    listed = [_file("a"), _file("b"), _file("c"), _file("d")]
    plan = plan_inputs(_generation(), listed)
    assert plan.process == (_file("d"),)
    assert (plan.new, plan.changed, plan.skipped) == (1, 0, 3)
    assert (plan.retire_steps, plan.retire_files, plan.unlisted) == ((), (), ())


def test_a_changed_file_retires_its_step_and_brings_its_step_mates_back() -> None:
    listed = [_file("0"), _file("a", version="2"), _file("b"), _file("c")]
    plan = plan_inputs(_generation(), listed)
    # The retired step's files first: the record that retires them brings them back.
    assert plan.process == (_file("a", version="2"), _file("b"), _file("0"))
    assert (plan.new, plan.changed, plan.skipped) == (1, 1, 1)
    assert plan.retire_steps == (1,)
    assert plan.retire_files == ("part-0001-000001-r1-00000-1.jsonl",)


def test_linked_steps_are_all_retired_by_a_change_and_processed_in_listed_order() -> None:
    """Equal shards: a step's clips fill the next step's shards, so a change retires every
    step, and the files come in the listed order, as in a clean run."""
    listed = [_file("0"), _file("a"), _file("b"), _file("c", version="2")]
    plan = plan_inputs(_generation(), listed, linked=True)
    assert plan.process == tuple(listed)
    assert (plan.new, plan.changed, plan.skipped, plan.retire_steps) == (1, 1, 0, (1, 2))
    assert plan.retire_files == (
        "part-0001-000001-r1-00000-1.jsonl",
        "part-0001-000002-r1-00000-2.jsonl",
    )
    unchanged = plan_inputs(_generation(), [*listed[:3], _file("c")], linked=True)
    assert (unchanged.process, unchanged.retire_steps) == ((_file("0"),), ())


def test_unlisted_files_keep_their_outputs_unless_their_step_is_retired() -> None:
    plan = plan_inputs(_generation(), [_file("a"), _file("b")])
    assert (plan.process, plan.unlisted, plan.dropped) == ((), ("/in/c",), ())
    plan = plan_inputs(_generation(), [_file("b", size=11), _file("c")])
    assert plan.unlisted == ("/in/a",)
    assert plan.dropped == ("/in/a",)  # its step goes with the changed b
    assert plan.process == (_file("b", size=11),)


def test_steps_hold_at_most_so_many_files_and_bytes() -> None:
    files = [_file(str(n), size) for n, size in enumerate([5, 5, 5, 30, 5, 5])]
    assert [len(s) for s in split_into_steps(files, 2, 100)] == [2, 2, 2]
    assert [len(s) for s in split_into_steps(files, 10, 12)] == [2, 1, 1, 2]
    assert [len(s) for s in split_into_steps(files, 10, 1000)] == [6]
    assert split_into_steps([], 10, 10) == []
