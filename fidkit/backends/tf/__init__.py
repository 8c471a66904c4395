"""The TensorFlow runtime.

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
    """Returns a TensorFlow tensor as a numpy array on the host."""
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def is_tensor(obj: Any) -> bool:
    """Returns whether ``obj`` is a TensorFlow tensor or variable (without importing tensorflow)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(obj, (tf.Tensor, tf.Variable))


def all_reduce_sum(x: np.ndarray) -> np.ndarray:
    """Returns the sum of ``x`` over the processes of a job: fidkit runs TensorFlow in one process
    (multi-worker jobs reduce with torch.distributed or jax), so ``x``."""
    return x


__all__ = ["all_reduce_sum", "is_tensor", "network", "preprocess", "to_host"]
