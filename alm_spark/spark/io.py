"""Reading manifests and writing results; nothing else.

Manifests are read as text (one row per physical line) rather than with Spark's
JSON reader: a line is decoded in Python, exactly, so every value keeps its JSON
type even when a key's type differs from line to line.
"""

from __future__ import annotations

import glob as pyglob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from alm_spark.core.config import OutputConfig
from alm_spark.core.errors import InputError, OutputError
from alm_spark.spark.fs import FileSystem, has_glob, is_within, parent_and_name

#: Files read from a directory (searched recursively); named files are read whatever
#: their name. Spark skips names starting with "_" or "." everywhere.
MANIFEST_NAME_GLOB = "*.{jsonl,json,jsonl.gz,json.gz}"
MANIFEST_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class ManifestSources:
    """Input paths sorted by how Spark must read them."""

    files: tuple[str, ...]
    directories: tuple[str, ...]


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith(("file:", "hdfs:", "dbfs:"))


def check_local_inputs(paths: Sequence[str]) -> None:
    """Fail fast, before Spark starts, when a local input path does not exist.

    Remote URIs are checked later, through the cluster's file system.

    Raises:
        InputError: Naming ``input.manifest_path`` and the missing path.
    """
    for path in paths:
        if not _is_local(path):
            continue
        found = os.path.exists(path) or (has_glob(path) and pyglob.glob(path))
        if not found:
            raise InputError(f"input.manifest_path: no such file or directory: {path}")


_GLOB_ESCAPES = str.maketrans({ch: "\\" + ch for ch in "\\*?[]{}"})


def escape_glob(path: str) -> str:
    """Escape glob characters: Spark expands every path it is given as a pattern."""
    return path.translate(_GLOB_ESCAPES)


def _is_hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def _read_from_directory(path: str, directory: str) -> bool:
    """Whether a directory read picks up ``path``: a manifest name, no hidden part."""
    parts = path[len(directory.rstrip("/")) + 1 :].split("/")
    return parts[-1].endswith(MANIFEST_SUFFIXES) and not any(_is_hidden(p) for p in parts)


def resolve_manifest_paths(fs: FileSystem, paths: Sequence[str]) -> ManifestSources:
    """Expand globs and sort input paths into files and directories.

    A path that exists is taken literally, glob characters and all. Globs skip
    hidden names (``_``/``.``), as directory reads do. Inputs covered by another
    input directory are dropped, so no line is read twice.

    Raises:
        InputError: When a path or glob matches nothing, or a named file is hidden.
    """
    files: list[str] = []
    directories: list[str] = []
    for path in paths:
        if fs.exists(path):
            qualified = fs.qualify(path)
            if fs.is_dir(path):
                directories.append(qualified)
                continue
            if _is_hidden(parent_and_name(qualified)[1]):
                raise InputError(
                    f"input.manifest_path: Spark does not read files whose names start with "
                    f"'_' or '.'; rename {path}"
                )
            files.append(qualified)
        elif has_glob(path):
            matches = [m for m in fs.glob(path) if not _is_hidden(parent_and_name(m.path)[1])]
            if not matches:
                raise InputError(f"input.manifest_path: the pattern matches nothing: {path}")
            for match in matches:
                (directories if match.is_dir else files).append(match.path)
        else:
            raise InputError(f"input.manifest_path: no such file or directory: {path}")
    directories = [
        d for d in dict.fromkeys(directories)
        if not any(o != d and is_within(d, o) for o in directories)
    ]  # fmt: skip
    files = [
        f for f in dict.fromkeys(files)
        if not any(is_within(f, d) and _read_from_directory(f, d) for d in directories)
    ]  # fmt: skip
    return ManifestSources(tuple(files), tuple(directories))


def _with_location(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("_metadata.file_path").alias("source"),
        F.col("_metadata.file_block_start").alias("block_start"),
        F.col("value"),
    )


def read_manifest_lines(spark: SparkSession, sources: ManifestSources) -> DataFrame:
    """Read every physical line of the manifests, with where it came from.

    Args:
        spark: The session.
        sources: Resolved input paths.

    Returns:
        ``source, block_start, value`` (:data:`~alm_spark.spark.schemas.MANIFEST_LINES_SCHEMA`).

    Raises:
        InputError: When no manifest file is found.
    """
    frames = []
    if sources.files:
        frames.append(_with_location(spark.read.text([escape_glob(f) for f in sources.files])))
    if sources.directories:
        reader = (
            spark.read.option("recursiveFileLookup", "true")
            .option("pathGlobFilter", MANIFEST_NAME_GLOB)
            .text([escape_glob(d) for d in sources.directories])
        )
        frames.append(_with_location(reader))
    lines_df = reduce(DataFrame.unionByName, frames)
    if not lines_df.inputFiles():
        where = ", ".join(sources.directories)
        raise InputError(
            f"input.manifest_path: no manifest files ({', '.join(MANIFEST_SUFFIXES)}) under {where}"
        )
    return lines_df


#: Figures kept beside each entry in parquet output, for filtering without JSON.
PARQUET_FIGURES = (
    "total_segments",
    "windows",
    "filtered_windows",
    "filtered_pairs",
    "truncation_events",
    "total_dur",
    "filtered_dur",
)


def write_staged_results(results_df: DataFrame, path: str, output: OutputConfig) -> None:
    """Write all result rows in one job, one directory per kind (``kind=entry`` ...).

    Text output holds the JSON lines; parquet output holds them in an ``entry`` column
    beside a few figures.

    Raises:
        OutputError: When the compression codec is not available to this Spark.
    """
    if output.format == "parquet":
        frame = results_df.select("kind", F.col("record").alias("entry"), *PARQUET_FIGURES)
    else:
        frame = results_df.select("kind", "record")
    writer = frame.write.mode("overwrite").partitionBy("kind").option("compression", output.codec)
    try:
        (writer.parquet if output.format == "parquet" else writer.text)(path)
    except Exception as err:
        # Spark 4 names the error class; Spark 3.5's text writer knows no zstd at all.
        if "CODEC_NOT_AVAILABLE" in str(err) or "is not available. Known codecs" in str(err):
            raise OutputError(
                f"output.compression: {output.codec} is not available for {output.format} "
                "output with this Spark (Hadoop's native library is missing, or Spark 3.5); "
                "use gzip, or output.format=parquet"
            ) from None
        raise


def read_staged(
    spark: SparkSession, path: str, kind: str, schema: StructType, output_format: str
) -> DataFrame:
    """Read one kind of staged record back, as typed columns."""
    where = escape_glob(f"{path}/kind={kind}")
    if output_format == "parquet":
        parsed = spark.read.parquet(where).select(F.from_json("entry", schema).alias("r"))
        return parsed.select("r.*")
    return spark.read.schema(schema).json(where)


def write_json_lines(df: DataFrame, path: str, compression: str = "none") -> None:
    """Write each row as one JSON object per line (nulls written, not dropped)."""
    lines = df.select(F.to_json(F.struct(*df.columns), {"ignoreNullFields": "false"}))
    lines.write.mode("overwrite").option("compression", compression).text(path)
