"""The reference's algorithm: validating a line, building and filtering windows, rendering.

Plain Python and NumPy; nothing here imports pyspark (``tests/test_layout.py``).
"""
