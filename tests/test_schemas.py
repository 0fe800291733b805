"""The Spark and Arrow forms of the result schema agree."""

from __future__ import annotations

from pyspark.sql.types import DoubleType, LongType, StringType

from alm_spark.storage.schemas import RESULT_ARROW_SCHEMA, RESULT_SCHEMA


def test_result_schemas_agree() -> None:
    spark_types = {StringType(): "string", LongType(): "int64", DoubleType(): "double"}
    assert [f.name for f in RESULT_SCHEMA.fields] == RESULT_ARROW_SCHEMA.names
    for field in RESULT_SCHEMA.fields:
        arrow = RESULT_ARROW_SCHEMA.field(field.name)
        assert spark_types[field.dataType] == str(arrow.type)
        assert field.nullable == arrow.nullable
