"""`score`: the one-call Python API behind ``fidkit score`` (and ``fid``, ``kid``, ``pr``)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

from ._validate import warn_sample_sizes
from .errors import FidkitWarning, InputError
from .extraction import Extractor
from .inputs import Operand, check_inputs, operand
from .kid import subsets_vary
from .metrics import DEFAULT_BOOTSTRAP, METRICS, flag, get_metric, load_function, parse_metrics
from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, _as_extractor, _open
from .stats import UNKNOWN, check_provenance


def score(real: Any, fake: Any, metrics: str | Sequence[str] | None = None,
          extractor: Extractor | str = "mnist", runtime: str | None = None, *,
          weights: str | None = None, resize: str | None = None, device: str | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS, progress: bool = False,
          allow_mismatch: bool = False, value_range: Any = None, layout: str | None = None,
          skip_bad: bool = False, is_splits: int | None = None,
          is_shuffle_seed: int | None = METRICS["is"].defaults["shuffle_seed"],
          kid_subsets: int | None = None, kid_subset_size: int | None = None, k: int | None = None,
          dc_k: int | None = None, bootstrap: int | None = None, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Returns {metric: value} comparing ``fake`` with ``real``: the one-call API.

    ``real`` and ``fake`` may be image inputs (folder, zip, array file, array), feature arrays or files,
    or statistics (`Stats` or .npz) where the metric allows it: FID (Heusel et al. 2017) needs
    statistics; KID (Bińkowski et al. 2018), precision/recall (Kynkäänniemi et al. 2019, ``k``) and
    density/coverage (Naeem et al. 2020, ``dc_k``) need features; IS (Salimans et al. 2016) needs the
    logits of ``fake`` only, whose rows are permuted with ``is_shuffle_seed`` before the ``is_splits``
    parts are cut (None: file order, the original formula; `fidkit.inception_score`).

    Values: ``fid`` a float, ``kid`` {"mean", "std"} (std None when the subsets cannot differ: every
    subset is the whole sample), ``is`` {"mean", "std"}, ``pr`` {"precision", "recall"}, ``dc``
    {"density", "coverage"}; plus ``n_real``, ``n_fake`` (None: a statistics file that does not say),
    the ``provenance`` used, with ``bootstrap`` > 0 (None: `fidkit.metrics.DEFAULT_BOOTSTRAP`, or 0 when
    ``fake`` is a statistics file) ``intervals`` for FID, KID and the k-NN metrics
    (`fidkit.bootstrap`, seeded by ``seed``), ``settings`` (every option a computed metric used:
    ``{"seed", "kid": {"subsets", "subset_size", "subset_size_given", "subsets_vary",
    "bootstrap_subsets"}, "is": {"splits", "shuffle_seed"}, "pr": {"k"}, "dc": {"k"}, "bootstrap": {"n",
    "level", "seed"}}``, each metric's entry only when it was computed) and ``notes`` (one-line strings
    saying what was computed on what, in the order computed). ``kid_subset_size`` None is the registered
    default, reduced with a warning to the smaller sample size; a size given larger than a sample is an
    error. ``metrics`` is a name, a comma-separated string or a sequence of names (None:
    `fidkit.metrics.DEFAULT_METRICS`); a metric option left as None takes the metric's registered
    default (`fidkit.metrics.METRICS`). ``progress`` shows bars for extraction and for every metric
    step that can take more than a few seconds (bootstrap, k-NN).
    """
    metrics = parse_metrics(metrics)
    is_splits = get_metric("is").defaults["splits"] if is_splits is None else is_splits
    kid_subsets = get_metric("kid").defaults["subsets"] if kid_subsets is None else kid_subsets
    k = get_metric("pr").defaults["k"] if k is None else k
    dc_k = get_metric("dc").defaults["k"] if dc_k is None else dc_k
    auto_bootstrap = bootstrap is None
    if auto_bootstrap:  # the default on every route; a statistics file as fake has nothing to resample
        from .inputs import classify

        bootstrap = 0 if classify(fake) == "stats" else DEFAULT_BOOTSTRAP
    _check_level_early(bootstrap, level)
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
    _check_dims(a, b, kinds)
    result: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    notes: list[str] = []
    settings: dict[str, Any] = {"seed": int(seed)}  # KID's subsets and the bootstrap resamples
    if bootstrap:
        settings["bootstrap"] = {"n": int(bootstrap), "level": float(level), "seed": int(seed)}
    if "fid" in metrics:
        sa, sb = a.get_stats(), b.get_stats()
        warn_sample_sizes({"real": sa.n, "fake": sb.n}, sa.dim)
        result["fid"] = float(load_function("fid")(sa.mean, sa.cov, sb.mean, sb.cov))
        if bootstrap:
            from .bootstrap import bootstrap_fid

            ref = a.features.features if a.features is not None else (sa.mean, sa.cov)
            with warnings.catch_warnings():  # the sample-size warning was given once above
                warnings.simplefilter("ignore", FidkitWarning)
                ci = bootstrap_fid(ref, b.need_features("FID bootstrap").features, n_boot=bootstrap,
                                   level=level, seed=seed, progress=progress)
            intervals["fid"] = _interval(ci)
            if a.features is None:
                notes.append("FID interval: real is a statistics file, so only fake was resampled; the "
                             "interval is narrower than with features on both sides (it leaves out real's "
                             "sampling spread)")
    if "kid" in metrics:
        fa, fb = a.need_features("KID").features, b.need_features("KID").features
        size, given = _kid_subset_size(kid_subset_size, len(fa), len(fb), notes)
        vary = subsets_vary(len(fa), len(fb), kid_subsets, size)
        mean, std = load_function("kid")(fa, fb, subsets=kid_subsets, subset_size=size, seed=seed,
                                         labels=("real", "fake"), progress=progress)
        result["kid"] = {"mean": float(mean), "std": float(std) if vary else None}
        result["kid_subset_size"] = size
        settings["kid"] = {"subsets": int(kid_subsets), "subset_size": size, "subset_size_given": given,
                           "subsets_vary": vary}
        if not vary:
            notes.append(f"KID: no ± — {'one subset' if kid_subsets == 1 else 'every subset is the whole sample'}"
                         f" ({kid_subsets} subset{'s' if kid_subsets != 1 else ''} of {size}, n = {len(fa)} "
                         f"real, {len(fb)} fake), so there is no spread between subsets to report")
        if bootstrap:
            from .bootstrap import bootstrap_kid

            boot_subsets = min(kid_subsets, 10)
            ci = bootstrap_kid(fa, fb, n_boot=bootstrap, level=level, subsets=boot_subsets,
                               subset_size=size, seed=seed, progress=progress, labels=("real", "fake"))
            intervals["kid"] = _interval(ci)
            settings["kid"]["bootstrap_subsets"] = boot_subsets
    if "is" in metrics:
        logits = b.need_logits("IS")
        mean, std = load_function("is")(logits, splits=is_splits, shuffle_seed=is_shuffle_seed, name="fake")
        result["is"] = {"mean": float(mean), "std": float(std)}
        settings["is"] = {"splits": int(is_splits), "shuffle_seed": is_shuffle_seed}
        order = (f"rows shuffled with seed {is_shuffle_seed}" if is_shuffle_seed is not None else
                 "rows in input order (shuffle_seed None: the original formula; the score then depends "
                 "on the order of the files)")
        notes.append(f"IS: computed on fake only (the Inception Score has no reference); {is_splits} "
                     f"splits, {order}")
    knn = [m for m in ("pr", "dc") if m in metrics]
    if knn:
        fa, fb = a.need_features(knn[0]).features, b.need_features(knn[0]).features
        for m in knn:
            settings[m] = {"k": int(k if m == "pr" else dc_k)}
        if bootstrap:
            from .bootstrap import bootstrap_prdc

            cis = bootstrap_prdc(fa, fb, k=k, dc_k=dc_k, n_boot=bootstrap, level=level, seed=seed,
                                 progress=progress)
            keys = [key for m in knn for key in _KEYS[m]]
            for m in knn:
                result[m] = {key: cis[key].value for key in _KEYS[m]}
            intervals.update({key: _interval(cis[key]) for key in keys})
            notes.append(f"{' and '.join(_TITLES[m] for m in knn)} intervals: the k-NN manifolds are held "
                         "fixed, so the intervals understate the uncertainty")
        elif len(knn) == 2:  # one pass over the distances for both
            from .prdc import prdc

            out = prdc(fa, fb, k, dc_k=dc_k, progress=progress)
            for m in knn:
                result[m] = {key: float(getattr(out, key)) for key in _KEYS[m]}
        else:
            m = knn[0]
            out = load_function(m)(fa, fb, k=settings[m]["k"], progress=progress)
            result[m] = {key: float(getattr(out, key)) for key in _KEYS[m]}
    if intervals:
        result["intervals"] = intervals
    result["n_real"], result["n_fake"] = a.n, b.n
    for label, op in (("real", a), ("fake", b)):
        if op.n is None:
            notes.append(f"n {label}: unknown (this statistics file, from another tool, does not record its "
                         "sample count)")
    result["settings"] = settings
    result["notes"] = notes
    result["provenance"] = json.loads(b.provenance.to_json())
    return result


