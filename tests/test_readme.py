"""The README's Python examples run as written, in order, as in one notebook."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


def test_readme_python_examples_run(spark, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"spark": spark}
    for block in BLOCKS:
        exec(compile(block, "README.md", "exec"), namespace)
    assert "kept_df" in namespace
