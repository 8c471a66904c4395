"""Images to features: decoding runs ahead of the extractor on worker threads.

`compute_features` and `compute_stats` read any input `fidkit.images.open_source` accepts, decode
batches on threads that stay a bounded number of batches ahead of the extractor (so decoding overlaps
the preprocess and the network without unbounded memory), and return numpy results with provenance.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import FidkitError, InputError
from .extraction import Extractor
from .features import FeatureResult
from .stats import Provenance, Stats, StatsAccumulator

#: Batches decoded ahead of the network: enough to hide decode jitter, few enough to bound memory.
PREFETCH = 2
DEFAULT_BATCH_SIZE = 50
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
FEATURES_FORMAT = "fidkit-features-v1"


def _prefetch(batches: Iterator[Any], depth: int = PREFETCH) -> Iterator[Any]:
    """Yields the items of ``batches``, produced on a background thread at most ``depth`` ahead."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there with its traceback
            q.put(("error", exc))
        finally:  # run the source's own cleanup (decode pools, open files) on this thread
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="fidkit-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _open(source: Any, *, value_range: Any = None, layout: str | None = None, skip_bad: bool = False,
          seed: int | None = None, num: int | None = None) -> Any:
    if hasattr(source, "iter_batches"):
        return source
    from .images import open_source

    return open_source(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)


def _as_extractor(ex: Extractor | str, runtime: str | None = None, weights: str | None = None,
                  device: str | None = None, resize: str | None = None) -> Extractor:
    if isinstance(ex, Extractor):
        return ex
    if ":" in ex:  # a user's own model, "package.module:attribute": every option reaches it or is refused
        from .adapters import load_extractor

        try:
            built = load_extractor(ex, runtime=runtime, device=device, weights=weights, policy=resize)
        except FidkitError:
            raise
        except Exception as exc:  # the user's module or build function raised: one line, not a traceback
            raise InputError(f"--extractor {ex}: raised {type(exc).__name__}: {exc}") from None
        built.user_ref = ex  # its extraction errors are the user's too (_outputs)
        return built
    from .extraction import extractor

    return extractor(ex, runtime, weights=weights, device=device or "cpu", policy=resize)


def _outputs(ex: Extractor, images: Any, **kw: Any) -> dict[str, Any]:
    """``ex.outputs(images, **kw)``; an exception raised by a user's ``--extractor module:build`` model
    becomes one `InputError` naming it (fidkit's own extractors' errors stay tracebacks: they are bugs)."""
    ref = getattr(ex, "user_ref", None)
    if ref is None:
        return ex.outputs(images, **kw)
    try:
        return ex.outputs(images, **kw)
    except FidkitError:
        raise
    except Exception as exc:
        raise InputError(f"--extractor {ref}: raised {type(exc).__name__} during extraction: {exc}") from None


def _batches(src: Any, ex: Extractor, batch_size: int, workers: int, progress: bool,
             label: str | None = None) -> Iterator[tuple[dict[str, np.ndarray], list[str]]]:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, received {batch_size}")
    from tqdm import tqdm

    # each input's bar says which input it is (two bars reading only "mnist (numpy)" do not)
    label = label or getattr(src, "description", "") or "images"
    with tqdm(total=len(src), unit="img", file=sys.stderr, disable=None if progress else True,  # None: TTY only
              desc=f"{label}: {ex.name} ({ex.runtime})") as bar:
        for images, names in _prefetch(iter(src.iter_batches(batch_size, workers))):
            out = _outputs(ex, images, layout=src.layout, value_range=src.value_range,
                           name=src.description, checked=True)
            bar.update(len(names))
            yield out, list(names)


def _identity(src: Any, ex: Extractor, batch_size: int, kind: str) -> dict[str, Any]:
    """Returns what a checkpoint of this run belongs to (`fidkit.checkpoint.Checkpoint`)."""
    from .checkpoint import listing_digest

    prov = Provenance.from_extractor(ex)
    return {"kind": kind, "listing_sha256": listing_digest(src), "images": len(src),
            "extractor": prov.extractor, "runtime": prov.runtime, "weights_sha256": prov.weights_sha256,
            "resize_policy": prov.resize_policy, "input_size": prov.input_size, "batch_size": int(batch_size)}


