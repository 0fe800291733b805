"""The Spark layer: schemas, reading and writing, both engines, publishing, the job.

Built on :mod:`alm_spark.core`; the functions here take a SparkSession or a
DataFrame and never create a session.
"""
