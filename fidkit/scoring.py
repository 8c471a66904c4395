"""`score`: the one-call Python API behind ``fidkit score`` (and ``fid``, ``kid``, ``pr``)."""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ._validate import warn_sample_sizes
from .errors import FidkitWarning, InputError
from .extraction import Extractor
from .inputs import Operand, check_inputs, operand
from .kid import subsets_vary
from .metrics import DEFAULT_BOOTSTRAP, METRICS, flag, get_metric, load_function, parse_metrics
from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, _as_extractor, _open
from .stats import UNKNOWN, Provenance, Stats, check_provenance


class _Default:
    """The type of `DEFAULT`."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: "Not given" for options whose None has a meaning (``is_shuffle_seed=None``: input order): the protocol's
#: value, else the metric's registered default.
DEFAULT = _Default()


def _registered_shuffle(value: Any) -> int | None:
    return METRICS["is"].defaults["shuffle_seed"] if value is DEFAULT else value


def score(real: Any, fake: Any = None, metrics: str | Sequence[str] | None = None,
          extractor: Extractor | str | None = None, runtime: str | None = None, *,
          weights: str | None = None, resize: str | None = None, device: str | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS, progress: bool = False,
          allow_mismatch: bool = False, value_range: Any = None, layout: str | None = None,
          skip_bad: bool = False, is_splits: int | None = None,
          is_shuffle_seed: Any = DEFAULT,
          kid_subsets: int | None = None, kid_subset_size: int | None = None, k: int | None = None,
          dc_k: int | None = None, bootstrap: int | None = None, level: float = 0.95, seed: int | None = None,
          generator: Any = None, num: int | None = None, seeds: Any = (0,), quantize: bool = False,
          spatial: Mapping[str, Any] | None = None, cmmd_sigma: float | None = None,
          cmmd_scale: float | None = None, protocol: str | None = None,
          pr_weights: str | None = None) -> dict[str, Any]:
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

    ``extractor`` None is the protocol's, else ``"mnist"``; ``seed`` None is the protocol's, else 0;
    ``is_shuffle_seed`` left out is the protocol's order, else the registered 2020. CMMD (``"cmmd"``,
    Jayasumana et al. 2024, `fidkit.cmmd`) is computed on the features with ``cmmd_sigma`` and
    ``cmmd_scale`` (None: the authors' 10 and 1000); it is CMMD proper on ``clip-vitl14-336`` only.

    ``protocol`` (a name of `fidkit.protocols`, e.g. ``"torch-fidelity"``) fixes the extractor, resize
    policy, weights file, FID's covariance divisor, KID's subsets, sizes, draws and input order, IS's
    splits, order and std, PR/DC's k and the seed, so that each number is that tool's own
    (`fidkit.protocols.resolve`); an option that contradicts it raises `InputError` naming both unless
    ``allow_mismatch`` (then it is used and listed in ``settings["protocol"]["mismatches"]``). With
    ``metrics`` None only the metrics the protocol reproduces are computed; naming one it does not is an
    `InputError` unless ``allow_mismatch`` (fidkit's own is then computed, with a note). The protocol's
    label goes into the provenance and ``settings["protocol"]``.

    sFID (``"sfid"``: Nash et al. 2021, `fidkit.sfid`) needs the ``inception-tf2015`` extractor's spatial
    features: computed in the same pass from image inputs, or given as ``spatial={"real": Stats,
    "fake": Stats}`` (`fidkit.sfid.spatial_stats`) for sides that are not images.

    Under a protocol whose precision/recall is computed in another network's feature space (`stylegan`:
    ``vgg16-nvidia``, `torch-fidelity`: ``vgg16-torchvision``; `fidkit.protocols.PRConfig.extractor`), PR
    takes a second pass over the images with that extractor at its own resize policy (``pr_weights``: its
    weights file, else the registered one found locally); both inputs must then be images, and absent
    weights raise `InputError` naming the file and ``fidkit weights where``. With ``metrics`` None, a
    metric the inputs cannot give (PR of such a protocol without images or weights, PR/IS from a statistics
    file) is left out with a note instead; under a protocol that reports sFID (`adm`) sFID is added when
    both sides can give it (images, ``spatial``, or an ADM reference batch's ``mu_s``/``sigma_s``).

    ``generator`` (with ``fake`` omitted): a callable ``fn(seeds) -> images`` or ``"module:attribute"``,
    sampled ``num`` images per seed of ``seeds`` in batches of ``batch_size`` on the extractor's device,
    no image written, ``quantize`` rounding them to uint8 levels first as a saved PNG would; the result
    is then per seed and summarized over seeds (`fidkit.generators.score_generator`).
    """
    if generator is not None:
        if fake is not None:
            raise InputError("pass either fake images or --generator (generator= in Python), not both")
        from .generators import score_generator

        if protocol is not None:
            from .protocols import extractor_for

            ex_g, _ = extractor_for(protocol, extractor, runtime, weights=weights, resize=resize, device=device,
                                    allow_mismatch=allow_mismatch)
        else:
            ex_g = _as_extractor(extractor or "mnist", runtime, weights, device, resize)
        return score_generator(
            score, real, generator, num=num if num is not None else 0, seeds=seeds, quantize=quantize,
            metrics=metrics, ex=ex_g, bootstrap=bootstrap, batch_size=batch_size, workers=workers,
            progress=progress, value_range=value_range, layout=layout, skip_bad=skip_bad,
            spatial_real=(spatial or {}).get("real"), allow_mismatch=allow_mismatch, is_splits=is_splits,
            is_shuffle_seed=is_shuffle_seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, k=k,
            dc_k=dc_k, level=level, seed=seed, cmmd_sigma=cmmd_sigma, cmmd_scale=cmmd_scale, protocol=protocol)
    if fake is None:
        raise InputError("no generated input: pass fake images, features or statistics, or --generator "
                         "(generator= in Python)")
    if num is not None or quantize or (seeds != (0,) and _generator_seeds(seeds) != (0,)):
        raise InputError("num=, seeds= and quantize= apply to generator= only (--num, --seeds, --quantize "
                         "with --generator); pass generator= or drop them")
    plan = _ProtocolPlan.make(protocol, metrics, allow_mismatch, extractor=extractor, weights=weights,
                              resize=resize, is_splits=is_splits, kid_subsets=kid_subsets,
                              kid_subset_size=kid_subset_size, k=k, dc_k=dc_k, seed=seed)
    metrics = plan.metrics if plan is not None else parse_metrics(metrics)
    if plan is not None and plan.defaulted:  # the protocol's metrics that these inputs can give
        metrics = plan.for_inputs(real, fake, spatial)
    if plan is not None:
        is_splits, kid_subsets, k, dc_k, seed = plan.fill(is_splits, kid_subsets, k, dc_k, seed)
    is_splits = get_metric("is").defaults["splits"] if is_splits is None else is_splits
    kid_subsets = get_metric("kid").defaults["subsets"] if kid_subsets is None else kid_subsets
    k = get_metric("pr").defaults["k"] if k is None else k
    dc_k = get_metric("dc").defaults["k"] if dc_k is None else dc_k
    seed = 0 if seed is None else seed
    auto_bootstrap = bootstrap is None
    if auto_bootstrap:  # the default on every route; a statistics file as fake has nothing to resample
        from .inputs import classify

        bootstrap = 0 if classify(fake) == "stats" else DEFAULT_BOOTSTRAP
    _check_level_early(bootstrap, level)
    kinds, need_real_features, need_fake_features = check_inputs(real, fake, metrics, bootstrap)
    # PR in the protocol's other feature space is a second pass; the first runs only for the other metrics
    second_pr = plan is not None and "pr" in metrics and plan.pr_extractor is not None
    own_pr = False  # --allow-mismatch and not images: fidkit's own PR on the features given
    if second_pr and plan.allow_mismatch and any(kind != "images" for kind in kinds):
        second_pr, own_pr = False, True
        plan.notes.append(f"precision/recall: not {plan.protocol.name}'s number ({plan.protocol.name} computes it "
                          f"on {plan.pr_extractor} features, from images); fidkit's own on the inputs given")
    main_metrics = [m for m in metrics if not (second_pr and m == "pr")]
    if second_pr and main_metrics:
        _, need_real_features, need_fake_features = check_inputs(real, fake, main_metrics, bootstrap)
    ex: Extractor | str = extractor
    if "images" in kinds and main_metrics:
        ex = (plan.extractor(extractor, runtime, weights, device, resize) if plan is not None
              else _as_extractor(extractor or "mnist", runtime, weights, device, resize))
    pipe = {"batch_size": batch_size, "workers": workers, "progress": progress,
            "value_range": value_range, "layout": layout, "skip_bad": skip_bad}
    # image inputs are opened (listed, their arrays' shapes and ranges checked) before any is decoded:
    # an empty folder or a wrong range in ``fake`` fails now, not after all of ``real`` went through
    real, fake = (_open(v, value_range=value_range, layout=layout, skip_bad=skip_bad) if kind == "images"
                  else v for v, kind in zip((real, fake), kinds, strict=True))
    given = (real, fake)  # as given: an ADM reference batch's file also holds sFID's mu_s/sigma_s
    real, fake = (load_published(v) if kind == "stats" else v for v, kind in zip(given, kinds, strict=True))
    spatial = dict(spatial or {})
    _check_before_extraction(ex, (real, fake), kinds, main_metrics, allow_mismatch,
                             kid_subset_size if plan is None else None)
    pr_pass = None  # (real, fake) operands of the protocol's own PR feature space
    if second_pr:
        assert plan is not None
        on = ex if isinstance(ex, Extractor) else None  # the first pass's runtime and device, else the given
        pr_pass = plan.pr_operands(real, fake, kinds, runtime if runtime is not None or on is None else on.runtime,
                                   device if device is not None or on is None else on.device, pr_weights, pipe)
        if pr_pass is None:  # defaulted and its weights are absent: left out, with the note
            metrics = tuple(m for m in metrics if m != "pr")
    pr_only = not main_metrics and pr_pass is not None
    if pr_only:
        a, b = pr_pass
    elif "sfid" in metrics:  # one pass: pool3 (or its statistics), logits and the spatial statistics
        from .sfid import image_operand, require_spatial

        for label, kind, v in zip(("real", "fake"), kinds, given, strict=True):
            if kind == "stats" and spatial.get(label) is None and _has_spatial(v):  # an ADM reference batch
                spatial[label] = load_spatial(v)
            if kind != "images" and spatial.get(label) is None:
                raise InputError(f"{label}: sFID needs spatial statistics of the 2015 Inception, and {label} "
                                 f"is {kind}; pass images, or spatial={{'{label}': "
                                 f"fidkit.sfid.spatial_stats(...)}} in Python")
        if "images" in kinds:
            require_spatial(ex)

        a, b = (image_operand(v, ex, label, with_features=need, spatial=True, **pipe) if kind == "images"
                else (operand(v, ex, label, with_features=need, **pipe), spatial.get(label))
                for v, label, kind, need in zip((real, fake), ("real", "fake"), kinds,
                                                (need_real_features, need_fake_features), strict=True))
        (a, spatial["real"]), (b, spatial["fake"]) = a, b
    else:
        a = operand(real, ex, "real", with_features=need_real_features, **pipe)
        b = operand(fake, ex, "fake", with_features=need_fake_features, **pipe)
    if plan is not None and not pr_only:
        a, b = (plan.stamp(op, kind) for op, kind in zip((a, b), kinds, strict=True))
    check_provenance(a.provenance, b.provenance, allow_mismatch)
    _check_dims(a, b, kinds)
    result: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    notes: list[str] = list(plan.notes) if plan is not None else []
    settings: dict[str, Any] = {"seed": int(seed)}  # KID's subsets and the bootstrap resamples
    settings["protocol"] = plan.settings() if plan is not None else None
    if bootstrap:
        settings["bootstrap"] = {"n": int(bootstrap), "level": float(level), "seed": int(seed)}
    if "fid" in metrics:
        sa, sb = a.get_stats(), b.get_stats()
        warn_sample_sizes({"real": sa.n, "fake": sb.n}, sa.dim)
        cov_a, cov_b = plan.fid_covariances(sa, sb, notes) if plan is not None else (sa.cov, sb.cov)
        result["fid"] = float(load_function("fid")(sa.mean, cov_a, sb.mean, cov_b))
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
    if "sfid" in metrics:
        from .sfid import sfid

        check_provenance(spatial["real"].provenance, spatial["fake"].provenance, allow_mismatch)
        result["sfid"] = sfid(spatial["real"], spatial["fake"])
    if "kid" in metrics:
        fa, fb = a.need_features("KID").features, b.need_features("KID").features
        kid_opts = plan.kid_options(len(fa), len(fb), kid_subset_size) if plan is not None else None
        if kid_opts is not None:  # the protocol's subsets, sizes, draws, seed and input order
            size, given, kid_seed, rng, order = (kid_opts["subset_size"], True, kid_opts["seed"], kid_opts["rng"],
                                                 kid_opts["inputs"])
        else:
            size, given = _kid_subset_size(kid_subset_size, len(fa), len(fb), notes)
            kid_seed, rng, order = seed, "numpy", ("real", "fake")
        vary = subsets_vary(len(fa), len(fb), kid_subsets, size)
        first, second = (fa, fb) if order == ("real", "fake") else (fb, fa)
        mean, std = load_function("kid")(first, second, subsets=kid_subsets, subset_size=size, seed=kid_seed,
                                         labels=order, progress=progress,
                                         **({"rng": rng} if rng != "numpy" else {}))
        result["kid"] = {"mean": float(mean), "std": float(std) if vary else None}
        result["kid_subset_size"] = size
        settings["kid"] = {"subsets": int(kid_subsets), "subset_size": size, "subset_size_given": given,
                           "subsets_vary": vary}
        if kid_opts is not None:
            settings["kid"].update({"seed": int(kid_seed), "rng": rng, "first_draw": order[0]})
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
        is_opts = (plan.is_options(len(logits), is_splits, is_shuffle_seed) if plan is not None else
                   {"splits": is_splits, "shuffle_seed": _registered_shuffle(is_shuffle_seed)})
        is_splits, is_shuffle_seed = is_opts["splits"], is_opts["shuffle_seed"]
        mean, std = load_function("is")(logits, **is_opts, name="fake")
        result["is"] = {"mean": float(mean), "std": float(std)}
        settings["is"] = {"splits": int(is_splits), "shuffle_seed": is_shuffle_seed,
                          **{key: is_opts[key] for key in ("rng", "parts", "ddof") if key in is_opts}}
        order = (f"rows shuffled with seed {is_shuffle_seed}" if is_shuffle_seed is not None else
                 "rows in input order (shuffle_seed None: the original formula; the score then depends "
                 "on the order of the files)")
        notes.append(f"IS: computed on fake only (the Inception Score has no reference); {is_splits} "
                     f"splits, {order}")
    knn = [m for m in ("pr", "dc") if m in metrics]
    inclusive = bool(plan is not None and not own_pr and plan.options.get("pr", {}).get("radius_inclusive"))
    if "pr" in knn and (pr_pass is not None or inclusive):  # PR on its own: other features or rule
        _protocol_pr(plan, pr_pass or (a, b), k, inclusive, bootstrap, level, seed, progress, result,
                     intervals, settings, notes)
        knn.remove("pr")
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
    if "cmmd" in metrics:
        _cmmd(a, b, cmmd_sigma, cmmd_scale, result, settings, notes)
    if intervals:
        result["intervals"] = intervals
    result["n_real"], result["n_fake"] = a.n, b.n
    for label, op in (("real", a), ("fake", b)):
        if op.n is None:
            notes.append(f"n {label}: unknown (this statistics file, from another tool, does not record its "
                         "sample count)")
    result["settings"] = settings
    result["notes"] = _computed_notes(notes, result)
    result["provenance"] = json.loads(b.provenance.to_json())
    return result


