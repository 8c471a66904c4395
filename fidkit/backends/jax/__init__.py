"""The JAX runtime.

Entry points (the same in every runtime package): `network`, `preprocess`, `to_host`, `is_tensor`,
`all_reduce_sum`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .network import network
from .preprocess import preprocess


def to_host(x: Any) -> np.ndarray:
    """Returns a jax array as a numpy array on the host."""
    return np.asarray(x)


def is_tensor(obj: Any) -> bool:
    """Returns whether ``obj`` is a jax array (without importing jax)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.Array)


def all_reduce_sum(x: np.ndarray) -> np.ndarray:
    """Returns the sum of ``x`` over the processes of a ``jax.distributed`` job, or ``x`` in one process."""
    import jax

    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(x, dtype=np.float64))
    return np.asarray(gathered, dtype=np.float64).sum(axis=0)


__all__ = ["all_reduce_sum", "is_tensor", "network", "preprocess", "to_host"]
