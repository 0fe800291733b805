"""Every check of a job's settings and surroundings, each run once, in one place.

:func:`check_job` runs what needs no Spark, before a JVM starts: settings a re-cut
cannot honour, local inputs, the output's parent on local disks, the audio libraries.
:func:`check_finished` runs right after the session exists, for a re-cut: what needs
the cluster's file system or a Parquet read. The checks of input and output paths
through the cluster's file system belong to the run itself
(:func:`~alm_spark.storage.io.resolve_manifest_paths`,
:func:`~alm_spark.storage.publish.check_output_location`). ``alm-spark run``,
``alm-spark recut``, spark-submit and the Python API all pass here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alm_spark import rows
from alm_spark.audio.cut import check_audio_libraries
from alm_spark.config import PipelineConfig
from alm_spark.errors import ConfigError, InputError
from alm_spark.names import METRICS_FILE, PRODUCER, SUCCESS_FILE, WINDOWS_DIR
from alm_spark.storage.fs import FileSystem, join, os_path
from alm_spark.storage.io import check_local_inputs
from alm_spark.storage.publish import check_output_parent


@dataclass(frozen=True)
class Job:
    """A command whose settings passed :func:`check_job`.

    Attributes:
        config: The settings.
        recut_from: The finished output a re-cut reads; None for a run.
    """

    config: PipelineConfig
    recut_from: str | None = None


def check_job(config: PipelineConfig, recut_from: str | None = None) -> Job:
    """Check what can be checked without Spark; the job to run.

    Args:
        config: The settings (for a re-cut, from :func:`~alm_spark.config.recut_config`).
        recut_from: The finished output to re-cut, or None for a run.

    Raises:
        ConfigError: A setting the job cannot honour, or a missing audio library.
        InputError: A local input path that does not exist.
        OutputError: An output path below an existing file (local paths).
    """
    if recut_from is not None:
        check_recut_config(config)
    else:
        check_local_inputs(config.input.paths)
    if config.audio.enabled:
        check_audio_libraries()
    if os_path(config.output.path) is not None:
        check_output_parent(config.output.path)
    return Job(config, recut_from)


def check_recut_config(config: PipelineConfig) -> None:
    """Refuse settings a re-cut cannot honour.

    Raises:
        ConfigError: When audio is off, or ``audio.path_field`` is not a column of the
            windows table.
    """
    if not config.audio.enabled:
        raise ConfigError(
            "audio.enabled: a re-cut cuts audio; build its settings with "
            "alm_spark.config.recut_config (alm-spark recut does)"
        )
    if config.output.mode == "update":
        raise ConfigError(
            "output.mode: update cannot bring a re-cut up to date; re-cut the updated "
            "output into a new path, or use overwrite"
        )
    field = config.audio.path_field
    if field not in rows.WINDOW.names:
        raise ConfigError(
            f"audio.path_field: a re-cut reads the path from the windows table, which holds "
            f"audio_filepath and swift_audio_filepath, not {field}"
        )


def check_output_storage(fs: FileSystem, output: str) -> None:
    """The output's parent on a remote store, through the cluster's file system.

    Local paths were checked by :func:`check_job`.
    """
    if os_path(output) is None:
        check_output_parent(output, fs)


def check_finished(
    fs: FileSystem, source: str, table_columns: Callable[[str], list[str]]
) -> dict[str, Any]:
    """The ``_metrics.json`` of a finished output a re-cut can read.

    Args:
        fs: The file system.
        source: The finished output.
        table_columns: Reads the columns of the Parquet table at a path.

    Raises:
        InputError: When ``source`` is not a finished output, has no windows table (a
            re-cut holds clips, not windows), or its table was written by an older
            version.
    """
    if not fs.exists(join(source, SUCCESS_FILE)):
        raise InputError(f"{source}: not a finished alm_spark output (no {SUCCESS_FILE})")
    try:
        metrics = json.loads(fs.read_text(join(source, METRICS_FILE)))
    except Exception as err:
        raise InputError(f"{source}: cannot read {METRICS_FILE}: {err}") from None
    if not isinstance(metrics, dict) or metrics.get("producer") != PRODUCER:
        raise InputError(f"{source}: {METRICS_FILE} was not written by {PRODUCER}")
    table = join(source, WINDOWS_DIR)
    if not fs.exists(table):
        if "recut_from" in metrics:  # a re-cut holds clips, not windows
            raise InputError(
                f"{source}: is a re-cut and has no {WINDOWS_DIR}/ table; re-cut "
                f"{metrics['recut_from']} instead"
            )
        raise InputError(
            f"{source}: has no {WINDOWS_DIR}/ table to re-cut from (runs write it with "
            "audio.enabled or output.windows_table: true)"
        )
    missing = sorted(set(rows.WINDOW.names) - set(table_columns(table)))
    if missing:  # written by an older version
        raise InputError(
            f"{source}: its {WINDOWS_DIR}/ table lacks {', '.join(missing)} (written by an "
            "older alm_spark); run the job again to re-cut it"
        )
    return metrics
