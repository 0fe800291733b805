"""Names and constants shared by every folder: figures, settings' choices, output file names.

Every folder reads these; nothing here imports anything else from the package.
Row kinds are in :mod:`alm_spark.rows`.
"""

from __future__ import annotations

#: The builder's loss counters (spec §1), in the reference's ``stats`` order.
LOSS_COUNTERS = ("lost_bw", "lost_sr", "lost_spk", "lost_win", "lost_no_spkr", "lost_next_seg_bm")

#: Integer figures of one entry, summed over a run into ``_metrics.json``.
METRIC_COUNTS = (
    "below_sample_rate",
    "total_segments",
    "windows",
    "filtered_windows",
    "filtered_pairs",
    "truncation_events",
    *LOSS_COUNTERS,
)
#: Float figures of one entry (seconds), summed over a run.
METRIC_DURATIONS = (
    "total_dur",
    "total_dur_window",
    "filtered_dur",
    *(f"dur_{name}" for name in LOSS_COUNTERS),
)

#: ``output.lost_window_details``: where ``stats.lost_win_full_data`` goes.
LOST_WINDOW_MODES = ("inline", "separate", "drop")
#: ``spark.engine``: the one-pass ``mapInArrow`` engine, or the DataFrame API's shape.
ENGINES = ("fused", "dataframe")
#: ``audio.codec`` and ``audio.format``: how clips are encoded and packed.
AUDIO_CODECS = ("flac", "wav")
AUDIO_FORMATS = ("webdataset", "nemo", "shar")
#: ``audio.allowed_schemes`` by default: local files and the stores Spark runs on
#: (``s3a``/``s3n`` count as ``s3``); ``*`` allows any scheme.
AUDIO_SCHEMES = ("file", "s3", "gs", "gcs", "abfs", "abfss", "az", "dbfs", "hdfs")
ANY_SCHEME = "*"

#: Why a window's clip could not be cut (``_rejected_audio/`` ``reason``), in the
#: order ``_metrics.json`` and the report list them.
AUDIO_REASONS = (
    "no_path",  # the path field is missing or not text
    "scheme_not_allowed",  # the path's URL scheme is not in audio.allowed_schemes
    "outside_root",  # the path resolves outside audio.root
    "missing",  # no file at the path
    "unreadable",  # libsndfile cannot open it (not audio, unknown format)
    "corrupt",  # decoding failed part way
    "before_start",  # the window starts before 0
    "past_end",  # the window ends after the file's last frame
    "empty",  # the window is shorter than one frame at the file's rate
    "equal_shards",  # cut, then left out so that every shard holds as many clips
)

#: Counted figures of the audio step (per task, then summed over the run).
AUDIO_COUNTS = (
    "clips_written",
    "bytes_written",
    "entries",
    "files_read",
    "files_rate_mismatch",
    *(f"clips_lost_{reason}" for reason in AUDIO_REASONS),
)
#: Seconds of audio written (at the clips' rate) and lost, by reason.
AUDIO_SECONDS = ("seconds_written", *(f"seconds_lost_{reason}" for reason in AUDIO_REASONS))


# The output directory's files and folders.
METRICS_FILE = "_metrics.json"
REPORT_FILE = "_report.html"
SUCCESS_FILE = "_SUCCESS"
REJECTED_DIR = "_rejected"
LOST_WINDOWS_DIR = "_lost_windows"
WINDOWS_DIR = "_windows"
SHARDS_DIR = "_shards"
#: A run's scratch folder in the output: Spark's small rows, audio before its commit.
SCRATCH_DIR = "_scratch"
#: In a step's scratch folder while the step is open: tasks commit data files only then.
STEP_OPEN = "_open"
REJECTED_AUDIO_DIR = "_rejected_audio"
#: Beside ``_shards/`` (where loaders read every file): the shard index, one fragment per
#: commit step, named by the step's prefix and run, then this suffix.
SHARD_INDEX_DIR = "_shard_index"
SHARD_INDEX_SUFFIX = "index.json"
#: In a step's scratch folder: the numbered shard files its repack pass will write
#: (numbered names carry no step, so a killed run's are found by this note).
NUMBERED_INTENT = "numbered.json"
#: Inside ``_shards/`` with ``audio.format: nemo``: one ``manifest_N.json`` per ``audio_N.tar``.
NEMO_MANIFESTS_DIR = "sharded_manifests"
#: Inside ``_shards/`` with ``audio.equal_shards``: the clips a step could not fill a round
#: of shards with, waiting for the next step (a tar and its clip rows; never read by loaders).
WAITING_DIR = "_waiting"
#: Written into ``_metrics.json``; only a directory carrying it is ever replaced.
PRODUCER = "alm_spark"
