"""Several processes, one result: ``torchrun -m fidkit ...`` splits the images, merges the statistics exactly.

Under ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` in the environment) the
command line joins a ``torch.distributed`` process group (gloo on the CPU, nccl when the device is a
GPU; each process then uses ``cuda:LOCAL_RANK``). torch is imported only then: ``import fidkit`` imports
no framework.

Sharding. The input's images are listed in their usual deterministic order (sorted paths, array rows)
and cut into the batches a single process would read (``batch_size`` each, the last one shorter). Rank
r takes the contiguous run of batches ``[ceil(r B / W), ceil((r + 1) B / W))`` of the B batches (W
processes): every image goes through the network in exactly the batch it would have in a
single-process run, so its features are bit-identical to that run's, whatever the network's batch
arithmetic. Uneven shards, and ranks with no image at all (fewer batches than processes), are normal.
(With ``--skip-bad`` and unreadable files, a single process fills each batch with the next readable
files, so batch contents, and features, may differ from a sharded run's at float32 rounding.)

Statistics. Each rank streams its features into a `fidkit.stats.StatsAccumulator`: count n_r, mean
m_r and centred sum of squares M2_r. One all-reduce (sum) of one float64 message carries them all:
W slots of (n_r, m_r), each filled by its own rank and zero elsewhere — a sum with one non-zero term is
exact, so every rank receives every (n_r, m_r) bit for bit — followed by one d x d block holding
sum_r M2_r (a sum of positive semi-definite matrices: no cancellation). The between-shard term
sum_r n_r (m_r - m)(m_r - m)ᵀ and the mean are then computed from the exact (n_r, m_r) by Chan, Golub
and LeVeque's pairwise update (1983, eq. 2.1b) in rank order, the update `fidkit.Stats.merge` uses.
The message is W (1 + d) + d² numbers: one d x d matrix whatever the number of images. The result
equals the single-process statistics to rounding (the two sum the same centred terms in a different
order: within 1e-12 relative, FID likewise), and with two processes the all-reduce itself is exact
(a + b = b + a), so it is also reproducible run to run.

Features (KID, precision/recall, IS) are gathered to rank 0 only when a metric needs them, in rank
order, which is input order: the features, and every metric computed from them, equal the
single-process ones exactly.

Errors. After its own share, every rank reports success or its error to all others (one small
all-gather), so a rank that fails (an unreadable file in its shard) makes every rank stop with that
message instead of waiting for it; rank 0 prints it.
"""

from __future__ import annotations

import atexit
import copy
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, FidkitError, InputError
from .stats import Provenance, Stats, StatsAccumulator, _combine, _mirror_upper


@dataclass(frozen=True)
class Job:
    """This process's place in a ``torch.distributed`` job: ``rank`` of ``world_size``, ``local_rank``
    on its node, and the process group's backend ("gloo" or "nccl")."""

    rank: int
    world_size: int
    local_rank: int = 0
    backend: str = "gloo"

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes and prints."""
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting ``WORLD_SIZE`` and
    ``RANK``) as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def current() -> Job | None:
    """Returns the `Job` of an initialized ``torch.distributed`` process group of more than one process,
    else None; never imports torch (a group exists only if torch.distributed was imported)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    world = dist.get_world_size()
    if world < 2:
        return None
    return Job(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")), str(dist.get_backend()))


def is_main() -> bool:
    """Whether this process prints and writes: rank 0 of a distributed job, or any single process."""
    job = current()
    return job is None or job.main


def says(exc: BaseException) -> str | None:
    """Returns the line this process prints for the error ``exc``: ``fidkit: <message>`` in a single
    process and on rank 0, ``fidkit: rank r: <message>`` on another rank for an error of its own, None
    there for an error every rank raised alike (`on_every_rank`: rank 0 says it)."""
    job = current()
    if job is None or job.main:
        return f"fidkit: {exc}"
    return None if getattr(exc, "fidkit_every_rank", False) else f"fidkit: rank {job.rank}: {exc}"


def _uses_gpu(device: str | None, torch: Any) -> bool:
    d = (device or "cpu").lower()
    if d == "auto":
        return bool(torch.cuda.is_available())
    return d in ("cuda", "gpu") or d.startswith(("cuda:", "gpu:"))


def init_from_env(device: str | None = None) -> tuple[Job | None, str | None]:
    """Returns (the job, the device this rank uses) after joining the process group that ``torchrun``'s
    environment describes; (None, ``device``) in a single process.

    gloo when the device is the CPU, nccl when it is a GPU (then the device is ``cuda:LOCAL_RANK``
    unless a numbered one was given). Raises `BackendUnavailableError` without torch.
    """
    if not launched():
        return None, device
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise BackendUnavailableError("torchrun started several fidkit processes, and joining them needs "
                                      "torch: pip install 'fidkit[torch]'") from None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    gpu = _uses_gpu(device, torch)
    if gpu and (device or "").lower() in ("cuda", "gpu", "auto"):
        device = f"cuda:{local}"
    backend = "nccl" if gpu and torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(str(device).partition(":")[2] or local))
        dist.init_process_group(backend)
        atexit.register(_leave)
    return current(), device