_KEYS = {"pr": ("precision", "recall"), "dc": ("density", "coverage")}


def _generator_seeds(seeds: Any) -> tuple[int, ...]:
    from .generators import parse_seeds

    return parse_seeds(seeds)
#: The metrics a protocol can fix (`fidkit.protocols.Protocol`); any other is fidkit's own under a protocol.
_PROTOCOL_METRICS = ("fid", "kid", "is", "pr", "dc", "sfid")


def _protocol_pr(plan: _ProtocolPlan, ops: tuple[Operand, Operand], k: int, inclusive: bool, bootstrap: int,
                 level: float, seed: int, progress: bool, result: dict[str, Any], intervals: dict[str, Any],
                 settings: dict[str, Any], notes: list[str]) -> None:
    """Computes precision/recall under ``plan``'s protocol into ``result``: on the features of ``ops`` (the
    protocol's PR feature space), with its tie rule (`fidkit.prdc.precision_recall`'s ``radius_inclusive``),
    and the bootstrap interval (`fidkit.bootstrap.bootstrap_prdc`, which counts ties as outside)."""
    from .prdc import precision_recall

    fa, fb = ops[0].need_features("precision/recall").features, ops[1].need_features("precision/recall").features
    out = precision_recall(fa, fb, k=k, progress=progress, radius_inclusive=inclusive)
    result["pr"] = {"precision": float(out.precision), "recall": float(out.recall)}
    space = ops[1].provenance.extractor
    settings["pr"] = {"k": int(k), "radius_inclusive": inclusive, "extractor": space}
    if plan.pr_extractor is not None:
        notes.append(f"precision/recall: on {space} features (a second pass over the images, resize policy "
                     f"{ops[1].provenance.resize_policy}), as {plan.protocol.name}")
    if bootstrap:
        from .bootstrap import bootstrap_prdc

        cis = bootstrap_prdc(fa, fb, k=k, dc_k=k, n_boot=bootstrap, level=level, seed=seed, progress=progress)
        for key in ("precision", "recall"):
            intervals[key] = {**_interval(cis[key]), "value": result["pr"][key]}
        notes.append("precision/recall intervals: the k-NN manifolds are held fixed, so the intervals understate "
                     "the uncertainty" + ("; resampled with a point on a radius counted outside (fidkit's "
                                          "bootstrap), which differs from the value's rule only on exact ties"
                                          if inclusive else ""))


