"""On the TensorFlow runtime the command line prints fidkit's own lines only (issue 13): no absl/oneDNN
start-up lines, no AutoGraph warnings about fidkit's functions, and the user's environment as it was."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUESTED, runtimes_under_test

from fidkit.registry import _FidkitAutoGraphFilter

FIDKIT = Path(sys.executable).with_name("fidkit")


def _needs_tf() -> None:
    if "tf" not in runtimes_under_test():
        pytest.skip("runtime 'tf' not requested in FIDKIT_TEST_RUNTIMES")
    if importlib.util.find_spec("tensorflow") is None:
        if REQUESTED is not None:
            pytest.fail("runtime 'tf' was requested but tensorflow is not installed")
        pytest.skip("tensorflow is not installed")


@pytest.mark.tf
@pytest.mark.slow
def test_fid_on_tensorflow_prints_only_fidkit_lines(tmp_path: Path) -> None:
    _needs_tf()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8))
    np.save(tmp_path / "b.npy", rng.integers(0, 128, (6, 28, 28, 3), dtype=np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([str(FIDKIT), "fid", "a.npy", "b.npy", "--runtime", "tf", "--no-progress"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("FID ")
    lines = r.stderr.splitlines()
    assert lines and all(line.startswith("fidkit: ") for line in lines), r.stderr
    assert "fidkit: extractor mnist on tf (cpu)" in lines[0]


@pytest.mark.tf
@pytest.mark.slow
def test_importing_tensorflow_leaves_the_environment_as_it_was() -> None:
    _needs_tf()
    code = ("import os; from fidkit.registry import import_runtime; import_runtime('tf', 'test'); "
            "print(repr(os.environ.get('TF_CPP_MIN_LOG_LEVEL')))")
    for given, expected in ((None, "None"), ("0", "'0'")):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        if given is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = given
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                           check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expected
        assert "oneDNN" not in r.stderr and "absl::InitializeLog" not in r.stderr, r.stderr


def _autograph_record(target: object) -> logging.LogRecord:
    return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1,
                             "AutoGraph could not transform %s and will run it as-is.\n%sCause: %s\n",
                             (target, "", "no source"), None)


def test_autograph_warnings_are_dropped_for_fidkit_functions_only() -> None:
    def users_own(x: object) -> object:
        return x

    keep = _FidkitAutoGraphFilter()
    assert not keep.filter(_autograph_record(importlib.import_module))
    assert not keep.filter(_autograph_record(_FidkitAutoGraphFilter.filter))
    assert keep.filter(_autograph_record(users_own))
    other = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "something else %s", (1,), None)
    assert keep.filter(other)
