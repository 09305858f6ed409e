"""graphc's ops against what MXNet 1.9.1 computed (issue [mxnet-import]).

tests/fixtures/mxnet/parity.npz holds, for 106 cases over every op family, MXNet's
symbol JSON, inputs, outputs, inferred label shapes and gradients, written by
``tools/mxnet_parity.py mxnet`` in MXNet's own environment (its docstring gives the
commands). Here graphc imports each case through ``gc.mxnet``'s reader and compares its
reference's outputs and gradients, so a change to an op's meaning that MXNet would not
make fails without MXNet installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location(
        "mxnet_parity", ROOT / "tools" / "mxnet_parity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_op_family_computes_what_mxnet_computed(capsys):
    status = _tool().run_graphc(str(ROOT / "tests" / "fixtures" / "mxnet" / "parity.npz"))
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 33, table  # the header and 32 op families
    assert status == 0, table