def _run(source: Any, ex: Extractor, *, features: bool, batch_size: int, workers: int, progress: bool,
         value_range: Any, layout: str | None, skip_bad: bool, seed: int | None, num: int | None,
         label: str | None, distributed: bool, checkpoint: Any, checkpoint_every: int | None
         ) -> tuple[Any, dict[str, Any]]:
    """Returns (the opened source, this process's results): its share of the images (all of them in
    a single process, a shard under ``distributed``), resumed from and saved to ``checkpoint``.

    Results: "acc" (a `StatsAccumulator`, None with ``features``), "features", "logits", "names" (lists
    of per-batch pieces, empty without ``features``), "skipped" (names), "error" (text, distributed only:
    reported to every rank before any collective, see `fidkit.distributed`).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, received {batch_size}")
    src = _open(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)
    label = label or getattr(src, "description", None)
    job = None
    if distributed:
        from .distributed import current

        job = current()
    local = src
    if job is not None:
        from .distributed import shard_bounds, subset

        local = subset(src, *shard_bounds(len(src), batch_size, job.rank, job.world_size))
    out: dict[str, Any] = {"acc": None if features else StatsAccumulator(Provenance.from_extractor(ex),
                                                                        label=label),
                           "features": [], "logits": [], "names": [], "skipped": [], "error": None}
    try:
        _run_local(local, ex, out, features=features, batch_size=batch_size, workers=workers,
                   progress=progress and (job is None or job.main), label=label, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, identity=(src, job))
    except Exception as exc:
        if job is None:
            raise
        out["error"] = str(exc) if isinstance(exc, FidkitError) else f"{type(exc).__name__}: {exc}"
        out["exception"] = exc
    return src, out


def _run_local(local: Any, ex: Extractor, out: dict[str, Any], *, features: bool, batch_size: int,
               workers: int, progress: bool, label: str | None, checkpoint: Any,
               checkpoint_every: int | None, identity: tuple[Any, Any]) -> None:
    """Extracts the images of ``local`` into ``out`` (see `_run`), resuming from ``checkpoint``."""
    ck = None
    todo = local
    position = done = 0
    if checkpoint is not None:
        from .checkpoint import DEFAULT_EVERY, Checkpoint, _restore_accumulator

        src, job = identity
        kind = "features" if features else "stats"
        ck = Checkpoint(checkpoint, f"{_checkpoint_key(label)}.{kind}", _identity(src, ex, batch_size, kind),
                        rank=job.rank if job else 0, world_size=job.world_size if job else 1,
                        every=checkpoint_every or DEFAULT_EVERY)
        state = ck.load()
        if state is not None:
            position, done = state["position"], state["done"]
            out["skipped"].extend(state["skipped"])
            out["features"].extend(state["features"])
            out["logits"].extend(state["logits"])
            out["names"].extend(state["names"])
            if out["acc"] is not None:
                _restore_accumulator(out["acc"], state["arrays"])
            if job is None or job.main:  # a resumed run says so (it would otherwise look like a fresh one)
                print(f"fidkit: resumed from {ck.path}: {position} of {len(local)} images done", file=sys.stderr)
        from .distributed import subset

        todo = subset(local, position, len(local))  # also refuses a source that cannot resume
    index = {n: i for i, n in enumerate(local.names)} if ck is not None else {}
    new_f: list[np.ndarray] = []
    new_l: list[np.ndarray] = []
    new_n: list[Any] = []
    if len(todo):
        for batch, batch_names in _batches(todo, ex, batch_size, workers, progress, label):
            if out["acc"] is not None:
                out["acc"].update(batch["features"])
            if features:
                new_f.append(np.asarray(batch["features"]))
                if "logits" in batch:
                    new_l.append(np.asarray(batch["logits"]))
                new_n.extend(str(n) for n in batch_names)
            done += len(batch_names)
            if ck is not None and ck.due(done):
                position = index[batch_names[-1]] + 1
                # files found unreadable ahead of the position are found again after a restart
                skipped = [*out["skipped"], *(n for n in todo.skipped if index[n] < position)]
                ck.save(position=position, done=done, skipped=skipped,
                        acc=out["acc"], features=new_f, logits=new_l, names=new_n)
                out["features"].extend(new_f)
                out["logits"].extend(new_l)
                out["names"].extend(new_n)
                new_f, new_l, new_n = [], [], []
    out["skipped"].extend(str(n) for n in getattr(todo, "skipped", []))
    out["features"].extend(new_f)
    out["logits"].extend(new_l)
    out["names"].extend(new_n)
    if ck is not None:
        ck.save(position=len(local), done=done, skipped=out["skipped"], acc=out["acc"], features=new_f,
                logits=new_l, names=new_n)


def _checkpoint_key(label: str | None) -> str:
    """Returns the file-name-safe key of an input in a checkpoint folder: its label (a path) made safe."""
    import re

    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", label or "input").strip("._") or "input")[-60:]


def _finish_features(src: Any, ex: Extractor, out: dict[str, Any], distributed: bool) -> FeatureResult | None:
    """Returns the features of every process's share, on rank 0 (None on the other ranks)."""
    job = None
    if distributed:
        from .distributed import check_reports, current, exchange, gather_rows

        job = current()
    prov = Provenance.from_extractor(ex)
    if job is not None:
        reports = exchange(job, {"error": out["error"], "skipped": out["skipped"]})
        if out["error"] and "exception" in out and not isinstance(out["exception"], FidkitError):
            raise out["exception"]
        check_reports(reports, job)
        rows = (np.concatenate(out["features"]) if out["features"] else np.zeros((0, ex.feature_dim), np.float32),
                np.concatenate(out["logits"]) if out["logits"] else None, out["names"])
        gathered = gather_rows(job, rows)
        if gathered is None:
            return None
        src.skipped = [s for rep in reports for s in rep["skipped"]]
        out["features"] = [g[0] for g in gathered if len(g[0])]
        out["logits"] = [g[1] for g in gathered if g[1] is not None and len(g[1])]
        out["names"] = [n for g in gathered for n in g[2]]
    elif out["skipped"] or not hasattr(src, "skipped"):
        src.skipped = list(out["skipped"])
    if not out["features"]:
        raise InputError(f"{getattr(src, 'description', 'input')}: no images to compute features from")
    # past FIDKIT_MAX_FEATURES_BYTES the rows go to a memory-mapped spill file (fidkit.featurestore)
    from .featurestore import concatenate

    logits = concatenate(out["logits"], label="logits") if out["logits"] else None
    return FeatureResult(concatenate(out["features"]), logits, out["names"], prov, list(src.skipped))