def load_published(value: Any) -> Any:
    """Returns a statistics file (path) as `Stats` read by `fidkit.refstats.load`, so that a published file
    (TTUR's, clean-fid's, an ADM reference batch) carries its registry provenance (extractor, policy,
    protocol, data set, URL) instead of "unknown"; any other value unchanged. Raises `InputError` as
    `fidkit.stats.load` does."""
    import os

    if not isinstance(value, (str, os.PathLike)):
        return value
    from .refstats import load

    return load(value)


def stamp_protocol(value: Any, protocol: str, *, label: str = "input", allow_mismatch: bool = False) -> Any:
    """Returns statistics or features (`Stats`, `fidkit.features.FeatureResult`) with ``protocol``'s label in
    their provenance (``fidkit stats --protocol`` on such an input), after checking that they were computed
    with the protocol's extractor and resize policy and under no other protocol. Raises `InputError` (one
    line, naming ``label``) when a field differs or is not recorded, unless ``allow_mismatch``."""
    from .protocols import get_protocol
    from .stats import NO_PROTOCOL

    p = get_protocol(protocol)
    prov = value.provenance
    problems = []
    for field, want in (("extractor", p.extractor), ("resize_policy", p.policy)):
        got = getattr(prov, field)
        name = field.replace("_", " ")
        if got == UNKNOWN:
            problems.append(f"its {name} is not recorded")
        elif got != want:
            problems.append(f"its {name} is {got}, and --protocol {p.name} uses {want}")
    if prov.protocol not in (UNKNOWN, NO_PROTOCOL, p.label):
        problems.append(f"it was computed under protocol {prov.protocol}")
    if problems and not allow_mismatch:
        raise InputError(f"{label}: cannot be recorded as computed under --protocol {p.name}: "
                         f"{'; '.join(problems)}; recompute it from images with --protocol {p.name}, or pass "
                         f"--allow-mismatch to record it anyway")
    from .features import FeatureResult

    op = Operand(label, features=value) if isinstance(value, FeatureResult) else Operand(label, stats=value)
    op = _with_protocol(op, p.label)
    return op.features if isinstance(value, FeatureResult) else op.stats


