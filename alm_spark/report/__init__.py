"""Figures, the HTML report and the console summary; never imports pyspark."""
