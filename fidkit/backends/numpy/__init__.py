"""The numpy runtime: a float64 reference interpreter of fidkit graphs (slow, exact, always installed).

Entry points (the same in every runtime package): `network`, `preprocess`, `to_host`, `is_tensor`,
`all_reduce_sum`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .network import network
from .preprocess import preprocess


def to_host(x: Any) -> np.ndarray:
    """Returns ``x`` as a numpy array (it is one already)."""
    return np.asarray(x)


def is_tensor(obj: Any) -> bool:
    """Returns whether ``obj`` is this runtime's array type (numpy's)."""
    return isinstance(obj, np.ndarray)


def all_reduce_sum(x: np.ndarray) -> np.ndarray:
    """Returns the sum of ``x`` over the processes of a job: numpy runs in one process, so ``x``."""
    return x


__all__ = ["all_reduce_sum", "is_tensor", "network", "preprocess", "to_host"]
