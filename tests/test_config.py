"""Config loading, overrides and validation (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm_spark.algorithm.segments import WindowParams
from alm_spark.config import (
    BuilderConfig,
    InputConfig,
    OutputConfig,
    OverlapConfig,
    PipelineConfig,
    SparkConfig,
    apply_overrides,
    build_config,
    bundled_sample_path,
    load_config,
    parse_override,
)
from alm_spark.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_reference_defaults() -> None:
    cfg = build_config({})
    b = cfg.builder
    assert (b.target_window_duration, b.tolerance, b.min_bandwidth, b.min_sample_rate) == (
        120.0,
        0.1,
        8000,
        16000,
    )
    assert (b.min_speakers, b.max_speakers, b.truncation) == (2, 5, True)
    assert b.drop_fields == ("words",)
    assert b.drop_fields_top_level == ("words", "segments")
    assert (cfg.overlap.overlap_percentage, cfg.overlap.target_duration) == (50, 120.0)
    assert (b.min_duration, b.max_duration) == (108.0, 132.0)
    assert cfg.input.paths == (bundled_sample_path(),)
    assert Path(bundled_sample_path()).is_file()
    assert cfg.output.path == "./alm_output"


def test_shipped_config_holds_the_defaults() -> None:
    assert load_config(str(REPO / "conf" / "alm_pipeline.yaml")) == PipelineConfig()


def test_overrides_parse_values_as_yaml() -> None:
    cfg = load_config(
        None,
        [
            "builder.truncation=false",
            "input.manifest_path=[a.jsonl, b.jsonl]",
            "builder.drop_fields=words,text",
            "overlap.overlap_percentage=0",
            "spark.conf.spark.sql.shuffle.partitions=8",
            "spark.master=local[2]",
        ],
    )
    assert cfg.builder.truncation is False
    assert cfg.input.manifest_path == ("a.jsonl", "b.jsonl")
    assert cfg.builder.drop_fields == ("words", "text")
    assert cfg.overlap.overlap_percentage == 0
    assert cfg.spark.conf == {"spark.sql.shuffle.partitions": "8"}
    assert cfg.spark.master == "local[2]"


def test_log_level_is_checked_and_upper_cased() -> None:
    assert build_config({}).spark.log_level == "WARN"
    assert build_config({"spark": {"log_level": " info"}}).spark.log_level == "INFO"
    assert load_config(None, ["spark.log_level=off"]).spark.log_level == "OFF"
    with pytest.raises(ConfigError, match=r"^spark.log_level: expected one of ALL, TRACE, .*"
                       r"got text 'loud'$"):  # fmt: skip
        build_config({"spark": {"log_level": "loud"}})
    with pytest.raises(ConfigError, match=r"^spark.log_level: expected one of .* got null$"):
        build_config({"spark": {"log_level": None}})


def test_text_overrides_are_taken_literally() -> None:
    cfg = load_config(
        None,
        [
            "output.path=/data/run #2",
            "input.manifest_path=data/*.jsonl",
            "spark.conf.spark.driver.extraJavaOptions=-Da=b #c",
            "spark.master=null",
        ],
    )
    assert cfg.output.path == "/data/run #2"
    assert cfg.input.manifest_path == ("data/*.jsonl",)
    assert cfg.spark.conf == {"spark.driver.extraJavaOptions": "-Da=b #c"}
    assert cfg.spark.master is None


def test_yaml_file_and_overrides_combine(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("builder:\n  tolerance: 0.2\n  drop_fields: [words, ' text ', '']\n")
    cfg = load_config(str(path), ["builder.tolerance=0.3"])
    assert cfg.builder.tolerance == 0.3
    assert cfg.builder.drop_fields == ("words", "text")


def test_list_and_comma_spellings_are_equivalent() -> None:
    a = build_config({"builder": {"drop_fields_top_level": "words, segments,"}})
    b = build_config({"builder": {"drop_fields_top_level": ["words", "segments"]}})
    assert a == b


def test_apply_overrides_does_not_mutate_input() -> None:
    raw = {"spark": {"conf": {"a": 1}}}
    apply_overrides(raw, ["spark.conf.b=2"])
    assert raw == {"spark": {"conf": {"a": 1}}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"bulder": {}},
            "bulder: unknown section (known: input, output, builder, overlap, spark, audio)",
        ),
        ({"builder": {"tolerence": 0.1}}, "builder.tolerence: unknown setting"),
        ({"builder": {"tolerance": -0.1}}, "builder.tolerance: must not be negative, got -0.1"),
        ({"builder": {"tolerance": "0.1"}}, "builder.tolerance: expected a number, got text '0.1'"),
        (
            {"builder": {"target_window_duration": 0}},
            "builder.target_window_duration: must be greater than 0",
        ),
        (
            {"builder": {"target_window_duration": float("nan")}},
            "builder.target_window_duration: expected a finite number",
        ),
        (
            {"builder": {"min_speakers": 3, "max_speakers": 2}},
            "builder.min_speakers: 3 is greater than builder.max_speakers (2)",
        ),
        (
            {"builder": {"min_speakers": 1.5}},
            "builder.min_speakers: expected a whole number, got number 1.5",
        ),
        ({"builder": {"max_speakers": -1}}, "builder.max_speakers: must be at least 0, got -1"),
        (
            {"builder": {"truncation": "yes"}},
            "builder.truncation: expected true or false, got text 'yes'",
        ),
        (
            {"builder": {"min_bandwidth": True}},
            "builder.min_bandwidth: expected a number, got boolean true",
        ),
        ({"builder": {"drop_fields": "words,start"}}, "builder.drop_fields: cannot drop start"),
        (
            {"builder": {"drop_fields": ["end", "start"]}},
            "builder.drop_fields: cannot drop start or end",
        ),
        (
            {"builder": {"drop_fields": 5}},
            "builder.drop_fields: expected comma-separated names or a list",
        ),
        (
            {"overlap": {"overlap_percentage": 101}},
            "overlap.overlap_percentage: must be between 0 and 100, got 101",
        ),
        (
            {"overlap": {"overlap_percentage": -1}},
            "overlap.overlap_percentage: must be between 0 and 100, got -1",
        ),
        (
            {"overlap": {"overlap_percentage": 50.5}},
            "overlap.overlap_percentage: expected a whole number",
        ),
        (
            {"overlap": {"target_duration": 0}},
            "overlap.target_duration: must be greater than 0, got 0",
        ),
        (
            {"overlap": {"target_duration": -5}},
            "overlap.target_duration: must be greater than 0, got -5",
        ),
        (
            {"input": {"manifest_path": 3}},
            "input.manifest_path: expected a path or a list of paths",
        ),
        (
            {"input": {"manifest_path": ["a", ""]}},
            "input.manifest_path: expected a path or a list of paths",
        ),
        ({"output": {"path": ""}}, "output.path: expected non-empty text"),
        ({"spark": {"conf": {"k": [1]}}}, "spark.conf.k: expected a single value"),
        ({"spark": {"conf": "x"}}, "spark.conf: expected a mapping of Spark settings"),
        ({"builder": [1]}, "builder: expected a mapping of settings"),
        ([1], "config: expected a mapping of sections"),
    ],
)
def test_bad_settings_name_the_setting(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(raw)  # type: ignore[arg-type]
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("builder.tolerance", "builder.tolerance: overrides look like section.key=value"),
        ("tolerance=1", "tolerance=1: overrides look like section.key=value"),
        ("builder.=1", "builder.=1: overrides look like section.key=value"),
        ("builder.drop_fields=[a", "builder.drop_fields: cannot parse value '[a'"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_override(override)
    assert str(err.value).startswith(message)


def test_bad_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("builder: [unclosed\n")
    with pytest.raises(ConfigError, match=r"^--config: .*bad.yaml is not valid YAML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"^--config: file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(str(tmp_path / "list.yaml"))


def test_window_params_mirror_builder() -> None:
    params = BuilderConfig(target_window_duration=60, tolerance=0.15, drop_fields=("speaker",))
    wp = WindowParams.from_builder(params)
    assert (wp.min_duration, wp.max_duration) == (60 - 60 * 0.15, 60 + 60 * 0.15)
    assert wp.strips_speaker
    assert not wp.strips_metrics


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: BuilderConfig(min_speakers=9, max_speakers=2),
            "builder.min_speakers: 9 is greater than builder.max_speakers (2)",
        ),
        (
            lambda: OverlapConfig(overlap_percentage=101),
            "overlap.overlap_percentage: must be between 0 and 100, got 101",
        ),
        (
            lambda: OutputConfig(mode="apend"),
            "output.mode: expected one of overwrite, error, update, got text 'apend'",
        ),
        (
            lambda: SparkConfig(engine="pandas"),
            "spark.engine: expected one of fused, dataframe, got text 'pandas'",
        ),
        (
            lambda: BuilderConfig(drop_fields=("start",)),
            "builder.drop_fields: cannot drop start; windows are measured with them",
        ),
    ],
)
def test_api_users_get_the_yaml_errors(build, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value) == message


def test_api_values_are_normalized_like_yaml_ones() -> None:
    builder = BuilderConfig(drop_fields="words, text ,", drop_fields_top_level=["segments"])
    assert (builder.drop_fields, builder.drop_fields_top_level) == (
        ("words", "text"),
        ("segments",),
    )
    assert OutputConfig(mode=" Error ").mode == "error"
    assert InputConfig(manifest_path="a.jsonl").manifest_path == ("a.jsonl",)
    assert build_config({"spark": {"engine": "dataframe"}}).spark.engine == "dataframe"
    assert build_config({"output": {"windows_table": True}}).output.windows_table is True
    with pytest.raises(ConfigError, match=r"^output.windows_table: expected true or false"):
        build_config({"output": {"windows_table": "yes please"}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "builder.min_bandwidth=" + "1" * 400,
            "builder.min_bandwidth: out of range (larger than a double), got a 400-digit integer",
        ),
        (
            "builder.max_speakers=" + "9" * 400,
            "builder.max_speakers: must be at most 9223372036854775807, got a 400-digit integer",
        ),
        (
            "overlap.overlap_percentage=" + "1" * 400,
            "overlap.overlap_percentage: must be between 0 and 100, got a 400-digit integer",
        ),
        ("builder.min_bandwidth=" + "1" * 5000, "builder.min_bandwidth: cannot parse the value"),
        ("builder.tolerance=1e400", "builder.tolerance: expected a finite number, got inf"),
        (
            "overlap.overlap_percentage=5.55e1",
            "overlap.overlap_percentage: expected a whole number",
        ),
        (
            "spark.master=5",
            "spark.master: expected local, local[N], local[*], spark://HOST:PORT, yarn or "
            "k8s://URL, got text '5'",
        ),
        ("spark.master=local[0]", "spark.master: expected local, local[N]"),
        ("spark.master=locale", "spark.master: expected local, local[N]"),
    ],
)
def test_out_of_range_numbers_and_bad_masters_name_the_setting(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(message)
    assert len(str(err.value)) < 200  # no 400-digit number in the message


def test_numbers_with_a_bare_exponent_are_numbers() -> None:
    cfg = load_config(
        None,
        [
            "builder.min_bandwidth=8e3",
            "builder.min_sample_rate=1e308",
            "builder.target_window_duration=1.2e2",
            "overlap.overlap_percentage=5e1",
            "builder.max_speakers=6.0",
            "overlap.target_duration=1.2E+2",
        ],
    )
    assert cfg.builder.min_bandwidth == 8000.0
    assert cfg.builder.min_sample_rate == 1e308
    assert cfg.builder.target_window_duration == 120.0
    assert cfg.overlap.overlap_percentage == 50
    assert type(cfg.overlap.overlap_percentage) is int
    assert cfg.builder.max_speakers == 6
    assert type(cfg.builder.max_speakers) is int
    assert cfg.overlap.target_duration == 120.0
    same = ["builder.min_bandwidth=8000.0", "builder.min_sample_rate=1e+308",
            "builder.target_window_duration=120.0", "overlap.overlap_percentage=50",
            "builder.max_speakers=6", "overlap.target_duration=120.0"]  # fmt: skip
    assert cfg == load_config(None, same)


def test_numbers_with_an_exponent_stay_text_where_text_is_meant(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "output:\n  path: 8e3\ninput:\n  manifest_path: [1e5, a.jsonl]\n"
        "builder:\n  drop_fields: [1E3]\n  tolerance: 1e-1\n"
        "spark:\n  app_name: 2e2\n  conf:\n    spark.x: 5e1\n"
    )
    cfg = load_config(str(path))
    assert cfg.output.path == "8e3"
    assert cfg.input.manifest_path == ("1e5", "a.jsonl")
    assert cfg.builder.drop_fields == ("1E3",)
    assert cfg.builder.tolerance == 0.1
    assert cfg.spark.app_name == "2e2"
    assert cfg.spark.conf == {"spark.x": "5e1"}
    # Quoted, it is text, as "0.1" is.
    with pytest.raises(
        ConfigError, match=r"^builder\.tolerance: expected a number, got text '1e-1'"
    ):
        build_config({"builder": {"tolerance": "1e-1"}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "builder:\n  min_speakers: 1\noverlap:\n  overlap_percentage: 10\n"
            "builder:\n  max_speakers: 3\n",
            "builder: given twice in {path} (lines 1 and 5); keep one",
        ),
        (
            "builder:\n  min_speakers: 1\n  truncation: false\n  min_speakers: 2\n",
            "builder.min_speakers: given twice in {path} (lines 2 and 4); keep one",
        ),
        (
            "spark:\n  conf:\n    spark.a: 1\n    'spark.a': 2\n",
            "spark.conf.spark.a: given twice in {path} (lines 3 and 4); keep one",
        ),
    ],
)
def test_duplicate_yaml_keys_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value) == message.format(path=path)


def test_yaml_merge_keys_and_aliases_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "builder: &b\n  min_speakers: 1\n  max_speakers: 3\n"
        "spark:\n  conf:\n    <<: {spark.a: '1', spark.b: '2'}\n    spark.a: '3'\n"
    )
    cfg = load_config(str(path))
    assert (cfg.builder.min_speakers, cfg.builder.max_speakers) == (1, 3)
    assert cfg.spark.conf == {"spark.a": "3", "spark.b": "2"}


def test_a_recut_starts_from_the_finished_runs_audio_settings(tmp_path: Path) -> None:
    from alm_spark.config import recut_config

    finished = load_config(
        None, ["audio.enabled=true", "audio.root=s3://bucket/audio", "audio.sample_rate=24000"]
    ).to_dict()
    finished["audio"]["from_a_later_version"] = 1  # unknown keys are not carried
    config = recut_config(finished, overrides=["audio.format=nemo", "output.path=/tmp/x"])
    assert config.audio.root == "s3://bucket/audio"
    assert config.audio.sample_rate == 24000
    assert (config.audio.format, config.audio.enabled) == ("nemo", True)
    yaml_file = tmp_path / "recut.yaml"
    yaml_file.write_text("audio:\n  sample_rate: 8000\n")
    assert recut_config(finished, str(yaml_file)).audio.sample_rate == 8000
    assert recut_config(finished, str(yaml_file), ["audio.sample_rate=16000"]).audio.root == (
        "s3://bucket/audio"
    )
    assert recut_config(None).audio == load_config(None, ["audio.enabled=true"]).audio
    with pytest.raises(ConfigError, match=r"^audio\.channels: must be between 1 and 2, got 5"):
        recut_config(finished, overrides=["audio.channels=5"])
