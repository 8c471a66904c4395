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

from .errors import InputError
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

        return load_extractor(ex, runtime=runtime, device=device, weights=weights, policy=resize)
    from .extraction import extractor

    return extractor(ex, runtime, weights=weights, device=device or "cpu", policy=resize)


def _batches(src: Any, ex: Extractor, batch_size: int, workers: int, progress: bool,
             label: str | None = None) -> Iterator[tuple[dict[str, np.ndarray], list[str]]]:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, received {batch_size}")
    from tqdm import tqdm

    # each input's bar says which input it is (two bars reading only "mnist (numpy)" do not)
    label = label or getattr(src, "description", "") or "images"
    with tqdm(total=len(src), unit="img", file=sys.stderr, disable=not progress,
              desc=f"{label}: {ex.name} ({ex.runtime})") as bar:
        for images, names in _prefetch(iter(src.iter_batches(batch_size, workers))):
            out = ex.outputs(images, layout=src.layout, value_range=src.value_range,
                             name=src.description, checked=True)
            bar.update(len(names))
            yield out, list(names)


def compute_features(source: Any, extractor: Extractor | str = "mnist", *,
                     batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                     progress: bool = True, value_range: Any = None, layout: str | None = None,
                     skip_bad: bool = False, seed: int | None = None,
                     num: int | None = None, label: str | None = None) -> FeatureResult:
    """Returns the features and logits of every image of ``source``, in input order, with provenance.

    ``source`` is anything `fidkit.images.open_source` accepts (folder, zip, array file, array, tensor,
    generator) or an already opened source; ``extractor`` an `Extractor` or a registered name;
    ``label`` names the input on the progress bar (default: the source's path or kind).
    """
    ex = _as_extractor(extractor)
    src = _open(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    names: list[str] = []
    for out, batch_names in _batches(src, ex, batch_size, workers, progress, label):
        feats.append(np.asarray(out["features"]))
        if "logits" in out:
            logits.append(np.asarray(out["logits"]))
        names.extend(str(n) for n in batch_names)
    if not feats:
        raise InputError(f"{getattr(src, 'description', repr(source))}: no images to compute features from")
    return FeatureResult(np.concatenate(feats), np.concatenate(logits) if logits else None, names,
                         Provenance.from_extractor(ex), list(getattr(src, "skipped", [])))


def compute_stats(source: Any, extractor: Extractor | str = "mnist", *,
                  batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                  progress: bool = True, value_range: Any = None, layout: str | None = None,
                  skip_bad: bool = False, seed: int | None = None, num: int | None = None,
                  label: str | None = None) -> Stats:
    """Returns the feature statistics of ``source``, streamed: memory O(d²) however many images
    (``label``: as in `compute_features`)."""
    ex = _as_extractor(extractor)
    src = _open(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)
    acc = StatsAccumulator(Provenance.from_extractor(ex), label=label or getattr(src, "description", None))
    for out, _ in _batches(src, ex, batch_size, workers, progress, label):
        acc.update(out["features"])
    return acc.stats()


