"""Images to features to scores: decoding runs ahead of the network on worker threads.

`compute_features` and `compute_stats` read any input `fidkit.images.open_source` accepts, decode and
resize batches on threads that stay a bounded number of batches ahead of the extractor (so decoding
overlaps the forward pass without unbounded memory), and return numpy results with provenance.
`score` is the one-call Python API behind ``fidkit score``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FidkitError, FidkitWarning, InputError
from .extraction import Extractor
from .stats import Provenance, Stats, StatsAccumulator, _atomic_savez, check_provenance
from .stats import load as load_stats

#: Batches decoded ahead of the network: enough to hide decode jitter, few enough to bound memory.
PREFETCH = 2
DEFAULT_BATCH_SIZE = 50
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
FEATURES_FORMAT = "fidkit-features-v1"


@dataclass(frozen=True, eq=False)
class FeatureResult:
    """Features (N, d), logits (N, k) or None, input names, provenance, and the files skipped."""

    features: np.ndarray
    logits: np.ndarray | None
    names: list[str]
    provenance: Provenance = Provenance()
    skipped: list[str] = field(default_factory=list)

    def stats(self) -> Stats:
        """Returns the statistics of the features, with this result's provenance."""
        return Stats.from_features(self.features, self.provenance)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Returns ``path`` after writing features, logits, names and provenance there as .npz."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FEATURES_FORMAT), "features": self.features,
            "names": np.array([str(n) for n in self.names]),
            "provenance": np.array(self.provenance.to_json())}
        if self.logits is not None:
            arrays["logits"] = self.logits
        return _atomic_savez(Path(path), arrays)


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


def _batches(src: Any, ex: Extractor, batch_size: int, workers: int,
             progress: bool) -> Iterator[tuple[dict[str, np.ndarray], list[str]]]:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, received {batch_size}")
    from tqdm import tqdm

    with tqdm(total=len(src), unit="img", file=sys.stderr, disable=not progress,
              desc=f"{ex.name} ({ex.runtime})") as bar:
        for images, names in _prefetch(iter(src.iter_batches(batch_size, workers))):
            out = ex.outputs(images, layout=src.layout, value_range=src.value_range,
                             name=src.description, checked=True)
            bar.update(len(names))
            yield out, list(names)


def compute_features(source: Any, extractor: Extractor | str = "mnist", *,
                     batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                     progress: bool = True, value_range: Any = None, layout: str | None = None,
                     skip_bad: bool = False, seed: int | None = None,
                     num: int | None = None) -> FeatureResult:
    """Returns the features and logits of every image of ``source``, in input order, with provenance.

    ``source`` is anything `fidkit.images.open_source` accepts (folder, zip, array file, array, tensor,
    generator) or an already opened source; ``extractor`` an `Extractor` or a registered name.
    """
    ex = _as_extractor(extractor)
    src = _open(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    names: list[str] = []
    for out, batch_names in _batches(src, ex, batch_size, workers, progress):
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
                  skip_bad: bool = False, seed: int | None = None, num: int | None = None) -> Stats:
    """Returns the feature statistics of ``source``, streamed: memory O(d²) however many images."""
    ex = _as_extractor(extractor)
    src = _open(source, value_range=value_range, layout=layout, skip_bad=skip_bad, seed=seed, num=num)
    acc = StatsAccumulator(Provenance.from_extractor(ex))
    for out, _ in _batches(src, ex, batch_size, workers, progress):
        acc.update(out["features"])
    return acc.stats()


def load_features(path: str | os.PathLike[str]) -> FeatureResult:
    """Returns the features stored in a .npy (2-D array) or .npz (``features`` or clean-fid ``feats``)."""
    p = Path(path)
    arrays = _read_arrays(p)
    if arrays is None or not any(k in arrays for k in ("features", "feats", "arr_0")):
        raise InputError(f"{p}: not a features file: expected a 2-D .npy or an .npz with a 'features' "
                         f"array; compute features with `fidkit features`")
    feats = arrays.get("features", arrays.get("feats", arrays.get("arr_0")))
    if feats.ndim != 2:
        raise InputError(f"{p}: features must be 2-D (N, d), found shape {feats.shape}")
    logits = arrays.get("logits")
    names = [str(n) for n in arrays["names"]] if "names" in arrays else [str(i) for i in range(len(feats))]
    prov = Provenance.from_json(str(arrays["provenance"]), str(p)) if "provenance" in arrays else Provenance()
    return FeatureResult(feats, logits, names, prov)


