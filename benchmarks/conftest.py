"""Benchmark session setup: torch (and torchvision, which pulls in triton) before tensorflow, which
segfaults the other way round; the peers are compared in the same run."""

import importlib.util

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision.models  # noqa: F401


def pytest_collection_modifyitems(items: list) -> None:
    """Runs the benchmarks of torch and the (torch-based) peers first, then tensorflow's, then jax's: once
    tensorflow and jax had run in the process, fidkit torch's pipeline measured 15-27% over four of its
    own forwards in the same run, against 5% with torch alone (2-core machine, 2026-11-23)."""
    def rank(item) -> int:
        params = getattr(getattr(item, "callspec", None), "params", {})
        return {"tf": 1, "jax": 2}.get(params.get("runtime"), 0)

    items.sort(key=rank)  # stable: the order within each framework is the files' own
