"""Every public module, class, method and function of fidkit has a docstring (issue 11).

Checked with ruff's pydocstyle rules D100-D104 and D106 (the public part; ``__init__`` and magic methods
are documented by their class), so the rule is enforced by a tool, not by review. The contents (shapes,
dtypes, units, what is raised, the source reproduced) are the reviewer's part.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = "D100,D101,D102,D103,D104,D106"


def _ruff() -> str:
    here = Path(sys.executable).with_name("ruff")
    found = str(here) if here.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is a dev dependency (pip install -e '.[dev]') and is needed by this test")
    return found


def test_every_public_object_has_a_docstring() -> None:
    out = subprocess.run([_ruff(), "check", "fidkit", "--select", RULES, "--output-format", "concise",
                          "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    missing = [line for line in out.stdout.splitlines() if ": D1" in line]
    assert out.returncode == 0 and not missing, "public objects without a docstring:\n" + "\n".join(missing)
