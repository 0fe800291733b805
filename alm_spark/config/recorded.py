"""The settings an output records, and the first one a later run would change.

An ``update`` run adds to an output written before, so it must write what that output's
first run would have written: every setting that changes the output must equal the
recorded one. Paths, Spark settings, the engine (both give the same output), progress and
``audio.partitions`` (how work is split, not what is written) may differ.

An output recorded before a setting existed was written with the old behaviour, which
:data:`OLD_BEHAVIOUR` spells as that setting's value: an update must then ask for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from alm_spark.config.sections import PipelineConfig

#: Per section, the settings that change the output (None: all of the section's).
OUTPUT_SETTINGS: Mapping[str, tuple[str, ...] | None] = {
    "builder": None,
    "overlap": None,
    "output": ("format", "compression", "lost_window_details", "windows_table"),
    "audio": (
        "enabled", "root", "path_field", "sample_rate", "channels", "codec", "format",
        "shard_max_clips", "shard_max_mb", "equal_shards", "world_size",
        "allow_outside_root", "allowed_schemes", "shuffle", "seed",
    ),
}  # fmt: skip
#: What an output recorded before a setting existed was written with (audio on).
OLD_BEHAVIOUR: Mapping[tuple[str, str], Any] = {
    ("audio", "allow_outside_root"): True,  # paths were read wherever they pointed
    ("audio", "allowed_schemes"): ["*"],
    ("audio", "shuffle"): False,  # clips in the order they were cut
    ("audio", "seed"): 0,
}

_ABSENT = object()


def output_settings(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The settings of ``config`` that change the output, as plain data.

    Without audio, the audio section records only that it is off: its other settings
    change nothing.
    """
    plain = config.to_dict()
    recorded: dict[str, dict[str, Any]] = {}
    for section, keys in OUTPUT_SETTINGS.items():
        values = plain[section]
        recorded[section] = {k: values[k] for k in (keys or values)}
    if not config.audio.enabled:
        recorded["audio"] = {"enabled": False}
    return recorded


def first_difference(
    recorded: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """The first setting whose value differs, with both values; None when all agree.

    Args:
        recorded: What the output recorded (:func:`output_settings` of its first run).
        current: :func:`output_settings` of this run.
    """
    sections = list(dict.fromkeys([*current, *recorded]))
    for section in sections:
        before, now = dict(recorded.get(section, {})), current.get(section, {})
        if before.get("enabled") is True:  # an audio-off record holds nothing else
            for (name, key), value in OLD_BEHAVIOUR.items():
                if name == section:
                    before.setdefault(key, value)
        before, now = _in_effect(before), _in_effect(now)
        for key in dict.fromkeys([*now, *before]):
            old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
            if old != new:
                return (
                    f"{section}.{key}: the output was written with {_shown(old)}, "
                    f"this run has {_shown(new)}"
                )
    return None


def _in_effect(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A section's settings less those that change nothing (audio's, as their values say).

    The scheme allow-list is a set; ``allow_outside_root`` counts only with a root, the
    seed only with the shuffle.
    """
    kept = dict(settings)
    if isinstance(kept.get("allowed_schemes"), list):
        kept["allowed_schemes"] = sorted(kept["allowed_schemes"])
    if "root" in kept and kept["root"] is None:
        kept.pop("allow_outside_root", None)
    if kept.get("shuffle") is False:
        kept.pop("seed", None)
    return kept


def _shown(value: Any) -> str:
    return "no such setting" if value is _ABSENT else json.dumps(value)
