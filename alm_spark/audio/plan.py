"""The published layout of a commit step's clips: their order, and the shards they fill.

Plain Python, no Spark: the driver plans (:func:`plan_shards`) from the first pass's
shard rows and, shuffled, the clips counted per bucket of their seeded order
(:func:`shuffle_order`); the repack tasks place each clip by the plan
(:mod:`alm_spark.audio.ranking`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The top bits of a clip's shuffle order that name its bucket: clips are counted per
#: bucket on the driver (a few thousand numbers), so each knows its rank from its bucket's.
BUCKET_BITS = 12


def shuffle_order(seed: int, key: str) -> int:
    """A clip's place in the seeded shuffle: 64 bits of BLAKE2b over the seed and its key.

    Signed, as Spark's ``long`` sorts; it depends on nothing but the seed and the key, so
    the order is the same whatever the partitioning, on every rerun.
    """
    digest = hashlib.blake2b(f"{seed}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def order_bucket(waiting: bool, order: int) -> int:
    """The bucket of a clip's order; clips earlier steps left waiting come first."""
    top = (order + (1 << 63)) >> (64 - BUCKET_BITS)
    return top if waiting else top + (1 << BUCKET_BITS)


@dataclass(frozen=True)
class ShardPlan:
    """How the repack pass lays the first pass's clips out into the published shards.

    Unshuffled, clips are ranked in first-pass order (shard name, then index in the
    shard), so a published shard is read from few first-pass shards, front to back.
    Shuffled, they are ranked by :func:`shuffle_order` (with the tie broken by key), the
    waiting clips first: a clip's rank is its bucket's first rank plus its place in the
    bucket.

    Attributes:
        first_ranks: Each first-pass shard's name and the rank of its first clip.
        shards: How many shards are published.
        per_shard: With equal shards, the clips in every one; None: each first-pass
            shard becomes one published shard, numbered in name order (shuffled: the
            clips are spread evenly, shard ``rank * shards // clips``).
        clips: The clips of the first pass.
        carry: With equal shards, whether the clips left out wait for the next commit
            step (not the run's last) instead of being rejected.
        bucket_ranks: Shuffled: each bucket's first rank (empty: not shuffled).
    """

    first_ranks: tuple[tuple[str, int], ...]
    shards: int
    per_shard: int | None
    clips: int = 0
    carry: bool = False
    bucket_ranks: Mapping[int, int] = field(default_factory=dict)
    _numbers: dict[str, int] = field(init=False, repr=False, compare=False)
    _bucket_ends: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numbers = {name: n for n, (name, _) in enumerate(self.first_ranks)}
        object.__setattr__(self, "_numbers", numbers)
        buckets = sorted(self.bucket_ranks)  # a bucket ends where the next one begins
        ends = [self.bucket_ranks[b] for b in buckets[1:]] + [self.clips] if buckets else []
        object.__setattr__(self, "_bucket_ends", dict(zip(buckets, ends, strict=True)))

    @property
    def shuffled(self) -> bool:
        """Whether clips are ranked by their shuffle order."""
        return bool(self.bucket_ranks)

    @property
    def left_out(self) -> int:
        """The clips beyond the last full shard (waiting or rejected)."""
        return self.clips - self.shards * self.per_shard if self.per_shard is not None else 0

    def rank(self, shard: str, index: int) -> int:
        """The place of the ``index``-th clip of first-pass ``shard`` among all clips."""
        return self.first_ranks[self._numbers[shard]][1] + index

    def target(self, shard: str, index: int) -> int | None:
        """The published shard of the ``index``-th clip of first-pass ``shard``.

        None: the clip is left out (beyond the last full shard).
        """
        if self.per_shard is None:
            return self._numbers[shard]
        return self.target_of(self.rank(shard, index))

    def target_of(self, rank: int) -> int | None:
        """The published shard of the clip ranked ``rank`` (None: left out)."""
        if self.per_shard is None:
            return rank * self.shards // self.clips
        target = rank // self.per_shard if self.per_shard else self.shards
        return target if target < self.shards else None

    def slot(self, target: int | None) -> int:
        """A target as the repack's rows hold it: :attr:`shards` for a clip left out."""
        return self.shards if target is None else target

    @property
    def task_targets(self) -> int:
        """What the repack tasks divide among them: the shards, and the waiting clips.

        Clips left out and carried to the next step are one more target (their tar is
        written by one task); left out and rejected, they go with the last shard.
        """
        return max(1, self.shards + (1 if self.carry and self.left_out else 0))

    def task_of(self, target: int, tasks: int) -> int:
        """The repack task (of ``tasks``, at most :attr:`task_targets`) that writes ``target``.

        Tasks write contiguous runs of shards, as evenly as they divide; ``target`` is
        :attr:`shards` for a clip left out.
        """
        values = self.task_targets
        return min(target, values - 1) * tasks // values

    def bucket_tasks(self, bucket: int, tasks: int) -> range:
        """Shuffled: the repack tasks whose shards hold clips of ``bucket``.

        A bucket's clips have consecutive ranks, so they fall in a run of shards and
        tasks; its rows go to each of them, and each keeps the clips it writes.
        """
        first = self.bucket_ranks[bucket]
        last = self._bucket_ends[bucket] - 1
        low, high = (self.task_of(self.slot(self.target_of(r)), tasks) for r in (first, last))
        return range(low, high + 1)


