"""Benchmark session setup: torch (and torchvision, which pulls in triton) before tensorflow, which
segfaults the other way round; the peers are compared in the same run."""

import importlib.util

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision.models  # noqa: F401
