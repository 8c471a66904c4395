"""Resumable extraction: each process's partial statistics (and feature rows) saved atomically every K images.

A `Checkpoint` belongs to one job: one input listing (its SHA-256 digest), one extractor (name,
runtime, weights digest, resize policy, input size), one batch size and one place in a distributed run
(world size and rank). It saves, after the batch that crosses each multiple of ``every`` images and at
the end, the exact state of the run: how many of the process's images were consumed, the files skipped
so far, the running moments of `fidkit.stats.StatsAccumulator` *including the rows it has pooled but not
yet merged*, and (when features are asked for) the feature rows written since the previous save, as one
more chunk file. A run restarted with the same options reads that state and continues from the next
batch; since batches after the restart hold exactly the images they would have held, and the
accumulator's arithmetic resumes where it stopped, the result is bit-identical to an uninterrupted run.

Files, in ``DIR``: ``<label>.rank<r>-of-<w>.npz`` (the state) and ``<label>.rank<r>-of-<w>.<k>.npz``
(feature chunk k); the pipeline's label is the input's path made file-name safe plus ``.stats`` or
``.features``, so one folder serves every input and both kinds of run. Chunks are written before the state that lists them, each atomically, so a process
killed at any point leaves a consistent checkpoint. A checkpoint of another job is refused with a
one-line `InputError`; the finished state stays, so running the same job again costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .errors import InputError
from .stats import StatsAccumulator

CHECKPOINT_FORMAT = "fidkit-checkpoint-v1"
#: Images between two saves when --checkpoint-every is not given.
DEFAULT_EVERY = 2000


def listing_digest(source: Any) -> str:
    """Returns the SHA-256 of what an image input lists: its kind, its image names in order and, for
    arrays, shape and dtype (file contents are not read: a file rewritten under the same name is not
    detected)."""
    h = hashlib.sha256(type(source).__name__.encode() + b"\0")
    array = getattr(source, "_array", None)
    if array is not None:
        h.update(f"{tuple(array.shape)} {array.dtype}\0".encode())
    for name in getattr(source, "names", []):
        h.update(str(name).encode() + b"\0")
    return h.hexdigest()


def _accumulator_state(acc: StatsAccumulator) -> dict[str, np.ndarray]:
    """Returns the complete state of ``acc`` (merged moments and pooled rows) as arrays."""
    d = -1 if acc._dim is None else acc._dim
    pending = (np.concatenate(acc._pending) if len(acc._pending) > 1 else acc._pending[0]) if acc._pending \
        else np.zeros((0, max(d, 0)))
    out = {"acc_n": np.array(acc.n), "acc_dim": np.array(d), "acc_n_merged": np.array(acc._n_merged),
           "acc_pending": pending}
    if acc._mean is not None and acc._m2 is not None:
        out["acc_mean"], out["acc_m2"] = acc._mean, acc._m2
    return out


def _restore_accumulator(acc: StatsAccumulator, arrays: dict[str, np.ndarray]) -> None:
    """Sets ``acc`` to the state `_accumulator_state` saved: the same arithmetic continues from there."""
    acc.n = int(arrays["acc_n"])
    d = int(arrays["acc_dim"])
    acc._dim = None if d < 0 else d
    acc._n_merged = int(arrays["acc_n_merged"])
    pending = np.array(arrays["acc_pending"], dtype=np.float64)
    acc._pending = [pending] if len(pending) else []
    acc._pending_rows = len(pending)
    if "acc_mean" in arrays:
        acc._mean = np.array(arrays["acc_mean"], dtype=np.float64)
        acc._m2 = np.array(arrays["acc_m2"], dtype=np.float64)


class Checkpoint:
    """The saved state of one process's share of one input (see the module's docstring).

    ``identity`` is what the checkpoint belongs to (a flat dict of strings and numbers); ``every`` the
    images between saves. `load` returns the state saved by an earlier run of the same job (or None);
    `save` writes the current one.
    """

    def __init__(self, folder: str | os.PathLike[str], label: str, identity: dict[str, Any], *,
                 rank: int = 0, world_size: int = 1, every: int = DEFAULT_EVERY) -> None:
        if int(every) < 1:
            raise InputError(f"--checkpoint-every {every}: expected a positive number of images")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"--checkpoint {folder}: is a file; name a folder to keep the checkpoint in")
        self.every = int(every)
        self.identity = {**identity, "label": label, "rank": int(rank), "world_size": int(world_size)}
        self.stem = f"{label}.rank{rank}-of-{world_size}"
        self.path = self.folder / f"{self.stem}.npz"
        self.chunks = 0
        self._saved_at = 0

    def _chunk_path(self, k: int) -> Path:
        return self.folder / f"{self.stem}.{k:06d}.npz"

    def due(self, done: int) -> bool:
        """Whether a save is due after ``done`` images: a multiple of ``every`` was crossed."""
        return done // self.every > self._saved_at // self.every

    def load(self) -> dict[str, Any] | None:
        """Returns the saved state ({"position", "skipped", "arrays", "features", "logits", "names"})
        of this job, None when there is none; raises `InputError` for a checkpoint of another job."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            saved = json.loads(str(arrays.pop("identity")))
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"--checkpoint {self.folder}: {self.path.name} cannot be read ({exc}); delete "
                             f"it to start over") from None
        if saved.get("format") != CHECKPOINT_FORMAT or saved != {**self.identity, "format": CHECKPOINT_FORMAT}:
            diff = [f"{k} {saved.get(k)!r} vs {v!r}" for k, v in self.identity.items() if saved.get(k) != v]
            raise InputError(f"--checkpoint {self.folder}: {self.path.name} belongs to another job "
                             f"({'; '.join(diff[:3]) or 'another format'}); pass another --checkpoint "
                             f"folder, or delete this one to start over")
        self.chunks = int(meta["chunks"])
        self._saved_at = int(meta["done"])
        feats, logits, names = [], [], []
        for k in range(self.chunks):
            try:
                with np.load(self._chunk_path(k), allow_pickle=False) as z:
                    feats.append(z["features"])
                    names.extend(str(n) for n in z["names"])
                    if "logits" in z.files:
                        logits.append(z["logits"])
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(f"--checkpoint {self.folder}: feature chunk {self._chunk_path(k).name} "
                                 f"cannot be read ({exc}); delete the folder to start over") from None
        return {"position": int(meta["position"]), "done": int(meta["done"]), "skipped": meta["skipped"],
                "arrays": arrays, "features": feats, "logits": logits, "names": names}

    def save(self, *, position: int, done: int, skipped: Sequence[str], acc: StatsAccumulator | None,
             features: Sequence[np.ndarray] = (), logits: Sequence[np.ndarray] = (),
             names: Sequence[Any] = ()) -> None:
        """Writes the state after ``position`` of the process's images were consumed (``done`` of them
        decoded), with the rows of ``features``/``logits``/``names`` produced since the last save as a
        new chunk, and the full state of ``acc``."""
        if features:
            chunk = {"features": np.concatenate(features), "names": np.array([str(n) for n in names])}
            if logits:
                chunk["logits"] = np.concatenate(logits)
            with atomic_path(self._chunk_path(self.chunks)) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **chunk)
            self.chunks += 1
        arrays = _accumulator_state(acc) if acc is not None else {}
        meta = {"position": int(position), "done": int(done), "skipped": [str(s) for s in skipped],
                "chunks": self.chunks}
        arrays["identity"] = np.array(json.dumps({**self.identity, "format": CHECKPOINT_FORMAT}, sort_keys=True))
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        self._saved_at = done
