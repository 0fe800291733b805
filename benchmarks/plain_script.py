"""The plain script a user would write: one process, json.loads per line, window
logic, json.dumps. ``--impl oracle`` uses the literal spec transcription from the test
suite (the reference's algorithmic cost); ``--impl fast`` uses alm_spark's window logic.

Prints one JSON line of figures at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alm_spark.algorithm.render import EntryRenderer  # noqa: E402
from alm_spark.config import build_config  # noqa: E402
from tests import oracle  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--impl", choices=["oracle", "fast"], default="oracle")
    args = parser.parse_args()
    builder: dict[str, Any] = {}
    overlap = {"overlap_percentage": 50}
    renderer = EntryRenderer(*_configs(builder, overlap))
    opener: Any = gzip.open if args.input.endswith(".gz") else open
    entries = windows = 0
    with (
        opener(args.input, "rt", encoding="utf-8", newline="\n") as src,
        open(args.output, "wb") as dst,
    ):
        for line in src:
            if not line.strip():
                continue
            if args.impl == "oracle":
                out = oracle.process_entry(json.loads(line), builder, overlap)
                windows += len(out["windows"])
                dst.write((json.dumps(out, ensure_ascii=False) + "\n").encode("utf-8"))
            else:
                outcome = renderer.render(line)
                windows += outcome.counts.get("windows", 0)
                dst.write((outcome.output or b"") + b"\n")
            entries += 1
    print(json.dumps({"entries": entries, "windows": windows}))
    return 0


def _configs(builder: dict[str, Any], overlap: dict[str, Any]) -> tuple[Any, Any]:
    cfg = build_config({"builder": builder, "overlap": overlap})
    return cfg.builder, cfg.overlap


if __name__ == "__main__":
    raise SystemExit(main())