_KEYS = {"pr": ("precision", "recall"), "dc": ("density", "coverage")}
_TITLES = {"pr": "precision/recall", "dc": "density/coverage"}


def _check_level_early(bootstrap: int, level: float) -> None:
    """Raises `InputError` for a bootstrap request that cannot be met, before any image is decoded."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0 or bootstrap == 1:
        raise InputError(f"{flag('n_boot')} {bootstrap!r}: a bootstrap interval needs at least 2 resamples "
                         f"(bootstrap= in Python); pass {flag('n_boot')} 100, or {flag('n_boot')} 0 for none")
    if bootstrap and not 0.0 < level < 1.0:
        raise InputError(f"{flag('level')} {level!r}: expected a confidence level strictly between 0 and 1 "
                         f"(level= in Python), e.g. {flag('level')} 0.95")


def _kid_subset_size(given: int | None, n_real: int, n_fake: int, notes: list[str]) -> tuple[int, bool]:
    """Returns (the KID subset size to use, whether it was given): a given size larger than a sample is
    an error naming the option; the registered default is reduced to the smaller sample, with a warning."""
    opt = flag("subset_size")
    n_min = min(n_real, n_fake)
    side = "real" if n_real <= n_fake else "fake"
    if given is not None:
        if given > n_min:
            raise InputError(f"{side}: {n_min} images, fewer than KID's {opt} {given} (subsets are drawn "
                             f"without replacement); pass {opt} {n_min} or fewer (kid_subset_size= in "
                             f"Python) or more images")
        return int(given), True
    default = int(get_metric("kid").defaults["subset_size"])
    if default <= n_min:
        return default, False
    warnings.warn(f"KID: {side} has {n_min} images, fewer than the default subset size {default}; using "
                  f"subsets of {n_min} (set {opt} to choose)", FidkitWarning, stacklevel=3)
    notes.append(f"KID: subsets of {n_min}, the default {default} reduced to the {n_min} {side} images")
    return n_min, False


def _check_dims(a: Operand, b: Operand, kinds: Sequence[str]) -> None:
    """Raises `InputError` when the two sides' features differ in dimension, saying which extractor
    each came from and which one to pass."""
    da, db = a.dim, b.dim
    if da == db:
        return
    from .registry import available_extractors, get_spec

    def origin(op: Operand, kind: str) -> str:
        what = {"stats": "a statistics file", "features": "features", "images": "images"}[kind]
        ex = op.provenance.extractor
        return f"{op.label} is {what} of {op.dim}-d features from extractor {ex}"

    parts = [origin(op, kind) for op, kind in zip((a, b), kinds, strict=True)]
    hint = "compute both sides with the same extractor"
    images = [op for op, kind in zip((a, b), kinds, strict=True) if kind == "images"]
    if len(images) == 1:
        other = b if images[0] is a else a
        known = other.provenance.extractor
        names = [known] if known != UNKNOWN else [n for n in available_extractors()
                                                  if get_spec(n).feature_dim == other.dim]
        if names:
            also = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
            came = "came from" if known != UNKNOWN else f"most likely came from ({other.dim}-d)"
            hint = (f"pass --extractor {names[0]}{also} (extractor= in Python) so that {images[0].label} is "
                    f"run through the extractor {other.label} {came}")
    raise InputError(f"real and fake have different feature dimensions ({da} vs {db}): {'; '.join(parts)}; "
                     f"{hint}")


def _interval(ci: Any) -> dict[str, float]:
    return {"value": float(ci.value), "low": float(ci.low), "high": float(ci.high),
            "level": float(ci.level), "n_boot": int(ci.n_boot)}
