"""spark-submit entry point: ``spark-submit jobs/alm_pipeline.py --config conf/alm_pipeline.yaml``.

Thin on purpose: arguments, session and run all go through ``alm_spark.cli``, so
``alm-spark run`` and spark-submit behave the same. ``alm_spark`` must be importable
on the driver and executors (``pip install .`` into the cluster's Python
environment, or ship it with ``--py-files``; see the README).
"""

from __future__ import annotations

import sys

from alm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
