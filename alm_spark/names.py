"""Names and constants shared by every layer: figures, row kinds, output file names.

The core (this package) and the Spark layer (:mod:`alm_spark.spark`) both read these;
nothing here imports anything else from the package.
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
AUDIO_FORMATS = ("webdataset", "nemo")

# Kinds of the rows an engine produces before they are written.
KIND_ENTRY = "entry"  # an output line
KIND_REJECTED = "rejected"  # a staged rejected-line record (JSON)
KIND_BLOCK = "block"  # how many lines one input split held (JSON)
KIND_LOST = "lost"  # an entry's lost_win_full_data, with lost_window_details=separate
KIND_REPORT = "report"  # a task's summed report figures (JSON)
KIND_WINDOW = "window"  # one windows-table row (JSON), with output.windows_table
KIND_SHARD = "shard"  # an audio shard a task attempt wrote (JSON), with audio.enabled
KIND_AUDIO_REJECTED = "rejected_audio"  # a window whose clip could not be cut (JSON)
KIND_CLIP = "clip"  # where a clip sits in a first-pass shard, for the repack pass (JSON)

# The output directory's files and folders.
METRICS_FILE = "_metrics.json"
REPORT_FILE = "_report.html"
SUCCESS_FILE = "_SUCCESS"
REJECTED_DIR = "_rejected"
LOST_WINDOWS_DIR = "_lost_windows"
WINDOWS_DIR = "_windows"
SHARDS_DIR = "_shards"
REJECTED_AUDIO_DIR = "_rejected_audio"
#: Inside ``_shards/`` with ``audio.format: nemo``: one ``manifest_N.json`` per ``audio_N.tar``.
NEMO_MANIFESTS_DIR = "sharded_manifests"
#: Written into ``_metrics.json``; only a directory carrying it is ever replaced.
PRODUCER = "alm_spark"
