"""Which input files a run processes, and in which commit steps (no Spark here).

An ``update`` run compares the input files it lists with those its output's generation
committed (:class:`~alm_spark.storage.commits.Generation`): a file committed with the
same identity is skipped, a new one is processed, and a changed one is processed again.
A step's files hold only that step's inputs and its figures are recorded whole, so the
unit that can be retired is a step: a changed file retires the steps that committed it,
and their other files still listed are processed again in the same run (their lines
come out the same). Files committed but no longer listed keep their outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alm_spark.storage.commits import Generation, InputFile


@dataclass(frozen=True)
class InputPlan:
    """What a run does with the input files it listed.

    Attributes:
        process: The files to process: those of retired steps first, then new ones
            (linked steps: in the listed order).
        new: How many of them were never committed.
        changed: How many were committed with another identity.
        skipped: How many are committed with the same identity.
        retire_steps: Committed steps to retire (they hold a changed file).
        retire_files: Their files' paths.
        unlisted: Committed files no longer listed, whose outputs are kept.
        dropped: Unlisted files of retired steps: their outputs go with the step.
    """

    process: tuple[InputFile, ...]
    new: int = 0
    changed: int = 0
    skipped: int = 0
    retire_steps: tuple[int, ...] = ()
    retire_files: tuple[str, ...] = ()
    unlisted: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def plan_inputs(
    generation: Generation | None, listed: Sequence[InputFile], linked: bool = False
) -> InputPlan:
    """Compare the listed inputs with what ``generation`` committed (None: nothing yet).

    Args:
        generation: The generation an ``update`` adds to.
        listed: The input files listed now.
        linked: Whether the steps' files depend on one another (equal shards: a step's
            clips fill the next step's shards), so that a change retires every step.
    """
    if generation is None:
        return InputPlan(tuple(listed), new=len(listed))
    committed = generation.inputs
    by_uri = {i.uri: i for i in listed}
    new = [i for i in listed if i.uri not in committed]
    changed = [i for i in listed if i.uri in committed and committed[i.uri] != i]
    steps = sorted({generation.input_steps[i.uri] for i in changed})
    if linked and steps:
        every = {f.step for f in generation.files.values()} | {*generation.input_steps.values()}
        steps = sorted(n for n in every if n)  # 0: a file of an old record, by name
    again = {uri for uri, step in generation.input_steps.items() if step in steps and uri in by_uri}
    wanted = {i.uri for i in (*new, *changed)} | again
    unlisted = sorted(uri for uri in committed if uri not in by_uri)
    # The retired steps' inputs come first, so the first step, whose record retires
    # their old files, brings back as many of them as it holds. Linked steps are all
    # retired: the listed order then, as a clean run's (and a resumed one's) steps.
    first = set() if linked else {i.uri for i in changed} | again
    ordered = [i for i in listed if i.uri in first] + [
        i for i in listed if i.uri in wanted and i.uri not in first
    ]
    return InputPlan(
        process=tuple(ordered),
        new=len(new),
        changed=len(changed),
        skipped=len(listed) - len(wanted),
        retire_steps=tuple(steps),
        retire_files=tuple(p for step in steps for p in generation.step_files(step)),
        unlisted=tuple(unlisted),
        dropped=tuple(u for u in unlisted if generation.input_steps[u] in steps),
    )


def split_into_steps(
    inputs: Sequence[InputFile], max_files: int, max_bytes: int
) -> list[tuple[InputFile, ...]]:
    """Cut ``inputs`` (in order) into steps of at most ``max_files`` files and ``max_bytes``.

    A file larger than ``max_bytes`` is a step of its own: a file is never split.
    """
    steps: list[tuple[InputFile, ...]] = []
    current: list[InputFile] = []
    size = 0
    for item in inputs:
        if current and (len(current) >= max_files or size + item.size > max_bytes):
            steps.append(tuple(current))
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        steps.append(tuple(current))
    return steps