def load_spatial(path: Any) -> Stats:
    """Returns sFID's spatial statistics from the file at ``path``: an ADM reference batch's
    ``mu_s``/``sigma_s`` (`fidkit.refstats.load` with ``spatial=True``, with its registry provenance when it
    is a published one), else the statistics file itself (``fidkit stats --spatial``). Raises `InputError`
    naming the file when it holds neither."""
    if _has_spatial(path):
        from .refstats import load

        return load(path, spatial=True)
    from .stats import load as load_stats

    return load_stats(path)


def _has_spatial(value: Any) -> bool:
    """Returns whether ``value`` is a statistics file holding sFID statistics (an ADM reference batch)."""
    import os

    if not isinstance(value, (str, os.PathLike)):
        return False
    from . import npfile

    try:
        info = npfile.sniff(value)
    except (OSError, InputError):
        return False
    return info.kind == "stats" and all(n in info.arrays for n in npfile.SPATIAL_NAMES)


def _reproduced(options: dict[str, Any]) -> list[str]:
    """Returns the metrics a protocol reproduces, from `fidkit.protocols.resolve`'s metric options."""
    return [m for m in _PROTOCOL_METRICS if (m == "fid" or m in options) and m not in options["unavailable"]]


def default_metrics(protocol: str | None = None, real: Any = None, fake: Any = None,
                    spatial: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Returns the metrics `score` computes when none are named: `fidkit.metrics.DEFAULT_METRICS`, or
    those of them that ``protocol`` reproduces (raises `InputError` for an unknown or unusable protocol);
    given ``real`` and ``fake``, those that these inputs can give under the protocol, as `score` decides
    (`_ProtocolPlan.for_inputs`)."""
    from .metrics import DEFAULT_METRICS

    if protocol is None:
        return DEFAULT_METRICS
    if real is not None and fake is not None:
        plan = _ProtocolPlan.make(protocol, None, False, extractor=None, weights=None, resize=None,
                                  is_splits=None, kid_subsets=None, kid_subset_size=None, k=None, dc_k=None,
                                  seed=None)
        assert plan is not None
        return plan.for_inputs(real, fake, spatial)
    from .protocols import resolve

    reproduced = _reproduced(resolve(protocol)[1])
    return tuple(m for m in DEFAULT_METRICS if m in reproduced)


def _with_protocol(op: Operand, label: str) -> Operand:
    """Returns ``op`` with its provenance's protocol set to ``label`` (shallow copies: no re-validation)."""
    from dataclasses import replace

    features, stats = op.features, op.stats
    if features is not None:
        features = copy.copy(features)
        object.__setattr__(features, "provenance", replace(features.provenance, protocol=label))
    if stats is not None:
        stats = copy.copy(stats)
        object.__setattr__(stats, "provenance", replace(stats.provenance, protocol=label))
    return replace(op, features=features, stats=stats)


class _ProtocolPlan:
    """What ``score(protocol=...)`` computes: `fidkit.protocols.resolve`'s options, the metrics the protocol
    reproduces, the notes and the mismatches allowed."""

    def __init__(self, protocol: Any, ex_options: dict[str, Any], options: dict[str, Any],
                 metrics: tuple[str, ...], notes: list[str], allow_mismatch: bool, kid_size_given: bool) -> None:
        self.protocol, self.ex_options, self.options = protocol, ex_options, options
        self.metrics, self.notes, self.allow_mismatch = metrics, notes, allow_mismatch
        self.kid_size_given = kid_size_given
        #: whether the metrics are the protocol's default (``metrics`` None), not named by the user
        self.defaulted = False
        self.mismatches = list(options["mismatches"])
        self.label = options["protocol"]["label"]

    @classmethod
    def make(cls, protocol: str | None, metrics: Any, allow_mismatch: bool, *, extractor: Any, weights: Any,
             resize: Any, is_splits: Any, kid_subsets: Any, kid_subset_size: Any, k: Any, dc_k: Any,
             seed: Any) -> _ProtocolPlan | None:
        """Returns the plan of ``protocol`` (None without one); raises `InputError` for a contradicting
        option or a metric the protocol does not reproduce (unless ``allow_mismatch``)."""
        if protocol is None:
            return None
        from .protocols import get_protocol, resolve

        p = get_protocol(protocol)
        name = extractor.name if isinstance(extractor, Extractor) else extractor
        if resize is None and isinstance(extractor, Extractor):
            resize = extractor.policy.name
        ex_options, options = resolve(p, allow_mismatch=allow_mismatch, extractor=name, weights=weights,
                                      resize=resize, is_splits=is_splits, kid_subsets=kid_subsets,
                                      kid_subset_size=kid_subset_size, k=k, dc_k=dc_k, seed=seed)
        unavailable = options["unavailable"]
        reproduced = _reproduced(options)
        notes = [f"mismatch: {m}" for m in options["mismatches"]]
        asked = parse_metrics(metrics)
        if metrics is None:  # the default: what the protocol reproduces
            chosen = tuple(m for m in asked if m in reproduced)
        else:
            for m in asked:
                if m in reproduced:
                    continue
                title = get_metric(m).title
                why = unavailable.get(m, f"it defines no {title}")
                if not allow_mismatch:
                    raise InputError(f"--protocol {p.name} does not reproduce {title}: {why}; drop {m} from "
                                     f"--metrics, or pass --allow-mismatch to compute fidkit's own")
                notes.append(f"{title}: not {p.name}'s number ({why}); fidkit's own")
            chosen = asked
        notes += list(options["notes"])
        if "kid" in chosen and options.get("kid_std") == "none":
            notes.append(f"KID: {p.name} reports the mean only; the ± is fidkit's (std over subsets)")
        if "is" in chosen and options.get("is_std") is False:
            notes.append(f"IS: {p.name} reports the mean only; the ± is fidkit's (std over parts)")
        plan = cls(p, ex_options, options, chosen, notes, allow_mismatch, kid_subset_size is not None)
        plan.defaulted = metrics is None
        return plan

    @property
    def pr_extractor(self) -> str | None:
        """The extractor of the protocol's PR feature space when it is not the protocol's own, else None."""
        return (self.options.get("pr") or {}).get("extractor")

    def for_inputs(self, real: Any, fake: Any, spatial: Any) -> tuple[str, ...]:
        """Returns the default metrics (``self.metrics``) that ``real`` and ``fake`` can give, noting each
        one left out; adds sFID when the protocol reports it and both sides can give spatial statistics."""
        from .inputs import classify

        kinds = {"real": classify(real), "fake": classify(fake)}
        keep = []
        for m in self.metrics:
            sides = [s for s in get_metric(m).inputs if kinds[s] == "stats"] if get_metric(m).needs != "stats" else []
            if m == "pr" and self.pr_extractor is not None:
                sides = [s for s in ("real", "fake") if kinds[s] != "images"]
                why = f"computed on {self.pr_extractor} features from images"
            else:
                why = "needs features"
            if sides:
                self.notes.append(f"{get_metric(m).title}: not computed ({why}; {' and '.join(sides)} "
                                  f"{'is' if len(sides) == 1 else 'are'} "
                                  f"{' and '.join(kinds[s] for s in sides)})")
                continue
            keep.append(m)
        if "sfid" in self.options and "sfid" not in keep:
            given = spatial or {}
            if all(kinds[s] == "images" or given.get(s) is not None or _has_spatial(v)
                   for s, v in (("real", real), ("fake", fake))):
                keep.insert(keep.index("fid") + 1 if "fid" in keep else 0, "sfid")
        return tuple(keep)

    def pr_operands(self, real: Any, fake: Any, kinds: Sequence[str], runtime: Any, device: Any,
                    weights: Any, pipe: dict[str, Any]) -> tuple[Operand, Operand] | None:
        """Returns (real, fake) features in the protocol's PR feature space: a second pass over the images
        with `pr_extractor` at its canonical resize policy. Raises `InputError` when an input is not images
        or the extractor's weights are absent (naming the file and ``fidkit weights where``); None instead
        of the latter when the metrics are the protocol's default."""
        from .errors import WeightsError
        from .registry import get_spec

        name, p = self.pr_extractor, self.protocol
        for label, kind in zip(("real", "fake"), kinds, strict=True):
            if kind != "images":
                raise InputError(f"{label}: --protocol {p.name} computes precision/recall on {name} features, "
                                 f"from images, and {label} is {kind}; pass images, or drop pr from --metrics")
        try:
            ex = _as_extractor(name, runtime, weights, device, None)
        except WeightsError as exc:
            files = " or ".join(get_spec(name).weights)
            message = (f"--protocol {p.name} computes precision/recall on {name} features, and its weights "
                       f"file {files} is not here ({str(exc).split(';')[0]}); `fidkit weights where {name}` "
                       f"says where to put it, or pass --pr-weights FILE")
            if self.defaulted:
                self.notes.append(f"precision/recall: not computed: {message}")
                return None
            raise InputError(f"{message}, or drop pr from --metrics") from None
        ops = tuple(_with_protocol(operand(v, ex, label, with_features=True, **pipe), self.label)
                    for v, label in zip((real, fake), ("real", "fake"), strict=True))
        return ops[0], ops[1]

    def fill(self, is_splits: Any, kid_subsets: Any, k: Any, dc_k: Any, seed: Any) -> tuple[Any, ...]:
        """Returns (is_splits, kid_subsets, k, dc_k, seed) with the protocol's values where it fixes them."""
        o = self.options
        if "is" in o and "splits" in o["is"]:
            is_splits = o["is"]["splits"]
        if "kid" in o:
            kid_subsets = o["kid"]["subsets"]
        if "pr" in o:
            k = o["pr"]["k"]
        if "dc" in o:
            dc_k = o["dc"]["k"]
        return is_splits, kid_subsets, k, dc_k, o["seed"]

    def extractor(self, extractor: Any, runtime: Any, weights: Any, device: Any, resize: Any) -> Extractor:
        """Returns the protocol's extractor (or the user's, checked against it)."""
        from .protocols import extractor_for

        ex, _ = extractor_for(self.protocol, extractor, runtime, weights=weights, resize=resize, device=device,
                              allow_mismatch=self.allow_mismatch)
        return ex

    def _refuse(self, message: str) -> None:
        if not self.allow_mismatch:
            raise InputError(f"{message}; pass --allow-mismatch to compute anyway")
        self.mismatches.append(message)
        self.notes.append(f"mismatch: {message}")

    def stamp(self, op: Operand, kind: str) -> Operand:
        """Returns ``op`` under the protocol: images get its label in their provenance; statistics and
        features computed with another extractor or resize policy than the protocol's are refused."""
        if kind == "images":
            return _with_protocol(op, self.label)
        prov = op.provenance
        for field, want, opt in (("extractor", self.ex_options["name"], "--extractor"),
                                 ("resize_policy", self.ex_options["policy"], "--resize")):
            got = getattr(prov, field)
            if got not in (UNKNOWN, want):
                self._refuse(f"{op.label} was computed with {field.replace('_', ' ')} {got}, and --protocol "
                             f"{self.protocol.name} uses {want} ({opt})")
        return op

    def fid_covariances(self, sa: Stats, sb: Stats, notes: list[str]) -> tuple[Any, Any]:
        """Returns both covariances with the protocol's divisor (n - ddof); needs n when ddof is 0."""
        ddof = self.options["fid"]["cov_ddof"]
        if ddof == 1:
            return sa.cov, sb.cov
        out = []
        for label, st in (("real", sa), ("fake", sb)):
            if st.n is None:
                raise InputError(f"{label}: a statistics file without its sample count; --protocol "
                                 f"{self.protocol.name} divides the covariance by n, not n - 1, which needs "
                                 f"it: pass features or images")
            out.append(self.protocol.fid_covariance(st.cov, st.n))
        notes.append(f"FID: covariances divided by n (not n - 1), as {self.protocol.name}")
        return out[0], out[1]

    def kid_options(self, n_real: int, n_fake: int, given: Any) -> dict[str, Any] | None:
        """Returns KID's subset size, seed, rng and input order under the protocol (None: it has no KID)."""
        o = self.options.get("kid")
        if o is None:
            return None
        size, n_min = int(o["subset_size"]), min(n_real, n_fake)
        rule = "fixed" if given is not None else self.options["kid_subset_size_rule"]
        if rule == "capped":
            size = min(size, n_min)
        elif rule == "n_over_subsets":
            size = min(size, n_min // int(o["subsets"]))
        if size > n_min or size < 2:
            side = "real" if n_real <= n_fake else "fake"
            raise InputError(f"{side}: {n_min} images, too few for KID's subsets of {size} under --protocol "
                             f"{self.protocol.name}; pass more images, or {flag('subset_size')} N with "
                             f"--allow-mismatch")
        return {"subset_size": size, "seed": o["seed"], "rng": o["rng"], "inputs": self.options["kid_inputs"]}

    def is_options(self, n: int, is_splits: int, is_shuffle_seed: Any) -> dict[str, Any]:
        """Returns the keyword arguments of `fidkit.inception_score` under the protocol."""
        o = self.options.get("is")
        if o is None:
            return {"splits": is_splits, "shuffle_seed": _registered_shuffle(is_shuffle_seed)}
        opts = {key: value for key, value in o.items() if key != "split_size"}
        opts["splits"] = self.protocol.is_splits(n) if "split_size" in o else is_splits
        if is_shuffle_seed is not DEFAULT and is_shuffle_seed != o["shuffle_seed"]:
            self._refuse(f"is_shuffle_seed={is_shuffle_seed} contradicts --protocol {self.protocol.name} "
                         f"({o['shuffle_seed']})")
            opts["shuffle_seed"] = is_shuffle_seed
        return opts

    def settings(self) -> dict[str, Any]:
        """Returns ``settings["protocol"]``: the protocol's name, version, label, tool and mismatches."""
        return {**self.options["protocol"], "mismatches": self.mismatches}


def _cmmd(a: Operand, b: Operand, sigma: float | None, scale: float | None, result: dict[str, Any],
          settings: dict[str, Any], notes: list[str]) -> None:
    """Computes CMMD (`fidkit.cmmd.cmmd`) into ``result`` with its settings and a note on the extractor."""
    from .cmmd import SCALE, SIGMA

    defaults = get_metric("cmmd").defaults
    sigma = defaults.get("sigma", SIGMA) if sigma is None else sigma
    scale = defaults.get("scale", SCALE) if scale is None else scale
    fa, fb = a.need_features("CMMD").features, b.need_features("CMMD").features
    result["cmmd"] = float(load_function("cmmd")(fa, fb, sigma, scale))
    settings["cmmd"] = {"sigma": float(sigma), "scale": float(scale)}
    ex = b.provenance.extractor if b.provenance.extractor != UNKNOWN else a.provenance.extractor
    if ex != CMMD_EXTRACTOR:
        notes.append(f"CMMD: on {ex} features, not CLIP ViT-L/14@336px ({CMMD_EXTRACTOR}, the authors' "
                     f"embedding): not comparable with published CMMD values")


#: The extractor CMMD is defined on (Jayasumana et al. 2024): CLIP ViT-L/14@336px.
CMMD_EXTRACTOR = "clip-vitl14-336"


def compute_stats(source: Any, extractor: Extractor | str | None = None, *, protocol: str | None = None,
                  allow_mismatch: bool = False, runtime: str | None = None, weights: str | None = None,
                  resize: str | None = None, device: str | None = None, **options: Any) -> Stats:
    """Returns the feature statistics of ``source`` (`fidkit.pipeline.compute_stats`, whose keyword
    ``options`` it takes), under ``protocol`` when one is named: the protocol's extractor, weights and
    resize policy (``extractor``, ``weights``, ``resize`` that contradict it raise `InputError` unless
    ``allow_mismatch``), and its label in the provenance. ``extractor`` None: the protocol's, else "mnist"."""
    from .pipeline import compute_stats as pipeline_stats

    ex, label = _protocol_extractor(protocol, extractor, runtime, weights, resize, device, allow_mismatch)
    stats = pipeline_stats(source, ex, **options)
    return _with_protocol(Operand("input", stats=stats), label).stats if label else stats


def compute_features(source: Any, extractor: Extractor | str | None = None, *, protocol: str | None = None,
                     allow_mismatch: bool = False, runtime: str | None = None, weights: str | None = None,
                     resize: str | None = None, device: str | None = None, **options: Any) -> Any:
    """Returns the features and logits of ``source`` (`fidkit.pipeline.compute_features`, whose keyword
    ``options`` it takes; None on the other ranks of a distributed run), under ``protocol`` as
    `compute_stats`."""
    from .pipeline import compute_features as pipeline_features

    ex, label = _protocol_extractor(protocol, extractor, runtime, weights, resize, device, allow_mismatch)
    res = pipeline_features(source, ex, **options)
    return _with_protocol(Operand("input", features=res), label).features if label and res is not None else res


def _protocol_extractor(protocol: str | None, extractor: Any, runtime: Any, weights: Any, resize: Any,
                        device: Any, allow_mismatch: bool) -> tuple[Extractor, str | None]:
    """Returns (the extractor to use, the protocol's label or None)."""
    if protocol is None:
        return _as_extractor(extractor if extractor is not None else "mnist", runtime, weights, device, resize), None
    from .protocols import extractor_for

    ex, options = extractor_for(protocol, extractor, runtime, weights=weights, resize=resize, device=device,
                                allow_mismatch=allow_mismatch)
    return ex, options["protocol"]["label"]
_TITLES = {"pr": "precision/recall", "dc": "density/coverage"}


def _computed_notes(notes: list[str], result: Mapping[str, Any]) -> list[str]:
    """Returns ``notes`` less those about a metric that was not computed (a protocol's KID note when only
    IS was asked); a note saying a metric was left out ("not computed") stays."""
    titles = {get_metric(m).title: m for m in METRICS}
    kept = []
    for note in notes:
        head = note.split(":", 1)[0].split(" ")[0]
        if head in titles and titles[head] not in result and "not computed" not in note:
            continue
        kept.append(note)
    return kept


def _check_level_early(bootstrap: int, level: float) -> None:
    """Raises `InputError` for a bootstrap request that cannot be met, before any image is decoded."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0 or bootstrap == 1:
        raise InputError(f"{flag('n_boot')} {bootstrap!r}: a bootstrap interval needs at least 2 resamples "
                         f"(bootstrap= in Python); pass {flag('n_boot')} 100, or {flag('n_boot')} 0 for none")
    if bootstrap and not 0.0 < level < 1.0:
        raise InputError(f"{flag('level')} {level!r}: expected a confidence level strictly between 0 and 1 "
                         f"(level= in Python), e.g. {flag('level')} 0.95")


def _recorded(v: Any, kind: str) -> tuple[Provenance | None, int | None]:
    """A non-image input's recorded provenance and sample count, read from headers where it is a file."""
    if kind == "stats":
        return getattr(v, "provenance", None), getattr(v, "n", None)
    if isinstance(v, (str, os.PathLike)):
        from . import npfile

        info = npfile.sniff(v)
        n = info.arrays[info.main].shape[0] if info.main in info.arrays else None
        if "provenance" not in info.arrays or info.arrays["provenance"].pickled:
            return None, n
        text = str(npfile.read(info, ["provenance"])["provenance"])
        return Provenance.from_json(text, str(info.path)), n
    feats = getattr(v, "features", None)
    return getattr(v, "provenance", None), (len(feats) if feats is not None else None)


def _check_before_extraction(ex: Any, values: tuple[Any, Any], kinds: Sequence[str], metrics: Sequence[str],
                             allow_mismatch: bool, kid_subset_size: int | None) -> None:
    """Raises, before any image is decoded, what would otherwise fail after extraction: a statistics or
    features file whose provenance the chosen extractor and resize policy contradict, sFID from an
    extractor without spatial features, IS from one without logits, a KID ``--subset-size`` larger than
    a known sample count."""
    if isinstance(ex, Extractor) and "images" in kinds:
        if "sfid" in metrics:
            from .sfid import require_spatial

            require_spatial(ex)
        if "is" in metrics and kinds[1] == "images" and ex.logits_dim is None:
            raise InputError(f"fake: IS needs classifier logits, and extractor {ex.name!r} gives none; pass "
                             f"--extractor with logits, e.g. inception-tf2015 (extractor= in Python), or drop "
                             f"is from --metrics")
        if not allow_mismatch:
            mine = Provenance.from_extractor(ex)
            for v, kind in zip(values, kinds, strict=True):
                prov = _recorded(v, kind)[0] if kind != "images" else None
                if prov is not None:
                    with warnings.catch_warnings():  # the unknown-field warnings come once, after extraction
                        warnings.simplefilter("ignore", FidkitWarning)
                        check_provenance(prov, mine)
    if "kid" in metrics and kid_subset_size is not None:
        known = [(n, label) for label, v, kind in zip(("real", "fake"), values, kinds, strict=True)
                 if (n := len(v) if kind == "images" and hasattr(v, "__len__") else (
                     _recorded(v, kind)[1] if kind != "images" else None)) is not None]
        if known:  # the smaller sample, real first on a tie, as _kid_subset_size says it after extraction
            n, label = min(known, key=lambda t: t[0])
            if kid_subset_size > n:
                opt = flag("subset_size")
                raise InputError(f"{label}: {n} images, fewer than KID's {opt} {kid_subset_size} (subsets are "
                                 f"drawn without replacement); pass {opt} {n} or fewer (kid_subset_size= in "
                                 f"Python) or more images")


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
