"""Returns context managers for the metrics' long steps: bounded BLAS thread pools and progress bars.

Small matrices (a 128 x 128 covariance's eigendecomposition, a bootstrap replicate) gain nothing from
several BLAS threads and lose a lot when other work competes for the cores: each call wakes every
thread of the pool, and on 2 loaded cores a 128-d decomposition took 0.6 s instead of 5 ms (issue 13).
Loops of small factorisations therefore run with one BLAS thread (threadpoolctl, the maintained tool
for this, limits the pools of whichever BLAS numpy and scipy loaded); large matrix products keep the
pool. Without threadpoolctl installed the limits are skipped and the numbers are the same.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

#: Below this feature dimension a loop of factorisations runs with one BLAS thread.
SMALL_DIM = 512


def blas_threads(limit: int | None) -> contextlib.AbstractContextManager[Any]:
    """Returns a context that caps the BLAS thread pools at ``limit`` threads (None: no change)."""
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the limit is an optimisation; results do not depend on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


def small_blas(dim: int) -> contextlib.AbstractContextManager[Any]:
    """Returns a context with one BLAS thread when ``dim`` < `SMALL_DIM`, else leaves the pools alone."""
    return blas_threads(1 if dim < SMALL_DIM else None)


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "it") -> Any:
    """Returns a tqdm bar on stderr (disabled unless ``enabled``), for steps longer than a few seconds."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, leave=False)
