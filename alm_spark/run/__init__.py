"""The driver: sessions, the job and the re-cut, progress, failures, spark-submit."""
