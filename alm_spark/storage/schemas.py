"""The Spark and Arrow schemas of the job's rows, derived from :mod:`alm_spark.rows`.

Each row kind is defined once, there; these are its Spark (and, for rows built in
Arrow, pyarrow) forms as module constants.
"""

from __future__ import annotations

from alm_spark import rows

MANIFEST_LINES_SCHEMA = rows.MANIFEST_LINE.spark_schema()
RESULT_SCHEMA = rows.RESULT.spark_schema()
RESULT_ARROW_SCHEMA = rows.RESULT.arrow_schema()
STAGED_REJECTED_SCHEMA = rows.STAGED_REJECTED.spark_schema()
STAGED_BLOCK_SCHEMA = rows.STAGED_BLOCK.spark_schema()
REJECTED_SCHEMA = rows.REJECTED.spark_schema()
#: ``_windows/``: see :data:`alm_spark.rows.WINDOW`.
WINDOWS_TABLE_SCHEMA = rows.WINDOW.spark_schema()
AUDIO_RESULT_SCHEMA = rows.AUDIO_RESULT.spark_schema()
AUDIO_RESULT_ARROW_SCHEMA = rows.AUDIO_RESULT.arrow_schema()
AUDIO_FIGURES_SCHEMA = rows.AUDIO_FIGURES.spark_schema()
SHARD_SCHEMA = rows.SHARD.spark_schema()
CLIP_SCHEMA = rows.CLIP.spark_schema()
WAITING_SCHEMA = rows.WAITING.spark_schema()
TARGETED_CLIP_SCHEMA = rows.TARGETED_CLIP.spark_schema()
ORDERED_CLIP_SCHEMA = rows.ORDERED_CLIP.spark_schema()
ROUTED_CLIP_SCHEMA = rows.ROUTED_CLIP.spark_schema()
