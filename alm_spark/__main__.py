"""``python -m alm_spark``: the same command line as ``alm-spark``."""

from __future__ import annotations

from alm_spark.cli import main

raise SystemExit(main())