def _header_shape(fh: Any) -> tuple[int, ...]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)[0]
    return np.lib.format.read_array_header_2_0(fh)[0]


def _peek_shapes(p: Path) -> dict[str, tuple[int, ...]]:
    """Returns the name and shape of every array in an .npy ('arr_0') or .npz file, reading headers only."""
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as fh:
                return {"arr_0": _header_shape(fh)}
        shapes = {}
        with zipfile.ZipFile(p) as zf:
            for member in zf.namelist():
                if member.endswith(".npy"):
                    with zf.open(member) as fh:
                        shapes[member[:-4]] = _header_shape(fh)
        return shapes
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: cannot read as a numpy array file ({type(exc).__name__}: {exc}); the file "
                         f"is truncated or not .npy/.npz") from None


def _read_arrays(p: Path) -> dict[str, np.ndarray] | None:
    """Returns the arrays of an .npy ({'arr_0': a}) or .npz file, or None if it is neither."""
    try:
        with open(p, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if isinstance(data, np.ndarray):
                return {"arr_0": data}
            with data:
                return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


@dataclass(frozen=True, eq=False)
class Operand:
    """One side of a comparison: whatever of stats, features, logits it provides, and its size."""

    label: str
    stats: Stats | None = None
    features: FeatureResult | None = None

    @property
    def provenance(self) -> Provenance:
        if self.features is not None:
            return self.features.provenance
        return self.stats.provenance if self.stats is not None else Provenance()

    @property
    def n(self) -> int | None:
        if self.features is not None:
            return len(self.features.features)
        return self.stats.n if self.stats is not None else None

    def get_stats(self) -> Stats:
        if self.stats is not None:
            return self.stats
        if self.features is None:
            raise FidkitError(f"{self.label}: holds neither statistics nor features")
        return self.features.stats()

    def need_features(self, metric: str) -> FeatureResult:
        if self.features is None:
            raise InputError(f"{self.label}: {metric} needs features, but only mean/covariance "
                             f"statistics were given; pass images or a features file")
        return self.features

    def need_logits(self, metric: str) -> np.ndarray:
        logits = self.need_features(metric).logits
        if logits is None:
            raise InputError(f"{self.label}: {metric} needs logits, and this features file has none; "
                             f"recompute with `fidkit features` or pass images")
        return logits


def classify(value: Any) -> str:
    """Returns 'stats', 'features' or 'images': what kind of input ``value`` is."""
    if isinstance(value, Stats):
        return "stats"
    if isinstance(value, FeatureResult):
        return "features"
    if isinstance(value, np.ndarray):
        return "features" if value.ndim == 2 else "images"
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; expected images (folder, zip, image array), "
                             f"features (.npy/.npz) or statistics (.npz)")
        if p.suffix.lower() in (".npz", ".npy") and p.is_file():
            shapes = _peek_shapes(p)
            if "mu" in shapes and "sigma" in shapes:
                return "stats"
            if any(k in shapes for k in ("features", "feats")):
                return "features"
            if len(shapes) == 1 and len(next(iter(shapes.values()))) == 2:
                return "features"
    return "images"


def operand(value: Any, extractor: Extractor | str, label: str, *, with_features: bool = True,
            **pipeline: Any) -> Operand:
    """Returns ``value`` as an `Operand`: statistics and/or features, computing them from images.

    Images go through `compute_features` (or `compute_stats` when ``with_features`` is False) with
    ``extractor`` and the ``pipeline`` keywords; files are read by kind (see `classify`).
    """
    kind = classify(value)
    if kind == "stats":
        return Operand(label, stats=value if isinstance(value, Stats) else load_stats(value))
    if kind == "features":
        if isinstance(value, FeatureResult):
            return Operand(label, features=value)
        if isinstance(value, np.ndarray):
            return Operand(label, features=FeatureResult(value, None, [str(i) for i in range(len(value))]))
        return Operand(label, features=load_features(value))
    ex = _as_extractor(extractor)
    if with_features:
        return Operand(label, features=compute_features(value, ex, **pipeline))
    return Operand(label, stats=compute_stats(value, ex, **pipeline))


