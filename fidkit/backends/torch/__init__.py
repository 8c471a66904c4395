"""The torch runtime.

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
    """Returns a torch tensor (any device) as a numpy array on the host (float32 outputs stay float32)."""
    return x.detach().float().cpu().numpy()


def is_tensor(obj: Any) -> bool:
    """Returns whether ``obj`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def all_reduce_sum(x: np.ndarray) -> np.ndarray:
    """Returns the sum of ``x`` over the processes of a ``torch.distributed`` job (float64 all-reduce on
    the process group's device), or ``x`` itself outside one."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64), device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


__all__ = ["all_reduce_sum", "is_tensor", "network", "preprocess", "to_host"]
