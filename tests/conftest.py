"""Shared fixtures: which runtimes to test, and import order.

FIDKIT_TEST_RUNTIMES (comma-separated, e.g. ``torch,tf,jax``) names the runtimes to check; a runtime
named there that cannot be imported fails its tests instead of skipping them. Unset, every installed
runtime is tested and the others are skipped. ``numpy`` (the reference interpreter) is always tested.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import cache
from pathlib import Path

import pytest

from fidkit.registry import RUNTIME_MODULES

_ENV = os.environ.get("FIDKIT_TEST_RUNTIMES")
REQUESTED = [r.strip() for r in _ENV.split(",") if r.strip()] if _ENV else None
for _r in REQUESTED or []:
    if _r not in RUNTIME_MODULES:
        raise pytest.UsageError(f"FIDKIT_TEST_RUNTIMES names unknown runtime {_r!r}; "
                                f"expected some of {list(RUNTIME_MODULES)}")

# torch before tensorflow: importing tensorflow and then triton (torch.compile) in one process segfaults.
if importlib.util.find_spec("torch") is not None and (REQUESTED is None or "torch" in REQUESTED):
    import torch  # noqa: F401

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision.models  # noqa: F401  (pulls in triton, which segfaults after tensorflow)


@cache
def _tolerances() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((Path(__file__).parent / "tolerances.toml").read_text())


def tolerance(section: str, key: str) -> float:
    """Returns the float32 tolerance ``[section.key] value`` of tests/tolerances.toml (its derivation is there)."""
    return float(_tolerances()[section][key]["value"])


def runtimes_under_test() -> list[str]:
    """Returns the runtimes to test: those requested, or every installed one; numpy always."""
    if REQUESTED is not None:
        return list(dict.fromkeys([*REQUESTED, "numpy"]))
    return [r for r in RUNTIME_MODULES if importlib.util.find_spec(RUNTIME_MODULES[r]) is not None]


def require_runtime(runtime: str) -> None:
    """Skips (not requested) or fails (requested but broken) when ``runtime`` cannot be imported."""
    if runtime not in runtimes_under_test():
        pytest.skip(f"runtime {runtime!r} not requested in FIDKIT_TEST_RUNTIMES")
    try:
        importlib.import_module(RUNTIME_MODULES[runtime])
    except ImportError as exc:  # requested but unusable: a failure, not a skip
        pytest.fail(f"runtime {runtime!r} was requested but cannot be imported: {exc}")


@pytest.fixture(params=list(RUNTIME_MODULES), ids=list(RUNTIME_MODULES))
def runtime(request: pytest.FixtureRequest) -> str:
    """Each runtime in turn (torch, jax, tf, numpy), skipped or failed by `require_runtime`."""
    require_runtime(request.param)
    return request.param


def cuda_available() -> bool:
    """Returns whether torch sees a CUDA device (the GPU tests' gate)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def runtime_sees_gpu(runtime: str) -> bool:
    """Whether ``runtime``'s installed build can use the visible GPU (tensorflow-cpu or jax without
    jax[cuda] cannot)."""
    if runtime == "torch":
        return cuda_available()
    if runtime == "tf":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
