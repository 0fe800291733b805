"""Output-changing settings (alm_spark.config.recorded): recorded, compared, named."""

from __future__ import annotations

import json

import pytest

from alm_spark.config import load_config
from alm_spark.config.recorded import first_difference, output_settings


def settings(*overrides: str) -> dict:
    return json.loads(json.dumps(output_settings(load_config(None, list(overrides)))))


def test_what_an_output_records() -> None:
    recorded = settings("output.path=/x", "spark.engine=dataframe")
    assert sorted(recorded) == ["audio", "builder", "output", "overlap"]
    assert recorded["output"] == {
        "format": "jsonl",
        "compression": None,
        "lost_window_details": "inline",
        "windows_table": False,
    }
    assert recorded["audio"] == {"enabled": False}
    assert recorded["builder"]["drop_fields"] == ["words"]
    assert recorded["overlap"] == {"overlap_percentage": 50, "target_duration": 120.0}


@pytest.mark.parametrize(
    "overrides",
    [
        ["output.path=/elsewhere", "spark.engine=dataframe", "output.progress=off"],
        ["spark.conf.spark.sql.shuffle.partitions=7", "input.manifest_path=/other.jsonl"],
        ["audio.partitions=8"],  # audio off: its settings change nothing
        ["builder.target_window_duration=120"],  # the default, spelled out
    ],
)
def test_settings_that_do_not_change_the_output_may_differ(overrides: list[str]) -> None:
    assert first_difference(settings(), settings(*overrides)) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["builder.target_window_duration=60"],
         "builder.target_window_duration: the output was written with 120.0, this run has 60"),
        (["overlap.overlap_percentage=0"],
         "overlap.overlap_percentage: the output was written with 50, this run has 0"),
        (["output.compression=gzip"],
         'output.compression: the output was written with null, this run has "gzip"'),
        (["audio.enabled=true"],
         "audio.enabled: the output was written with false, this run has true"),
    ],
)  # fmt: skip
def test_the_first_changed_setting_is_named_with_both_values(
    overrides: list[str], message: str
) -> None:
    assert first_difference(settings(), settings(*overrides)) == message


def test_audio_settings_count_when_audio_is_on() -> None:
    on = settings("audio.enabled=true")
    assert first_difference(on, settings("audio.enabled=true", "audio.partitions=3")) is None
    assert first_difference(on, settings("audio.enabled=true", "audio.codec=wav")) == (
        'audio.codec: the output was written with "flac", this run has "wav"'
    )


def test_a_setting_only_one_side_knows_is_a_difference() -> None:
    recorded = settings()
    recorded["builder"]["future_knob"] = 3
    assert first_difference(recorded, settings()) == (
        "builder.future_knob: the output was written with 3, this run has no such setting"
    )


def test_an_output_recorded_before_a_setting_existed_had_the_old_behaviour() -> None:
    older = settings("audio.enabled=true", "audio.root=/audio")
    for key in ("allow_outside_root", "allowed_schemes", "shuffle", "seed"):
        del older["audio"][key]
    assert first_difference(older, settings("audio.enabled=true", "audio.root=/audio")) == (
        "audio.allow_outside_root: the output was written with true, this run has false"
    )
    same = ["audio.enabled=true", "audio.root=/audio", "audio.allow_outside_root=true",
            "audio.allowed_schemes=*", "audio.shuffle=false"]  # fmt: skip
    assert first_difference(older, settings(*same)) is None
    assert first_difference(settings(), settings("audio.allowed_schemes=s3")) is None  # audio off


def test_audio_settings_count_only_where_they_take_effect() -> None:
    def with_audio(*more: str) -> dict:
        return settings("audio.enabled=true", *more)

    on = with_audio()  # no root, shuffled
    assert first_difference(on, with_audio("audio.allow_outside_root=true")) is None
    reordered = "audio.allowed_schemes=hdfs,dbfs,az,abfss,abfs,gcs,gs,s3,file"
    assert first_difference(on, with_audio(reordered)) is None  # a set
    unshuffled = with_audio("audio.shuffle=false")
    assert first_difference(unshuffled, with_audio("audio.shuffle=false", "audio.seed=9")) is None
    assert first_difference(on, with_audio("audio.seed=9")) == (
        "audio.seed: the output was written with 0, this run has 9"
    )
    rooted = with_audio("audio.root=/a")
    assert first_difference(rooted, with_audio("audio.root=/a", "audio.allow_outside_root=true"))