def _leave() -> None:
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(n: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Returns [start, stop) of the images of rank ``rank``: whole batches of ``batch_size``, the
    contiguous run ``[ceil(r B / W), ceil((r + 1) B / W))`` of the B = ceil(n / batch_size) batches."""
    batches = math.ceil(n / batch_size)
    lo = -(-rank * batches // world_size)
    hi = -(-(rank + 1) * batches // world_size)
    return min(lo * batch_size, n), min(hi * batch_size, n)


def subset(source: Any, start: int, stop: int) -> Any:
    """Returns an image source over images [start, stop) of ``source`` (a folder, zip or array input),
    decoded as ``source`` decodes them. Raises `InputError` for a generator (its per-batch seeds tie
    it to one process) or another kind of source."""
    from .images import ArraySource, FileSource

    if not isinstance(source, (ArraySource, FileSource)):
        kind = getattr(source, "description", type(source).__name__)
        raise InputError(f"{kind}: distributed and resumable runs (torchrun, --checkpoint) read folders, "
                         f"zips and image arrays only; save the images first")
    out = copy.copy(source)
    out.names = list(source.names[start:stop])
    out.skipped = []
    if isinstance(source, ArraySource):
        out._array = source._array[start:stop]
    else:
        out._sizes = None
    return out


def _moments(acc: StatsAccumulator | None, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Returns (n, mean (d,), centred sum of squares (d, d), symmetric) of an accumulator's rows."""
    if acc is None or acc.n == 0:
        return 0, np.zeros(dim), np.zeros((dim, dim))
    acc._flush()
    if acc._dim != dim or acc._mean is None or acc._m2 is None:
        raise InputError(f"features have {acc._dim} dimensions, the extractor says {dim}")
    return acc._n_merged, acc._mean, _mirror_upper(acc._m2)


def pack(acc: StatsAccumulator | None, dim: int, rank: int, world_size: int) -> np.ndarray:
    """Returns this rank's float64 message: W slots of (n, mean), its own filled, the rest zero, then
    its centred sum of squares (d, d); summed over the ranks, `unpack` reads the statistics."""
    n_r, mean_r, m2_r = _moments(acc, dim)
    slot = 1 + dim
    buf = np.zeros(world_size * slot + dim * dim)
    buf[rank * slot] = n_r
    buf[rank * slot + 1:(rank + 1) * slot] = mean_r
    buf[world_size * slot:] = m2_r.ravel()
    return buf


def unpack(total: np.ndarray, dim: int, world_size: int, provenance: Provenance, label: str) -> Stats:
    """Returns the statistics of the sum of every rank's `pack` message: the mean and between-rank term
    by Chan's pairwise update over the exact (n_r, m_r) in rank order, plus the summed M2. Raises
    `InputError` for fewer than 2 images in all."""
    slot = 1 + dim
    n, mean, between = 0, np.zeros(dim), np.zeros((dim, dim))
    zero = np.zeros((dim, dim))
    for k in range(world_size):
        n_k = int(round(total[k * slot]))
        if n_k == 0:
            continue
        m_k = total[k * slot + 1:(k + 1) * slot]
        if n == 0:
            n, mean = n_k, m_k.copy()
        else:
            n, mean, between = _combine(n, mean, between, n_k, m_k, zero)
    if n < 2:
        what = "no images" if n == 0 else "1 image"
        raise InputError(f"{label}: {what}; a mean and covariance (FID) need at least 2 images — pass more "
                         f"images")
    m2 = total[world_size * slot:].reshape(dim, dim) + between
    return Stats(n, mean, m2 / (n - 1), provenance)


def merge_stats(acc: StatsAccumulator | None, dim: int, provenance: Provenance, label: str,
                job: Job) -> Stats:
    """Returns the statistics of every rank's rows, on every rank, from one all-reduce of `pack`'s
    message (see the module's docstring for the merge). Raises `InputError` for fewer than 2 images."""
    from .registry import backend

    total = backend("torch").all_reduce_sum(pack(acc, dim, job.rank, job.world_size))
    try:
        return unpack(np.asarray(total, dtype=np.float64), dim, job.world_size, provenance, label)
    except InputError as exc:
        raise on_every_rank(exc) from None


def exchange(job: Job, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Returns every rank's ``report`` (a small picklable dict), in rank order, on every rank."""
    import torch.distributed as dist

    out: list[Any] = [None] * job.world_size
    dist.all_gather_object(out, report)
    return out


def on_every_rank(exc: BaseException) -> BaseException:
    """Returns ``exc`` marked as raised alike on every rank: the command line prints it on rank 0 only
    (an error of one rank alone is printed by that rank)."""
    exc.fidkit_every_rank = True  # type: ignore[attr-defined]
    return exc


def check_reports(reports: list[dict[str, Any]], job: Job) -> None:
    """Raises on every rank the first error any rank reported: its own `FidkitError` text (prefixed with
    the rank), so that no rank waits for one that stopped."""
    for k, rep in enumerate(reports):
        if rep.get("error"):
            raise on_every_rank(FidkitError(f"rank {k} of {job.world_size}: {rep['error']}"))


def gather_rows(job: Job, rows: Any) -> list[Any] | None:
    """Returns every rank's ``rows`` (a picklable object) in rank order on rank 0, None elsewhere."""
    import torch.distributed as dist

    out: list[Any] | None = [None] * job.world_size if job.main else None
    dist.gather_object(rows, out, dst=0)
    return out