@dataclass(frozen=True)
class EqualLayout:
    """Equal shards over an output's commit steps.

    Attributes:
        world_size: The shard count is a multiple of this.
        per_shard: The clips per shard fixed by the output's first step that published
            any (None until then).
        carry: Whether clips left out wait for the next step (every step but the run's
            last).
    """

    world_size: int
    per_shard: int | None = None
    carry: bool = False


def plan_shards(
    first_pass: list[tuple[str, int, int]],
    equal: EqualLayout | None,
    limits: tuple[int, int],
    waiting: list[tuple[str, int, int]] | None = None,
    buckets: Mapping[int, int] | None = None,
) -> ShardPlan:
    """Plan the published shards from the first pass's ``(name, clips, bytes)``.

    With ``equal`` and no clips per shard fixed yet, on a run's last step (or its only
    one), the shard count is the smallest multiple of the world size that keeps shards
    within ``max_clips`` and, on average, ``max_bytes``, but no more than the clips can
    fill (then the largest multiple of the world size that they can, one clip a shard);
    every shard holds ``clips // shards`` clips. With clips per shard fixed, or on an
    earlier step (``equal.carry``: as many clips as the limits allow, at the step's
    average clip size), as many rounds of world-size shards as the clips fill. The
    remainder is left out (it waits, with ``equal.carry``). Fewer clips than the world
    size leave no shard.

    Args:
        first_pass: This step's first-pass shards.
        equal: The equal layout, or None for one published shard per first-pass shard.
        limits: Clips per shard at most, and bytes per shard at most, on average.
        waiting: Clips earlier steps left waiting ``(name, clips, bytes)``: ranked first.
        buckets: Shuffled: the clips counted per :func:`order_bucket`. Without equal
            shards, the clips are then spread evenly over as many shards as the limits
            need (``max_bytes`` held on average).
    """
    max_clips, max_bytes = limits
    ordered = [*sorted(waiting or []), *sorted(first_pass)]
    ranks: list[tuple[str, int]] = []
    total = size = 0
    for name, clips, nbytes in ordered:
        ranks.append((name, total))
        total, size = total + clips, size + nbytes
    ranked = _first_ranks(buckets or {})
    if buckets and sum(buckets.values()) != total:  # ranks past the last would be lost
        raise ValueError(f"{sum(buckets.values())} clip row(s) counted, {total} clip(s) cut")
    needed = min(max(-(-total // max_clips), -(-size // max_bytes), 1), total)
    if equal is None and ranked:
        return ShardPlan(tuple(ranks), needed, None, total, bucket_ranks=ranked)
    if equal is None:
        return ShardPlan(tuple(ranks), len(ranks), None, total)
    world_size = equal.world_size
    per_shard = equal.per_shard
    if not per_shard and equal.carry:  # more steps to come: shards as full as the limits let
        average = size / total if total else 0.0
        per_shard = max(1, min(max_clips, int(max_bytes // average) if average else max_clips))
    if per_shard:
        shards = world_size * (total // (world_size * per_shard))
        return ShardPlan(tuple(ranks), shards, per_shard, total, equal.carry, ranked)
    # Shards needed for the limits, but never more than one clip each can fill.
    shards = world_size * -(-max(needed, 1) // world_size)
    if shards > total:  # rounding up to the world size overshot: round down instead
        shards = world_size * (total // world_size)
    per_shard = total // shards if shards else 0
    return ShardPlan(tuple(ranks), shards, per_shard, total, equal.carry, ranked)


def _first_ranks(buckets: Mapping[int, int]) -> dict[int, int]:
    """Each bucket's first rank, from the clips counted per bucket."""
    ranks, total = {}, 0
    for bucket, count in sorted(buckets.items()):
        ranks[bucket], total = total, total + count
    return ranks