def _metric(name: str) -> Any:
    """Returns the function computing ``name``, imported only when that metric is asked for."""
    from .registry import load_object

    return load_object(_METRIC_FUNCTIONS[name])


_METRIC_FUNCTIONS = {"fid": "fidkit.frechet:frechet_distance", "kid": "fidkit.kid:kid",
                     "is": "fidkit.inception_score:inception_score",
                     "pr": "fidkit.prdc:precision_recall", "dc": "fidkit.prdc:density_coverage"}


METRICS = ("fid", "kid", "is", "pr", "dc")


def check_inputs(real: Any, fake: Any, metrics: Sequence[str],
                 bootstrap: int = 0) -> tuple[list[str], bool, bool]:
    """Returns (kinds of real and fake, whether real needs features, whether fake does); raises early.

    Called before any image is decoded, so a request that cannot be met (KID from statistics, an
    unknown metric, a missing file) fails in a second, not after minutes of feature extraction.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; expected some of {list(METRICS)}")
    kinds = [classify(v) for v in (real, fake)]
    need_real = any(m in metrics for m in ("kid", "pr", "dc"))
    need_fake = need_real or "is" in metrics or (bootstrap > 0 and "fid" in metrics)
    for label, kind, needed in (("real", kinds[0], need_real), ("fake", kinds[1], need_fake)):
        if needed and kind == "stats":
            wants = [m for m in metrics if m != "fid" and (label == "fake" or m != "is")]
            wants = wants or ["bootstrap intervals"]
            verb = "needs" if len(wants) == 1 else "need"
            raise InputError(f"{label}: {', '.join(wants)} {verb} features, but only mean/covariance "
                             f"statistics were given; pass images or a features file")
    return kinds, need_real, need_fake


def score(real: Any, fake: Any, metrics: Sequence[str] = ("fid", "kid", "is", "pr"),
          extractor: Extractor | str = "mnist", runtime: str | None = None, *,
          weights: str | None = None, resize: str | None = None, device: str | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS, progress: bool = False,
          allow_mismatch: bool = False, value_range: Any = None, layout: str | None = None,
          skip_bad: bool = False, is_splits: int = 10, kid_subsets: int = 100, kid_subset_size: int = 1000, k: int = 3,
          dc_k: int = 5, bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Returns {metric: value} comparing ``fake`` with ``real``: the one-call API.

    ``real`` and ``fake`` may be image inputs (folder, zip, array file, array), feature arrays or files,
    or statistics (`Stats` or .npz) where the metric allows it: FID (Heusel et al. 2017) needs
    statistics; KID (Bińkowski et al. 2018), precision/recall (Kynkäänniemi et al. 2019, ``k``) and
    density/coverage (Naeem et al. 2020, ``dc_k``) need features; IS (Salimans et al. 2016) needs the
    logits of ``fake`` only. Values: ``fid`` a float, ``kid`` and ``is`` {"mean", "std"}, ``pr``
    {"precision", "recall"}, ``dc`` {"density", "coverage"}; plus ``n_real``, ``n_fake``, the
    ``provenance`` used, and with ``bootstrap`` > 0 ``intervals`` for FID, KID and the k-NN metrics
    (`fidkit.bootstrap`, seeded by ``seed``). KID subsets are capped at the smaller sample size (the
    size used is returned as ``kid_subset_size``).
    """
    kinds, need_real_features, need_fake_features = check_inputs(real, fake, metrics, bootstrap)
    ex: Extractor | str = extractor
    if "images" in kinds:
        ex = _as_extractor(extractor, runtime, weights, device, resize)
    pipe = {"batch_size": batch_size, "workers": workers, "progress": progress,
            "value_range": value_range, "layout": layout, "skip_bad": skip_bad}
    # image inputs are opened (listed, their arrays' shapes and ranges checked) before any is decoded:
    # an empty folder or a wrong range in ``fake`` fails now, not after all of ``real`` went through
    real, fake = (_open(v, value_range=value_range, layout=layout, skip_bad=skip_bad) if kind == "images"
                  else v for v, kind in zip((real, fake), kinds, strict=True))
    a = operand(real, ex, "real", with_features=need_real_features, **pipe)
    b = operand(fake, ex, "fake", with_features=need_fake_features, **pipe)
    check_provenance(a.provenance, b.provenance, allow_mismatch)
    result: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    if "fid" in metrics:
        sa, sb = a.get_stats(), b.get_stats()
        if sa.dim != sb.dim:
            raise InputError(f"real and fake have different feature dimensions ({sa.dim} vs {sb.dim})")
        from ._validate import warn_sample_size

        for label, s in (("real", sa), ("fake", sb)):
            if s.n is not None:
                warn_sample_size(s.n, s.dim, label)
        result["fid"] = float(_metric("fid")(sa.mean, sa.cov, sb.mean, sb.cov))
        if bootstrap:
            from .bootstrap import bootstrap_fid

            ref = a.features.features if a.features is not None else (sa.mean, sa.cov)
            with warnings.catch_warnings():  # the sample-size warning was given once above
                warnings.simplefilter("ignore", FidkitWarning)
                ci = bootstrap_fid(ref, b.need_features("FID bootstrap").features, n_boot=bootstrap,
                                   level=level, seed=seed)
            intervals["fid"] = _interval(ci)
    if "kid" in metrics:
        fa, fb = a.need_features("KID").features, b.need_features("KID").features
        size = min(kid_subset_size, len(fa), len(fb))
        mean, std = _metric("kid")(fa, fb, subsets=kid_subsets, subset_size=size, seed=seed)
        result["kid"] = {"mean": float(mean), "std": float(std)}
        result["kid_subset_size"] = size
        if bootstrap:
            from .bootstrap import bootstrap_kid

            ci = bootstrap_kid(fa, fb, n_boot=bootstrap, level=level, subsets=min(kid_subsets, 10),
                               subset_size=size, seed=seed)
            intervals["kid"] = _interval(ci)
    if "is" in metrics:
        logits = b.need_logits("IS")
        mean, std = _metric("is")(logits, splits=is_splits)
        result["is"] = {"mean": float(mean), "std": float(std)}
    for name, keys, kk in (("pr", ("precision", "recall"), k), ("dc", ("density", "coverage"), dc_k)):
        if name in metrics:
            fa, fb = a.need_features(name).features, b.need_features(name).features
            if bootstrap:
                from .bootstrap import bootstrap_prdc

                cis = bootstrap_prdc(fa, fb, k=kk, n_boot=bootstrap, level=level, seed=seed)
                result[name] = {key: cis[key].value for key in keys}
                intervals.update({key: _interval(cis[key]) for key in keys})
                continue
            out = _metric(name)(fa, fb, k=kk)
            result[name] = dict(zip(keys, (float(v) for v in _pair(out, keys)), strict=True))
    if intervals:
        result["intervals"] = intervals
    result["n_real"], result["n_fake"] = a.n, b.n
    result["provenance"] = json.loads(b.provenance.to_json())
    return result


def _interval(ci: Any) -> dict[str, float]:
    return {"value": float(ci.value), "low": float(ci.low), "high": float(ci.high),
            "level": float(ci.level), "n_boot": int(ci.n_boot)}


def _pair(out: Any, keys: tuple[str, str]) -> tuple[Any, Any]:
    """Returns the two numbers of a metric result given as a tuple, a dict or an object."""
    if isinstance(out, dict):
        return out[keys[0]], out[keys[1]]
    if hasattr(out, keys[0]):
        return getattr(out, keys[0]), getattr(out, keys[1])
    first, second = out
    return first, second

