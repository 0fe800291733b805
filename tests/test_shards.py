"""Shard layout without Spark: member offsets, the repack plan, names, NeMo manifest lines."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from alm_spark.audio.plan import (
    BUCKET_BITS,
    EqualLayout,
    ShardPlan,
    order_bucket,
    plan_shards,
    shuffle_order,
)
from alm_spark.audio.shards import (
    ShardWriter,
    attempt_name,
    nemo_manifest_line,
    repacked_shard_name,
    shar_cut,
    shard_balance,
    shard_number,
)


def test_the_writer_gives_where_each_clips_audio_bytes_are(tmp_path: Path) -> None:
    writer = ShardWriter(
        lambda name: open(tmp_path / name, "wb"),  # noqa: SIM115 - the writer closes it
        lambda n: f"s-{n}.tar",
        3,
        10**9,
    )
    placed = [
        writer.add(f"k{k}", [("flac", bytes([k + 1]) * (700 + k)), ("json", b"{}")], 1.0)
        for k in range(4)
    ]
    writer.close()
    assert [(p.shard, p.index, p.size) for p in placed] == [
        ("s-0.tar", 0, 700), ("s-0.tar", 1, 701), ("s-0.tar", 2, 702), ("s-1.tar", 0, 703),
    ]  # fmt: skip
    for p in placed:
        with tarfile.open(tmp_path / p.shard) as tar:
            member = tar.getmember(f"k{placed.index(p)}.flac")
            assert (member.offset_data, member.size) == (p.offset, p.size)
        data = (tmp_path / p.shard).read_bytes()[p.offset : p.offset + p.size]
        assert data == bytes([placed.index(p) + 1]) * p.size


def test_without_equal_shards_each_first_pass_shard_is_one_shard_in_name_order() -> None:
    plan = plan_shards([("b", 3, 30), ("a", 5, 50)], None, (3, 10**9))
    assert (plan.shards, plan.per_shard) == (2, None)
    assert [plan.target("a", i) for i in range(5)] == [0] * 5
    assert [plan.target("b", i) for i in range(3)] == [1] * 3
    assert [plan.rank("b", i) for i in range(3)] == [5, 6, 7]


@pytest.mark.parametrize(
    ("clips", "world_size", "max_clips", "shards", "per_shard", "left_out"),
    [
        (8, 2, 3, 4, 2, 0),  # 3 shards needed, 4 for 2 ranks
        (8, 3, 2, 6, 1, 2),
        (10, 1, 4, 3, 3, 1),
        (1000, 8, 100, 16, 62, 8),
        (7, 8, 100, 0, 0, 7),  # fewer clips than ranks: nothing can be equal
        (0, 1, 100, 0, 0, 0),
        (5, 4, 1, 4, 1, 1),  # 5 shards needed, 8 too many for 5 clips: 4 of 1
        (6, 4, 2, 4, 1, 2),
    ],
)
def test_equal_shards_hold_as_many_clips_and_their_count_is_a_multiple_of_the_world_size(
    clips: int, world_size: int, max_clips: int, shards: int, per_shard: int, left_out: int
) -> None:
    first = [("x", clips // 2, 0), ("w", clips - clips // 2, 0)]
    plan = plan_shards(first, EqualLayout(world_size), (max_clips, 10**12))
    assert (plan.shards, plan.per_shard) == (shards, per_shard)
    targets = [plan.target(name, i) for name, n, _ in sorted(first) for i in range(n)]
    assert targets.count(None) == left_out
    kept = [t for t in targets if t is not None]
    assert kept == sorted(kept)  # first-pass order: each shard reads few files, in order
    assert all(kept.count(t) == per_shard for t in range(shards))


def test_equal_shards_also_keep_the_average_shard_within_the_size_limit() -> None:
    plan = plan_shards([("a", 100, 10**9)], EqualLayout(2), (1000, 300 * 10**6))
    assert (plan.shards, plan.per_shard, plan.clips) == (4, 25, 100)  # 1 GB / 300 MB, 2 ranks


def test_clips_larger_than_the_size_limit_get_a_shard_each_not_none() -> None:
    plan = plan_shards([("a", 10, 20 * 10**6)], EqualLayout(1), (1000, 10**6))
    assert (plan.shards, plan.per_shard) == (10, 1)
    assert [plan.target("a", i) for i in range(10)] == list(range(10))
    small = plan_shards([("a", 6, 600)], EqualLayout(4), (1000, 50))  # 12 needed by size, 6 clips
    assert (small.shards, small.per_shard) == (4, 1)


def test_a_later_step_keeps_the_clips_per_shard_and_ranks_the_waiting_clips_first() -> None:
    """Clips per shard fixed by an earlier step: as many rounds of world-size shards as
    the clips fill; the rest wait (``carry``) or are left out, with the waiting first."""
    waiting = [("_shards/_waiting/part-1.tar", 3, 0)]
    plan = plan_shards([("b", 5, 0), ("a", 6, 0)], EqualLayout(2, 2, True), (1, 1), waiting)
    assert (plan.shards, plan.per_shard, plan.clips, plan.left_out, plan.carry) == (
        6, 2, 14, 2, True,
    )  # fmt: skip
    assert [plan.target("_shards/_waiting/part-1.tar", i) for i in range(3)] == [0, 0, 1]
    assert [plan.target("a", i) for i in range(6)] == [1, 2, 2, 3, 3, 4]
    assert [plan.target("b", i) for i in range(5)] == [4, 5, 5, None, None]
    few = plan_shards([("a", 3, 0)], EqualLayout(2, 2), (1, 1))
    assert (few.shards, few.left_out, few.carry) == (0, 3, False)
    # Not fixed yet, more steps to come: as many clips a shard as the limits allow.
    unfixed = plan_shards([("a", 1, 0)], EqualLayout(2, None, True), (10, 10**9))
    assert (unfixed.shards, unfixed.per_shard, unfixed.left_out) == (0, 10, 1)
    by_size = plan_shards([("a", 31, 31 * 10**6)], EqualLayout(2, None, True), (100, 5 * 10**6))
    assert (by_size.shards, by_size.per_shard, by_size.left_out) == (6, 5, 1)


def _shuffled(keys: list[str], seed: int, waiting: set[str] = frozenset()) -> list[str]:
    """The keys in the shuffle's rank order, as a global sort gives it."""
    return sorted(keys, key=lambda k: (k not in waiting, shuffle_order(seed, k), k))


