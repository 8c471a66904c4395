"""`score`: the one-call Python API behind ``fidkit score`` (and ``fid``, ``kid``, ``pr``)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

from .errors import FidkitWarning, InputError
from .extraction import Extractor
from .inputs import check_inputs, operand
from .metrics import get_metric, load_function, parse_metrics
from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, _as_extractor, _open
from .stats import check_provenance


def score(real: Any, fake: Any, metrics: str | Sequence[str] | None = None,
          extractor: Extractor | str = "mnist", runtime: str | None = None, *,
          weights: str | None = None, resize: str | None = None, device: str | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS, progress: bool = False,
          allow_mismatch: bool = False, value_range: Any = None, layout: str | None = None,
          skip_bad: bool = False, is_splits: int | None = None, kid_subsets: int | None = None,
          kid_subset_size: int | None = None, k: int | None = None, dc_k: int | None = None,
          bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Returns {metric: value} comparing ``fake`` with ``real``: the one-call API.

    ``real`` and ``fake`` may be image inputs (folder, zip, array file, array), feature arrays or files,
    or statistics (`Stats` or .npz) where the metric allows it: FID (Heusel et al. 2017) needs
    statistics; KID (Bińkowski et al. 2018), precision/recall (Kynkäänniemi et al. 2019, ``k``) and
    density/coverage (Naeem et al. 2020, ``dc_k``) need features; IS (Salimans et al. 2016) needs the
    logits of ``fake`` only. Values: ``fid`` a float, ``kid`` and ``is`` {"mean", "std"}, ``pr``
    {"precision", "recall"}, ``dc`` {"density", "coverage"}; plus ``n_real``, ``n_fake``, the
    ``provenance`` used, and with ``bootstrap`` > 0 ``intervals`` for FID, KID and the k-NN metrics
    (`fidkit.bootstrap`, seeded by ``seed``). KID subsets are capped at the smaller sample size (the
    size used is returned as ``kid_subset_size``). ``metrics`` is a name, a comma-separated string or a
    sequence of names (None: `fidkit.metrics.DEFAULT_METRICS`); a metric option left as None takes the
    metric's registered default (`fidkit.metrics.METRICS`).
    """
    metrics = parse_metrics(metrics)
    is_splits = get_metric("is").defaults["splits"] if is_splits is None else is_splits
    kid_subsets = get_metric("kid").defaults["subsets"] if kid_subsets is None else kid_subsets
    kid_subset_size = get_metric("kid").defaults["subset_size"] if kid_subset_size is None else kid_subset_size
    k = get_metric("pr").defaults["k"] if k is None else k
    dc_k = get_metric("dc").defaults["k"] if dc_k is None else dc_k
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
        result["fid"] = float(load_function("fid")(sa.mean, sa.cov, sb.mean, sb.cov))
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
        mean, std = load_function("kid")(fa, fb, subsets=kid_subsets, subset_size=size, seed=seed)
        result["kid"] = {"mean": float(mean), "std": float(std)}
        result["kid_subset_size"] = size
        if bootstrap:
            from .bootstrap import bootstrap_kid

            ci = bootstrap_kid(fa, fb, n_boot=bootstrap, level=level, subsets=min(kid_subsets, 10),
                               subset_size=size, seed=seed)
            intervals["kid"] = _interval(ci)
    if "is" in metrics:
        logits = b.need_logits("IS")
        mean, std = load_function("is")(logits, splits=is_splits)
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
            out = load_function(name)(fa, fb, k=kk)
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

