"""Returns context managers for the metrics' long steps: bounded BLAS thread pools and progress bars.

Small matrices (a 128 x 128 covariance's eigendecomposition, a bootstrap replicate) gain nothing from
several BLAS threads and lose a lot when other work competes for the cores: each call wakes every
thread of the pool, and on 2 loaded cores a 128-d decomposition took 0.6 s instead of 5 ms (issue 13).
Loops of small factorisations therefore run with one BLAS thread (threadpoolctl, the maintained tool
for this, limits the pools of whichever BLAS numpy and scipy loaded); large matrix products keep the
pool. Loops of independent medium-sized products (KID's subsets) run one thread per core, each with one
BLAS thread (`parallel_map`), in a fixed order of draws, so the numbers do not depend on the thread
count. Without threadpoolctl installed the limits are skipped and the numbers are the same.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

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


def cores() -> int:
    """Returns the number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[T], float], items: Sequence[T], bar: Any = None) -> list[float]:
    """Returns ``[fn(item) for item in items]``, in order, computed by one thread per core with one BLAS
    thread each (never more busy threads than cores); numpy releases the GIL in the matrix products and
    elementwise loops that ``fn`` spends its time in. ``bar`` (a tqdm bar or None) counts finished items."""
    workers = min(cores(), len(items))
    with blas_threads(1):
        if workers <= 1:
            out = []
            for item in items:
                out.append(fn(item))
                if bar is not None:
                    bar.update(1)
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fn, item) for item in items]
            out = []
            for f in futures:
                out.append(f.result())
                if bar is not None:
                    bar.update(1)
            return out
