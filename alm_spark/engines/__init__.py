"""The engines: what runs on the executors to turn manifest lines into result rows.

The fused engine (one ``mapInArrow`` pass) and the DataFrame engine (exploded segments,
a pandas UDF, a grouped map per entry) give the same rows.
"""
