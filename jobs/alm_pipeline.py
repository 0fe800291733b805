"""spark-submit entry point: ``spark-submit alm_pipeline.py --config alm_pipeline.yaml [...]``.

``spark-submit alm_pipeline.py recut FINISHED output.path=NEW [...]`` runs ``alm-spark recut``.

Thin on purpose: arguments, session and run all go through ``alm_spark.cli``, so
``alm-spark run`` and spark-submit behave the same. ``alm_spark`` and its dependencies
must be importable on the driver and the executors (see the README's "On a cluster").
This file is ``jobs/alm_pipeline.py`` in the repository and is shipped in the package:
``alm-spark paths entry`` prints its path in an installation.
"""

from __future__ import annotations

import sys

from alm_spark.cli import main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    # ``alm_pipeline.py recut FINISHED ...`` re-cuts audio; anything else is a run.
    sys.exit(main(arguments if arguments[:1] == ["recut"] else ["run", *arguments]))