def _finish_stats(src: Any, ex: Extractor, out: dict[str, Any], distributed: bool, label: str | None) -> Stats:
    """Returns the statistics of every process's share, on every rank."""
    acc = out["acc"]
    job = None
    if distributed:
        from .distributed import current

        job = current()
    if job is None:
        if out["skipped"]:
            src.skipped = list(out["skipped"])
        return acc.stats()
    from .distributed import check_reports, exchange, merge_stats

    reports = exchange(job, {"error": out["error"], "skipped": out["skipped"]})
    if out["error"] and "exception" in out and not isinstance(out["exception"], FidkitError):
        raise out["exception"]
    check_reports(reports, job)
    src.skipped = [s for rep in reports for s in rep["skipped"]]
    return merge_stats(acc, ex.feature_dim, acc.provenance, label or getattr(src, "description", "input"), job)


def compute_features(source: Any, extractor: Extractor | str = "mnist", *,
                     batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                     progress: bool = True, value_range: Any = None, layout: str | None = None,
                     skip_bad: bool = False, seed: int | None = None,
                     num: int | None = None, label: str | None = None, distributed: bool = False,
                     checkpoint: str | os.PathLike[str] | None = None,
                     checkpoint_every: int | None = None) -> FeatureResult | None:
    """Returns the features and logits of every image of ``source``, in input order, with provenance.

    ``source`` is anything `fidkit.images.open_source` accepts (folder, zip, array file, array, tensor,
    generator) or an already opened source; ``extractor`` an `Extractor` or a registered name;
    ``label`` names the input on the progress bar (default: the source's path or kind).

    ``distributed``: in an initialized ``torch.distributed`` group (every rank must call this), each
    rank extracts its shard and the features are gathered, in input order, to rank 0, which gets the
    result; the other ranks get None (`fidkit.distributed`). ``checkpoint``: a folder where the run
    saves its state every ``checkpoint_every`` images and from which a restarted run resumes, with a
    bit-identical result (`fidkit.checkpoint`).
    """
    ex = _as_extractor(extractor)
    src, out = _run(source, ex, features=True, batch_size=batch_size, workers=workers, progress=progress,
                    value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num,
                    label=label, distributed=distributed, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every)
    return _finish_features(src, ex, out, distributed)


def compute_stats(source: Any, extractor: Extractor | str = "mnist", *,
                  batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                  progress: bool = True, value_range: Any = None, layout: str | None = None,
                  skip_bad: bool = False, seed: int | None = None, num: int | None = None,
                  label: str | None = None, distributed: bool = False,
                  checkpoint: str | os.PathLike[str] | None = None,
                  checkpoint_every: int | None = None) -> Stats:
    """Returns the feature statistics of ``source``, streamed: memory O(d²) however many images
    (``label``: as in `compute_features`).

    ``distributed``: every rank of an initialized ``torch.distributed`` group calls this with the same
    arguments; each extracts its shard, and the statistics are merged exactly by one all-reduce and
    returned on every rank (`fidkit.distributed`). ``checkpoint`` / ``checkpoint_every``: as in
    `compute_features`.
    """
    ex = _as_extractor(extractor)
    src, out = _run(source, ex, features=False, batch_size=batch_size, workers=workers, progress=progress,
                    value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num,
                    label=label, distributed=distributed, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every)
    return _finish_stats(src, ex, out, distributed, label)
