"""README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parent.parent / "README.md"


def test_first_graph_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has a python example"
    monkeypatch.chdir(tmp_path)  # it saves mlp.json
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["probs"].shape == (100, 10)
    assert namespace["d_fc1_weight"].shape == (64, 784)
    assert (tmp_path / "mlp.json").exists()