def test_the_shuffle_order_is_the_seeds_and_the_keys_alone() -> None:
    assert shuffle_order(0, "m-0000abcd-00000001-0000") == shuffle_order(
        0, "m-0000abcd-00000001-0000"
    )
    assert shuffle_order(0, "k") != shuffle_order(1, "k")
    assert -(2**63) <= shuffle_order(7, "k") < 2**63
    keys = [f"m-0000abcd-{line:08d}-{pos:04d}" for line in range(40) for pos in range(5)]
    once, again, other = _shuffled(keys, 3), _shuffled(keys, 3), _shuffled(keys, 4)
    assert once == again != other
    # Neighbours in cut order end up far apart: no run of one line's five windows.
    assert max(sum(k[11:19] == w[11:19] for w in once[i : i + 5]) for i, k in enumerate(once)) < 4
    # Buckets follow the order: waiting ones first, then by the order's top bits.
    orders = sorted(shuffle_order(3, k) for k in keys)
    buckets = [order_bucket(False, o) for o in orders]
    assert buckets == sorted(buckets)
    assert all(1 << BUCKET_BITS <= b < 2 << BUCKET_BITS for b in buckets)
    assert order_bucket(True, orders[-1]) < order_bucket(False, orders[0])


def _ranked_targets(
    keys: list[str], plan_args: dict, seed: int = 3, tasks: int = 3
) -> tuple[dict[str, int | None], int]:
    """Rank keys the way the repack pass does (routed to tasks, ranked per bucket).

    Returns each key's shard and how many rows were routed (a row per task it reaches).
    """
    import pyarrow as pa

    from alm_spark.audio.ranking import placed_rows, with_tasks
    from alm_spark.rows import CLIP

    waiting = plan_args.pop("waiting_keys", set())
    rows = sorted(
        (order_bucket(k in waiting, shuffle_order(seed, k)), shuffle_order(seed, k), k)
        for k in keys
    )
    counts: dict[int, int] = {}
    for bucket, _, _ in rows:
        counts[bucket] = counts.get(bucket, 0) + 1
    plan = plan_shards(buckets=counts, **plan_args)
    columns = {name: [0] * len(rows) for name in CLIP.names}
    columns.update(shard=["s"] * len(rows), meta=[k for _, _, k in rows], seconds=[1.0] * len(rows))
    ordered = {"key": [k for _, _, k in rows], "order": [o for _, o, _ in rows]}
    batch = pa.RecordBatch.from_pydict({**columns, **ordered, "bucket": [b for b, _, _ in rows]})
    routed = pa.Table.from_batches(list(with_tasks(iter([batch]), plan, tasks))).to_pylist()
    placed = []
    for task in range(tasks):  # each task's rows in its sort order, split across batches
        mine = sorted((r for r in routed if r["task"] == task), key=lambda r: r["bucket"])
        table = pa.Table.from_pylist(mine, schema=routed_schema()) if mine else None
        halves = table.to_batches(max_chunksize=max(1, len(mine) // 2)) if table else []
        placed += list(placed_rows(iter(halves), plan, tasks))
    assert [r["rank"] for r in placed] == list(range(len(rows)))  # each clip once, in order
    assert [r["task"] for r in placed] == sorted(r["task"] for r in placed)
    assert [k for _, _, k in rows] == _shuffled(keys, seed, waiting)
    targets = {r["meta"]: (r["target"] if r["target"] < plan.shards else None) for r in placed}
    return targets, len(routed)


def routed_schema():  # type: ignore[no-untyped-def]
    from alm_spark.rows import ROUTED_CLIP

    return ROUTED_CLIP.arrow_schema()


def test_shuffled_clips_are_spread_evenly_or_in_equal_shards() -> None:
    keys = [f"k{n:03d}" for n in range(23)]
    first = [("a", 23, 23 * 100)]
    spread, _ = _ranked_targets(keys, {"first_pass": first, "equal": None, "limits": (5, 10**9)})
    per_shard = [list(spread.values()).count(n) for n in range(5)]
    assert per_shard == [5, 5, 4, 5, 4]  # 23 clips, 5 shards of at most 5: rank * 5 // 23
    by_size, _ = _ranked_targets(keys, {"first_pass": first, "equal": None, "limits": (100, 1000)})
    assert sorted(set(by_size.values())) == [0, 1, 2]  # 2,300 bytes at most 1,000 a shard
    equal, _ = _ranked_targets(
        keys,
        {"first_pass": [("a", 20, 0)], "equal": EqualLayout(2, 4, True), "limits": (1, 1),
         "waiting": [("_shards/_waiting/w.tar", 3, 0)], "waiting_keys": set(keys[:3])},
    )  # fmt: skip
    ranked = _shuffled(keys, 3, set(keys[:3]))
    assert [equal[k] for k in ranked][:5] == [0, 0, 0, 0, 1]
    assert sorted(keys[:3], key=lambda k: shuffle_order(3, k)) == ranked[:3]  # waiting first
    assert [list(equal.values()).count(n) for n in range(4)] == [4, 4, 4, 4]
    assert list(equal.values()).count(None) == 23 - 16  # wait for the next step


def test_repack_tasks_share_the_shards_evenly_and_rejected_clips_go_with_the_last() -> None:
    last = plan_shards([("a", 85, 8500)], EqualLayout(4, 10, False), (100, 10**9))
    assert (last.shards, last.left_out, last.task_targets) == (8, 5, 8)
    assert [last.task_of(t, 8) for t in range(9)] == [0, 1, 2, 3, 4, 5, 6, 7, 7]
    assert [last.task_of(t, 3) for t in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    carried = plan_shards([("a", 85, 8500)], EqualLayout(4, 10, True), (100, 10**9))
    assert carried.task_targets == 9  # the waiting clips' tar is one more target
    assert [carried.task_of(t, 9) for t in range(9)] == list(range(9))
    assert ShardPlan((), 0, None).task_of(0, 3) == 0
    with pytest.raises(ValueError, match="2 clip row"):
        plan_shards([("a", 3, 300)], None, (10, 10**9), None, {4096: 2})


def test_buckets_that_straddle_two_repack_tasks_reach_both_and_each_clip_is_written_once() -> None:
    keys = [f"m{n:05d}" for n in range(9000)]  # about two clips a bucket
    args = {"first_pass": [("a", 9000, 0)], "equal": None, "limits": (100, 10**12)}
    spread, routed = _ranked_targets(keys, args, tasks=7)
    assert [list(spread.values()).count(n) for n in range(90)] == [100] * 90
    assert 9000 < routed < 9000 + 6 * 10  # the buckets at the six task boundaries, sent twice


def test_names_an_attempt_writes_and_the_names_it_publishes() -> None:
    assert attempt_name("audio_3.tar", 17) == "audio_3.attempt-17.tar"
    assert repacked_shard_name("nemo", 12) == "audio_12.tar"
    assert repacked_shard_name("webdataset", 12) == "shard-000012.tar"
    names = [repacked_shard_name(f, 12) for f in ("nemo", "webdataset")]
    assert [shard_number(f"_shards/{name}") for name in names] == [12, 12]
    assert shard_number("_shards/sharded_manifests/manifest_7.json") == 7
    assert shard_number("_shards/part-0001-000001-r-00000-5-0000.tar") is None


def test_a_nemo_manifest_line_names_the_member_and_keeps_the_clips_facts() -> None:
    meta = {
        "key": "m-1-00000001-0000", "audio_filepath": "audio/a.flac", "source": "file:/m.jsonl",
        "line": 1, "duration": 9.5, "text": "hi there", "speakers": {"a": 9.5},
    }  # fmt: skip
    line = json.loads(nemo_manifest_line(meta, "m-1-00000001-0000.flac", 3))
    assert list(line)[:6] == [
        "audio_filepath", "duration", "offset", "text", "shard_id", "source_audio_filepath",
    ]  # fmt: skip
    assert line == {
        "audio_filepath": "m-1-00000001-0000.flac", "duration": 9.5, "offset": 0,
        "text": "hi there", "shard_id": 3, "source_audio_filepath": "audio/a.flac",
        "key": "m-1-00000001-0000", "source": "file:/m.jsonl", "line": 1,
        "speakers": {"a": 9.5},
    }  # fmt: skip


def test_shard_balance_gives_each_figures_spread_and_a_histogram_of_hours() -> None:
    rows = [
        {"clips": c, "hours": h, "bytes": b, "recordings": r}
        for c, h, b, r in [(4, 0.5, 400, 3), (4, 0.25, 300, 4), (2, 0.125, 100, 1)]
    ]
    balance = shard_balance(rows)
    assert balance["clips"] == {"min": 2, "median": 4, "max": 4}
    assert balance["recordings"] == {"min": 1, "median": 3, "max": 4}
    assert balance["hours"] == {"min": 0.125, "median": 0.25, "max": 0.5}
    histogram = balance["hours_histogram"]
    assert (histogram["edges"][0], histogram["edges"][-1], len(histogram["edges"])) == (
        0.125, 0.5, 13,
    )  # fmt: skip
    assert histogram["counts"] == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    empty = shard_balance([])
    assert (empty["clips"], sum(empty["hours_histogram"]["counts"])) == (
        {"min": 0, "median": 0, "max": 0}, 0,
    )  # fmt: skip


def test_a_clip_as_a_lhotse_shar_cut_and_recording() -> None:
    meta = {
        "key": "m-1-00000001-0000", "audio_filepath": "a.flac", "source": "file:/m.jsonl",
        "line": 1, "window": 0, "position": 0, "start": 12.5, "end": 14.0, "duration": 1.5,
        "sample_rate": 16000, "channels": 1, "text": "hi there", "speakers": {"a": 0.5},
        "segments": [
            {"start": 0.0, "end": 0.5, "speaker": "a", "text": "hi", "metrics": {"bandwidth": 8}},
            {"start": 0.75, "end": 1.5, "speaker": "b", "text": "there"},
            {"start": 1.5, "end": 1.5, "speaker": "b", "text": ""},  # zero length: no supervision
        ],
    }  # fmt: skip
    line, member = shar_cut(meta)
    recording = {
        "id": "m-1-00000001-0000",
        "sources": [{"type": "shar", "channels": [0], "source": ""}],
        "sampling_rate": 16000, "num_samples": 24000, "duration": 1.5, "channel_ids": [0],
    }  # fmt: skip
    assert json.loads(member) == recording
    assert member.endswith(b"\n")
    cut = json.loads(line)
    assert list(cut) == [
        "id", "start", "duration", "channel", "supervisions", "recording", "custom", "type",
    ]  # fmt: skip
    assert (cut["id"], cut["start"], cut["duration"], cut["channel"], cut["type"]) == (
        "m-1-00000001-0000", 0, 1.5, 0, "MonoCut",
    )  # fmt: skip
    assert cut["recording"] == recording
    assert cut["supervisions"] == [
        {"id": "m-1-00000001-0000-0000", "recording_id": "m-1-00000001-0000", "start": 0.0,
         "duration": 0.5, "channel": 0, "text": "hi", "speaker": "a",
         "custom": {"metrics": {"bandwidth": 8}}},
        {"id": "m-1-00000001-0000-0001", "recording_id": "m-1-00000001-0000", "start": 0.75,
         "duration": 0.75, "channel": 0, "text": "there", "speaker": "b"},
    ]  # fmt: skip
    assert cut["custom"] == {
        "audio_filepath": "a.flac", "source": "file:/m.jsonl", "line": 1, "window": 0,
        "position": 0, "text": "hi there", "speakers": [["a", 0.5]], "source_start": 12.5,
        "source_end": 14.0,
    }  # fmt: skip
    stereo = json.loads(shar_cut({**meta, "channels": 2})[0])
    assert (stereo["type"], stereo["channel"]) == ("MultiCut", [0, 1])
    assert repacked_shard_name("shar", 7) == "recording.000007.tar"
    assert shard_number("_shards/cuts.000007.jsonl.gz") == 7
