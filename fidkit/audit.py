"""`audit`: one pair of image sets scored under every evaluation protocol, sharing the work.

"I can't reproduce the paper's FID" usually means the paper's tool fixed a resize, a weights file, a
covariance divisor, KID subsets or IS splits that another tool fixes differently (`fidkit.protocols`).
`audit` computes the pair under each registered protocol and under fidkit's own default (the shipped
MNIST extractor, row ``fidkit-default``, always computed, so an audit runs offline), on one or more
runtimes, and reports every number with what differs from the default, so the spread the choices cause
can be read against the bootstrap interval of the FID itself.

Sharing: each input is decoded once (into memory: uint8 for 8-bit files), and the network runs once per
distinct (extractor, weights digest, runtime, resize policy): protocols that agree on those four share
one pass (``AuditResult.passes`` lists them); the metrics are then recomputed from the shared features
under each protocol's conventions. A protocol whose weights file is not found locally (none is
downloaded unless ``download``), whose resize policy fidkit lacks, or whose metric fidkit cannot
reproduce (`fidkit.protocols.Protocol.missing`) is listed as skipped, with the reason, not raised.

FID under a protocol is the Fréchet distance (Heusel et al., NeurIPS 2017) of the protocol's
statistics: covariances divided by ``n - fid_cov_ddof`` (`Protocol.fid_covariance`). Its interval is
the re-centred bootstrap of `fidkit.bootstrap.bootstrap_fid` (same draws, the protocol's divisor). With
``sample_sizes``, FID is also computed on sub-samples of the fake set (drawn as `fidkit.fid_infinity`
draws them) and fitted linearly in 1/N: FID∞ (Chong & Forsyth, CVPR 2020).

Outputs (``out``): ``audit.md``, ``audit.csv``, ``audit.json`` and the figure ``audit.png`` /
``audit.svg`` (matplotlib, imported only here, when a figure is written), each written atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .errors import FidkitWarning, InputError, WeightsError
from .images import ImageSource, Name

#: The row of fidkit's own default settings (the shipped MNIST extractor, `fidkit.score`'s defaults).
DEFAULT_ROW = "fidkit-default"
#: The extractor of the default row.
DEFAULT_EXTRACTOR = "mnist"
#: File names written under ``out`` (each with these suffixes).
OUTPUT_STEM = "audit"
_TABLE_METRICS = ("fid", "kid", "is", "pr")


# ------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class AuditRow:
    """One protocol on one runtime: its numbers, or why it (or one of its metrics) was skipped.

    ``protocol``: the protocol's label (``name@version``) or ``"fidkit-default"``; ``status``: ``"ok"``
    or ``"skipped"`` (``reason`` says why); ``fid`` with ``fid_low``/``fid_high`` (bootstrap interval at
    the audit's level); ``kid_mean``/``kid_std`` (std None when the protocol reports none or the
    subsets cannot differ); ``is_mean``/``is_std``; ``precision``/``recall``; ``skipped_metrics``:
    metric -> why it has no value; ``differs``: the settings that differ from the default row;
    ``settings``: every setting of the row, as text; ``provenance``: the line to report with a number.
    """

    protocol: str
    runtime: str
    status: str
    reason: str = ""
    extractor: str = ""
    weights: str = ""
    weights_sha256: str = ""
    policy: str = ""
    n_real: int | None = None
    n_fake: int | None = None
    fid: float | None = None
    fid_low: float | None = None
    fid_high: float | None = None
    kid_mean: float | None = None
    kid_std: float | None = None
    is_mean: float | None = None
    is_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    differs: str = ""
    notes: tuple[str, ...] = ()
    provenance: str = ""

    @property
    def key(self) -> str:
        """Returns ``protocol@runtime``-style key naming this row in the figure and the FID∞ fits."""
        return f"{self.protocol} ({self.runtime})"


@dataclass(frozen=True)
class AuditResult:
    """What `audit` computed: the rows, the network passes it made, and the FID∞ fits.

    ``passes``: one entry per network pass over both inputs ({"extractor", "weights_sha256", "runtime",
    "policy", "rows"}); ``decoded``: images decoded per input; ``infinity``: row key -> {"sizes",
    "fids", "fid_infinity", "slope"} when sample sizes were given; ``settings``: bootstrap resamples,
    level and seed; ``files``: what was written.
    """

    rows: tuple[AuditRow, ...]
    passes: tuple[dict[str, Any], ...]
    decoded: dict[str, int]
    infinity: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    fidkit_version: str
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Returns the result as plain JSON-ready data (the content of ``audit.json``)."""
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["key"] = r.key
            d["notes"] = list(r.notes)
            rows.append(d)
        return {"format": "fidkit-audit-v1", "fidkit_version": self.fidkit_version, "rows": rows,
                "passes": [dict(p) for p in self.passes], "decoded": dict(self.decoded),
                "infinity": self.infinity, "settings": self.settings}

    def table(self) -> list[list[str]]:
        """Returns the table as rows of strings, the header first (the Markdown, CSV and text tables)."""
        return table_rows(self.to_dict())

    def markdown(self) -> str:
        """Returns the table as Markdown, with the skipped rows' reasons and the network passes below."""
        return markdown(self.to_dict())

    def csv(self) -> str:
        """Returns the table as CSV (numbers as full-precision decimals, empty cells for none)."""
        return csv_text(self.to_dict())

    def text(self) -> str:
        """Returns the table as aligned plain text, for the terminal."""
        return text_table(self.to_dict())


# ----------------------------------------------------------------------------------------- decoding


class _DecodedSource(ImageSource):
    """Images decoded once and held in memory (one array, or a list of HWC images of different sizes)."""

    def __init__(self, src: ImageSource) -> None:
        super().__init__()
        self.description = src.description
        batches: list[Any] = []
        names: list[Name] = []
        for batch, batch_names in src.iter_batches(256):
            batches.append(batch)
            names.extend(batch_names)
        self.layout, self.value_range = src.layout, src.value_range
        self.skipped, self.ignored = list(src.skipped), list(src.ignored)
        if batches and all(isinstance(b, np.ndarray) for b in batches) and \
                len({(b.shape[1:], b.dtype) for b in batches}) == 1:
            self._images: Any = np.concatenate(batches) if len(batches) > 1 else batches[0]
        else:
            flat: list[np.ndarray] = []
            for b in batches:
                flat.extend(list(b))
            self._images = flat
        self.names = names

    def iter_batches(self, batch_size: int, workers: int | None = None
                     ) -> Iterator[tuple[np.ndarray | list[np.ndarray], list[Name]]]:
        """Yields (batch, names) from memory, as `ImageSource.iter_batches` describes."""
        batch_size = self._check_batch_size(batch_size)
        for start in range(0, len(self.names), batch_size):
            yield self._images[start:start + batch_size], self.names[start:start + batch_size]


def _decode(value: Any, label: str, *, value_range: Any, layout: str | None, skip_bad: bool) -> _DecodedSource:
    from .inputs import classify
    from .pipeline import _open

    kind = classify(value)
    if kind != "images":
        raise InputError(f"{label}: `fidkit audit` needs images (folder, zip or image array), received "
                         f"{kind}; features and statistics were computed under one protocol already")
    return _DecodedSource(_open(value, value_range=value_range, layout=layout, skip_bad=skip_bad))


# ------------------------------------------------------------------------------------------ metrics


def protocol_fid(real: np.ndarray, fake: np.ndarray, ddof: int = 1) -> float:
    """Returns FID (Heusel et al. 2017) of two feature arrays (n, d) with covariances divided by n - ``ddof``.

    ``ddof`` 1 is fidkit's (and pytorch-fid's) unbiased covariance, 0 StyleGAN's ``raw_cov / n``. With
    fewer samples than dimensions on a side the n1×n2 route of `fidkit.frechet_distance_features` is
    used (the divisor rescales the traces, and tr sqrt by the geometric mean of the two factors).
    """
    from .frechet import _distance_features, _frechet, _gram_trace_sqrt, frechet_distance

    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if ddof == 1:
        return _distance_features(real, fake)
    na, nb, d = real.shape[0], fake.shape[0], real.shape[1]
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    xc1, xc2 = real - mu1, fake - mu2
    if min(na, nb) < d:
        tr1 = float(np.einsum("ij,ij->", xc1, xc1)) / (na - ddof)
        tr2 = float(np.einsum("ij,ij->", xc2, xc2)) / (nb - ddof)
        scale = math.sqrt((na - 1) * (nb - 1) / ((na - ddof) * (nb - ddof)))
        return _frechet(mu1 - mu2, tr1, tr2, _gram_trace_sqrt(xc1, xc2) * scale, d)
    s1, s2 = (xc1.T @ xc1) / (na - ddof), (xc2.T @ xc2) / (nb - ddof)
    return frechet_distance(mu1, 0.5 * (s1 + s1.T), mu2, 0.5 * (s2 + s2.T))


def _fid_interval(real: np.ndarray, fake: np.ndarray, ddof: int, n_boot: int, level: float,
                  seed: int) -> tuple[float, float]:
    """Returns the re-centred bootstrap interval of `protocol_fid`, with `fidkit.bootstrap_fid`'s draws."""
    from .bootstrap import _centred_interval, _replicates, bootstrap_fid

    if ddof == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FidkitWarning)  # the sample-size warning: said once, per input
            ci = bootstrap_fid(real, fake, n_boot=n_boot, level=level, seed=seed)
        return ci.low, ci.high
    rng = np.random.default_rng(seed)
    n_r, n_f = real.shape[0], fake.shape[0]
    reps = _replicates(n_boot, fake.shape[1], "FID bootstrap", False, lambda: protocol_fid(
        real[rng.integers(0, n_r, n_r)], fake[rng.integers(0, n_f, n_f)], ddof))
    ci = _centred_interval(protocol_fid(real, fake, ddof), reps, level)
    return ci.low, ci.high


def _fid_value(real: np.ndarray, fake: np.ndarray, fid_covariance: Any) -> float:
    """Returns FID from the statistics route (`Stats` means and covariances, rescaled by the protocol)."""
    from .frechet import frechet_distance
    from .stats import Stats

    sa, sb = Stats.from_features(real), Stats.from_features(fake)
    return float(frechet_distance(sa.mean, fid_covariance(sa.cov, sa.n), sb.mean, fid_covariance(sb.cov, sb.n)))


def infinity_points(real: np.ndarray, fake: np.ndarray, sizes: Sequence[int], ddof: int = 1,
                    seed: int = 0) -> dict[str, Any]:
    """Returns {"sizes", "fids", "fid_infinity", "slope"}: FID of fake sub-samples against all of real.

    Sub-samples are drawn as `fidkit.fid_infinity` draws them (``numpy.random.default_rng(seed)``, the
    first N rows of a fresh permutation per size, sizes ascending), scored with `protocol_fid` and fitted
    by least squares in 1/N (Chong & Forsyth, CVPR 2020); ``fid_infinity`` is the fit at 1/N = 0.
    """
    grid = sorted({int(s) for s in sizes})
    rng = np.random.default_rng(seed)
    fids = [protocol_fid(real, fake[rng.permutation(fake.shape[0])[:s]], ddof) for s in grid]
    slope, intercept = np.polyfit(1.0 / np.asarray(grid, dtype=np.float64), np.asarray(fids), 1)
    return {"sizes": grid, "fids": [float(v) for v in fids], "fid_infinity": float(intercept),
            "slope": float(slope)}


# ---------------------------------------------------------------------------------------- protocols


@dataclass
class _Plan:
    """A row to compute: its protocol (None: the default), runtime, extractor key and settings."""

    protocol: Any
    runtime: str
    extractor: str
    weights_names: tuple[str, ...]
    policy: str
    skipped: dict[str, str]
    reason: str = ""
    canonical: Any = None


def _default_settings() -> dict[str, str]:
    from .inception_score import DEFAULT_SHUFFLE_SEED
    from .metrics import METRICS
    from .registry import get_spec

    kid = METRICS["kid"].defaults
    spec = get_spec(DEFAULT_EXTRACTOR)
    return {"extractor": f"{DEFAULT_EXTRACTOR} ({', '.join(spec.weights)})", "resize": spec.policy,
            "fid covariance": "/ (n - 1)",
            "kid": f"{kid['subsets']} subsets of {kid['subset_size']} (reduced to n), RandomState(seed), "
                   f"real first, std ddof 0",
            "is": f"{METRICS['is'].defaults['splits']} splits, RandomState({DEFAULT_SHUFFLE_SEED}) "
                  f"permutation, std ddof 0",
            "pr": f"k {METRICS['pr'].defaults['k']}, extractor features"}


def _protocol_settings(p: Any) -> dict[str, str]:
    from .protocols import _is_text, _kid_text, _pr_text

    return {"extractor": f"{p.extractor} ({', '.join(p.weights)})", "resize": p.policy,
            "fid covariance": f"/ (n - {p.fid_cov_ddof})" if p.fid_cov_ddof else "/ n",
            "kid": _kid_text(p.kid), "is": _is_text(p.inception_score, p.logits_bias), "pr": _pr_text(p.pr)}


def _differs(settings: Mapping[str, str], default: Mapping[str, str]) -> str:
    diff = [f"{k}: {v}" for k, v in settings.items() if v != default.get(k)]
    return "; ".join(diff) or "—"


def _parse_list(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise InputError(f"{what}: expected a comma-separated list, received {value!r}")
    return list(dict.fromkeys(items))


def _protocol_names(protocols: str | Sequence[str] | None) -> list[str]:
    from .protocols import available_protocols, get_protocol

    if not isinstance(protocols, str) and protocols is not None and len(protocols) == 0:
        return []
    names = _parse_list(protocols, "--protocols")
    if names is None or names == ["all"]:
        return available_protocols()
    if names == ["none"]:
        return []
    out = []
    for n in names:
        if n == DEFAULT_ROW:
            continue
        try:
            out.append(get_protocol(n).name)
        except InputError:
            raise InputError(f"--protocols: unknown protocol {n!r}; available: all, "
                             f"{', '.join(available_protocols())}") from None
    return out


def _plan_protocol(p: Any, runtime: str, explicit: Mapping[str, str], download: bool) -> _Plan:
    """Returns the plan of protocol ``p`` on ``runtime``: its weights located (or why not) and what of
    it fidkit cannot reproduce."""
    from .weights import locate

    missing = dict(p.missing)
    plan = _Plan(p, runtime, p.extractor, tuple(p.weights), p.policy,
                 {m: missing[m] for m in _TABLE_METRICS if m in missing})
    if "policy" in missing:
        plan.reason = missing["policy"]
    elif "fid" in missing:
        plan.reason = f"FID: {missing['fid']}"
    elif p.extractor not in explicit:
        try:
            locate(tuple(p.weights), download_missing=download, progress=False)
        except WeightsError as exc:
            files = " or ".join(p.weights)
            why = f"download failed: {exc}" if download else "not downloaded without --download"
            plan.reason = (f"weights {files} not found locally ({why}); `fidkit weights where {p.extractor}` "
                           f"says where to put it, or pass --weights FILE")
    return plan


def _load_weights(plan: _Plan, explicit: Mapping[str, str], cache: dict[Any, Any]) -> Any:
    """Returns the `CanonicalWeights` of ``plan``: the explicit file for its extractor, else the first of
    its protocol's files found (converted once per (files, explicit file))."""
    from .weights import resolve_weights

    key = (plan.weights_names, explicit.get(plan.extractor))
    if key not in cache:
        cache[key] = resolve_weights(plan.weights_names, explicit.get(plan.extractor))
    return cache[key]


def _build_extractor(name: str, runtime: str, weights: Any, device: str, policy: str) -> Any:
    """Returns extractor ``name`` on ``runtime`` with ``weights`` (`CanonicalWeights`) under ``policy``:
    `fidkit.extractor` with the weights restricted to the protocol's files."""
    from .extraction import _load_builder, assemble, builtin_convention
    from .registry import get_spec
    from .resize import get_policy

    spec = get_spec(name)
    pol = get_policy(policy)
    net = _load_builder(spec.builders[runtime])(spec=spec, weights=weights, device=device)
    conv = builtin_convention(spec, pol, getattr(net, "layout", "NHWC"))
    return assemble(spec, runtime, device, pol, conv, net, weights_sha256=weights.digest if weights else None,
                    weights_source=weights.source if weights else None)


# -------------------------------------------------------------------------------------------- audit


def audit(real: Any, fake: Any, protocols: str | Sequence[str] | None = "all",
          runtimes: str | Sequence[str] | None = None, *, sample_sizes: Sequence[int] | None = None,
          out: str | Path | None = None, weights: Mapping[str, str] | None = None, download: bool = False,
          device: str = "cpu", bootstrap: int | None = None, level: float = 0.95, seed: int = 0,
          batch_size: int | None = None, workers: int | None = None, value_range: Any = None,
          layout: str | None = None, skip_bad: bool = False, progress: bool = False,
          figure: bool = True) -> AuditResult:
    """Returns the `AuditResult` of ``real`` against ``fake`` under each protocol and runtime.

    ``real``, ``fake``: images (folder, zip, image array or file), each decoded once. ``protocols``:
    "all" (default), "none" (or an empty list), or names (a list or comma-separated) of
    `fidkit.protocols`; the default row
    (``fidkit-default``: extractor ``mnist``, `fidkit.score`'s defaults) is always computed.
    ``runtimes``: names (list or comma-separated; None: the first installed); every row is computed on
    each. ``weights``: extractor name -> weights file to use for it (e.g. converted or synthetic
    weights, recorded as unofficial); otherwise each protocol uses its own weights files when found
    locally, downloading them only with ``download``. ``bootstrap`` resamples (None:
    `fidkit.metrics.DEFAULT_BOOTSTRAP`; 0: no intervals) at ``level`` with ``seed`` (also KID's seed
    where a protocol does not fix one). ``sample_sizes``: fake sub-sample sizes for FID against 1/N
    and the FID∞ fit. ``out``: a folder to write ``audit.{md,csv,json,png,svg}`` to (the figure only
    with ``figure``; it needs matplotlib).

    Raises `InputError` for inputs that are not images, unknown protocols or runtimes, bad sample
    sizes; `BackendUnavailableError` for a runtime that is not installed. A protocol that cannot run
    here (weights absent, a resize policy or metric fidkit lacks) is a skipped row, not an error.
    """
    from ._version import __version__
    from .metrics import DEFAULT_BOOTSTRAP
    from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
    from .protocols import get_protocol
    from .registry import RUNTIME_MODULES, choose_runtime, get_spec

    names = _protocol_names(protocols)
    rts = _parse_list(runtimes, "--runtimes")
    spec = get_spec(DEFAULT_EXTRACTOR)
    if rts is None:
        rts = [choose_runtime(spec, None)]
    for rt in rts:
        if rt not in RUNTIME_MODULES:
            raise InputError(f"--runtimes: unknown runtime {rt!r}; expected some of {', '.join(RUNTIME_MODULES)}")
        choose_runtime(spec, rt)  # installed, or BackendUnavailableError naming the package
    n_boot = DEFAULT_BOOTSTRAP if bootstrap is None else int(bootstrap)
    if n_boot == 1 or n_boot < 0:
        raise InputError(f"--bootstrap {n_boot}: an interval needs at least 2 resamples; pass 0 for none")
    if not 0.0 < level < 1.0:
        raise InputError(f"--level {level}: expected a confidence level strictly between 0 and 1")
    explicit = dict(weights or {})
    for ex_name, path in explicit.items():
        get_spec(ex_name)
        if not Path(path).is_file():
            raise InputError(f"--weights {ex_name}={path}: no such file")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a folder; name a folder to write the audit to")
    if figure and out_dir is not None:
        _matplotlib()  # before any work: a missing matplotlib fails in a second

    sources = {label: _decode(v, label, value_range=value_range, layout=layout, skip_bad=skip_bad)
               for label, v in (("real", real), ("fake", fake))}
    n_real, n_fake = len(sources["real"]), len(sources["fake"])
    if sample_sizes is not None:
        sizes = sorted({int(s) for s in sample_sizes})
        if len(sizes) < 2 or sizes[0] < 2 or sizes[-1] > n_fake:
            raise InputError(f"--sample-sizes {','.join(map(str, sample_sizes))}: expected at least 2 distinct "
                             f"sizes between 2 and the {n_fake} fake images")
    else:
        sizes = []

    plans: list[_Plan] = []
    for rt in rts:
        plans.append(_Plan(None, rt, DEFAULT_EXTRACTOR, tuple(spec.weights), spec.policy, {}))
        for name in names:
            plans.append(_plan_protocol(get_protocol(name), rt, explicit, download))

    weights_cache: dict[Any, Any] = {}
    networks: dict[tuple[str, str, str], Any] = {}
    features: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    passes: list[dict[str, Any]] = []
    pipe = {"batch_size": batch_size or DEFAULT_BATCH_SIZE, "workers": workers or DEFAULT_WORKERS,
            "progress": progress}
    from .pipeline import compute_features

    for plan in plans:
        if plan.reason:
            continue
        try:
            cw = _load_weights(plan, explicit, weights_cache)
            nkey = (plan.extractor, cw.digest, plan.runtime)
            if nkey not in networks:
                networks[nkey] = _build_extractor(plan.extractor, plan.runtime, cw, device, plan.policy)
        except (WeightsError, InputError) as exc:
            if plan.protocol is None:  # the shipped default: its failure is fidkit's or the input's, raise
                raise
            plan.reason = f"weights for {plan.extractor}: {exc}"
            continue
        plan.canonical = cw
        fkey = (*nkey, plan.policy)
        label = _row_label(plan)
        if fkey not in features:
            ex = networks[nkey].with_policy(plan.policy)
            features[fkey] = {side: compute_features(sources[side], ex, label=f"{side} [{label}]", **pipe)
                              for side in ("real", "fake")}
            passes.append({"extractor": plan.extractor, "weights_sha256": cw.digest, "runtime": plan.runtime,
                           "policy": plan.policy, "rows": []})
        next(p for p in passes if (p["extractor"], p["weights_sha256"], p["runtime"], p["policy"]) == fkey
             )["rows"].append(f"{label} ({plan.runtime})")

    default_settings = _default_settings()
    rows: list[AuditRow] = []
    infinity: dict[str, dict[str, Any]] = {}
    for plan in plans:
        row = _row(plan, features, default_settings, n_real, n_fake, n_boot, level, seed, __version__)
        rows.append(row)
        if sizes and row.status == "ok":
            fk = (plan.extractor, plan.canonical.digest, plan.runtime, plan.policy)
            ddof = 1 if plan.protocol is None else plan.protocol.fid_cov_ddof
            infinity[row.key] = infinity_points(features[fk]["real"].features, features[fk]["fake"].features,
                                                sizes, ddof, seed)
    result = AuditResult(tuple(rows), tuple(passes), {"real": n_real, "fake": n_fake}, infinity,
                         {"bootstrap": n_boot, "level": level, "seed": seed,
                          "sample_sizes": sizes or None, "runtimes": rts}, __version__)
    if out_dir is not None:
        result = AuditResult(result.rows, result.passes, result.decoded, result.infinity, result.settings,
                             result.fidkit_version, tuple(str(p) for p in write_outputs(result, out_dir, figure)))
    return result


def _row_label(plan: _Plan) -> str:
    return DEFAULT_ROW if plan.protocol is None else plan.protocol.label


def _row(plan: _Plan, features: Mapping[Any, Any], default_settings: Mapping[str, str], n_real: int,
         n_fake: int, n_boot: int, level: float, seed: int, version: str) -> AuditRow:
    """Returns the row of ``plan``: every metric under its protocol's conventions, from shared features."""
    p = plan.protocol
    settings = default_settings if p is None else _protocol_settings(p)
    base = {"protocol": _row_label(plan), "runtime": plan.runtime, "extractor": plan.extractor,
            "policy": plan.policy, "n_real": n_real, "n_fake": n_fake, "settings": dict(settings),
            "differs": "—" if p is None else _differs(settings, default_settings)}
    if plan.reason:
        return AuditRow(status="skipped", reason=plan.reason, skipped_metrics=dict(plan.skipped), **base)
    cw = plan.canonical
    fk = (plan.extractor, cw.digest, plan.runtime, plan.policy)
    fr, ff = features[fk]["real"], features[fk]["fake"]
    xr, xf = fr.features, ff.features
    skipped = dict(plan.skipped)
    notes: list[str] = []
    values: dict[str, Any] = {}
    ddof = 1 if p is None else p.fid_cov_ddof
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)  # small-sample warnings: one note per row instead
        values["fid"] = _fid_value(xr, xf, (lambda c, n: c) if p is None else p.fid_covariance)
    if min(n_real, n_fake) < xr.shape[1]:
        notes.append(f"fewer images than the {xr.shape[1]} feature dimensions: FID is dominated by its "
                     f"small-sample bias")
    if n_boot:
        values["fid_low"], values["fid_high"] = _fid_interval(xr, xf, ddof, n_boot, level, seed)
    if p is None:
        _default_metrics(xr, xf, ff.logits, seed, values, skipped, notes)
    else:
        _protocol_metrics(p, xr, xf, ff.logits, n_real, n_fake, values, skipped, notes)
    weights = cw.source if cw is not None else ""
    prov = (f"fidkit {version}; protocol {_row_label(plan)}; extractor {plan.extractor} (weights {weights}, "
            f"canonical digest {cw.digest[:16]}); runtime {plan.runtime}; resize policy {plan.policy}; "
            f"n = {n_real} real, {n_fake} fake"
            + (f"; FID interval from {n_boot} bootstrap resamples at {level:.0%}, seed {seed}" if n_boot else ""))
    return AuditRow(status="ok", weights=weights, weights_sha256=cw.digest, skipped_metrics=skipped,
                    notes=tuple(notes), provenance=prov, **base, **values)


def _default_metrics(xr: np.ndarray, xf: np.ndarray, logits: np.ndarray | None, seed: int,
                     values: dict[str, Any], skipped: dict[str, str], notes: list[str]) -> None:
    """Fills KID, IS and PR with `fidkit.score`'s defaults (its KID subset size rule, IS shuffle, PR k)."""
    from .inception_score import inception_score
    from .kid import kid, subsets_vary
    from .metrics import METRICS
    from .prdc import precision_recall

    kd = METRICS["kid"].defaults
    size = min(int(kd["subset_size"]), xr.shape[0], xf.shape[0])
    if size < int(kd["subset_size"]):
        notes.append(f"KID: subsets of {size}, the default {kd['subset_size']} reduced to the smaller sample")
    mean, std = kid(xr, xf, subsets=kd["subsets"], subset_size=size, seed=seed, labels=("real", "fake"))
    values["kid_mean"] = mean
    values["kid_std"] = std if subsets_vary(xr.shape[0], xf.shape[0], kd["subsets"], size) else None
    splits = int(METRICS["is"].defaults["splits"])
    if logits is None:
        skipped["is"] = "the extractor has no logits"
    elif logits.shape[0] < splits:
        skipped["is"] = f"{logits.shape[0]} fake images, fewer than the {splits} splits"
    else:
        values["is_mean"], values["is_std"] = inception_score(
            logits, splits=splits, shuffle_seed=METRICS["is"].defaults["shuffle_seed"], name="fake")
    pr = precision_recall(xr, xf, k=METRICS["pr"].defaults["k"])
    values["precision"], values["recall"] = float(pr.precision), float(pr.recall)


def _protocol_metrics(p: Any, xr: np.ndarray, xf: np.ndarray, logits: np.ndarray | None, n_real: int,
                      n_fake: int, values: dict[str, Any], skipped: dict[str, str], notes: list[str]) -> None:
    """Fills KID, IS and PR under protocol ``p``'s conventions (`fidkit.protocols.resolve`)."""
    from .inception_score import inception_score
    from .kid import kid_subset_values
    from .prdc import precision_recall
    from .protocols import resolve

    _, opts = resolve(p)
    for m in ("kid", "is", "pr"):
        if m not in skipped and m not in opts:
            skipped[m] = f"{p.tool} defines no {m.upper()}"
    if "kid" not in skipped:
        k = dict(opts["kid"])
        n_min = min(n_real, n_fake)
        rule = opts["kid_subset_size_rule"]
        size = {"fixed": k["subset_size"], "capped": min(n_min, k["subset_size"]),
                "n_over_subsets": min(k["subset_size"], n_min // k["subsets"])}[rule]
        if size < 2:
            skipped["kid"] = (f"subsets of n / {k['subsets']} = {size} images ({rule} rule): too few for KID "
                              f"with n = {n_min}")
        elif size > n_min:
            skipped["kid"] = (f"subsets of {size} ({rule} rule) need at least that many images per side; "
                              f"{n_min} here (the tool refuses)")
        else:
            a, b = (xr, xf) if opts["kid_inputs"] == ("real", "fake") else (xf, xr)
            k["subset_size"] = size
            vals = kid_subset_values(a, b, labels=opts["kid_inputs"], **k)
            values["kid_mean"] = float(vals.mean())
            std = p.kid.std
            values["kid_std"] = None if std == "none" else float(vals.std(ddof=1 if std == "ddof1" else 0))
            if p.kid.arithmetic == "float32":
                notes.append("KID: the tool evaluates the kernel in float32, fidkit in float64 (same subsets)")
    if "is" not in skipped:
        cfg = opts["is"]
        if logits is None:
            skipped["is"] = "the extractor has no logits"
        elif p.logits_bias:
            skipped["is"] = "the protocol's IS logits include the fc bias; fidkit's logits have none"
        else:
            try:
                splits = p.is_splits(logits.shape[0])
                if logits.shape[0] < splits:
                    raise InputError(f"{logits.shape[0]} fake images, fewer than the {splits} splits")
            except InputError as exc:
                skipped["is"] = str(exc)
            else:
                extra = {k: v for k, v in cfg.items() if k not in ("splits", "split_size")}
                mean, std = inception_score(logits, splits=splits, name="fake", **extra)
                values["is_mean"] = mean
                values["is_std"] = None if p.inception_score.std_ddof is None else std
    if "pr" not in skipped and opts["pr"].get("extractor"):
        skipped["pr"] = (f"{p.tool} computes PR on {opts['pr']['extractor']} features (a second network); "
                         f"`fidkit score --protocol {p.name} --metrics pr` computes it")
    if "pr" not in skipped:
        pr = precision_recall(xr, xf, k=opts["pr"]["k"], radius_inclusive=opts["pr"].get("radius_inclusive", False))
        values["precision"], values["recall"] = float(pr.precision), float(pr.recall)
    if p.seeds:
        notes.append(f"{p.tool} reports {p.aggregate} over seeds {', '.join(map(str, p.seeds))}; this row is "
                     f"one run (audit each seed's images to aggregate)")
    want = [f"{label} {v:,}" for label, v, n in (("real", p.samples.real, n_real), ("fake", p.samples.fake, n_fake))
            if v is not None and v != n]
    if want:
        notes.append(f"the protocol's published numbers use {' and '.join(want)} images")


# ------------------------------------------------------------------------------------------- tables

_HEADER = ("protocol", "runtime", "FID", "FID interval", "KID", "IS", "precision / recall", "n real / fake",
           "differs from the default")


def _num(v: float | None, fmt: str = ".5g") -> str:
    return "—" if v is None else format(v, fmt)


def table_rows(data: Mapping[str, Any]) -> list[list[str]]:
    """Returns the audit table (header first) from `AuditResult.to_dict` data: one line per row (a
    skipped row's reason is listed below the table by `markdown` and `text_table`)."""
    out = [list(_HEADER)]
    for r in data["rows"]:
        if r["status"] != "ok":
            out.append([r["protocol"], r["runtime"], "skipped", "—", "—", "—", "—", "—", r["differs"]])
            continue
        ci = f"[{_num(r['fid_low'])}, {_num(r['fid_high'])}]" if r["fid_low"] is not None else "—"
        kid = _num(r["kid_mean"]) + (f" ± {_num(r['kid_std'], '.2g')}" if r["kid_std"] is not None else "")
        isc = _num(r["is_mean"]) + (f" ± {_num(r['is_std'], '.2g')}" if r["is_std"] is not None else "")
        pr = f"{_num(r['precision'], '.3f')} / {_num(r['recall'], '.3f')}" if r["precision"] is not None else "—"
        out.append([r["protocol"], r["runtime"], _num(r["fid"]), ci, kid if r["kid_mean"] is not None else "—",
                    isc if r["is_mean"] is not None else "—", pr, f"{r['n_real']} / {r['n_fake']}", r["differs"]])
    return out


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(data: Mapping[str, Any]) -> str:
    """Returns the audit as Markdown: the table, then skipped metrics, notes, provenance and passes."""
    rows = table_rows(data)
    lines = [f"# fidkit audit (fidkit {data['fidkit_version']})", "",
             f"Images: {data['decoded']['real']} real, {data['decoded']['fake']} fake, each decoded once. "
             f"FID intervals: {data['settings']['bootstrap']} bootstrap resamples, level "
             f"{data['settings']['level']:.0%}, seed {data['settings']['seed']}.", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows[1:]]
    lines += ["", "## Per row", ""]
    for r in data["rows"]:
        lines.append(f"- **{r['key']}**: " + (r["provenance"] if r["status"] == "ok" else f"skipped: {r['reason']}"))
        for m, why in r["skipped_metrics"].items():
            lines.append(f"  - {m}: not computed — {why}")
        for n in r["notes"]:
            lines.append(f"  - note: {n}")
    lines += ["", "## Network passes", "",
              f"{len(data['passes'])} passes over both inputs, one per distinct (extractor, weights, runtime, "
              f"resize policy):", ""]
    for p in data["passes"]:
        lines.append(f"- {p['extractor']} ({p['weights_sha256'][:12]}), {p['runtime']}, {p['policy']}: "
                     f"{', '.join(p['rows'])}")
    if data.get("infinity"):
        lines += ["", "## FID against 1/N (fake sub-samples) and FID∞", "",
                  "| row | " + " | ".join(f"N = {s}" for s in data["settings"]["sample_sizes"])
                  + " | FID∞ | slope |", "|" + "---|" * (len(data["settings"]["sample_sizes"]) + 3)]
        for key, fit in data["infinity"].items():
            lines.append(f"| {key} | " + " | ".join(_num(v) for v in fit["fids"])
                         + f" | {_num(fit['fid_infinity'])} | {_num(fit['slope'])} |")
    return "\n".join(lines) + "\n"


def csv_text(data: Mapping[str, Any]) -> str:
    """Returns the audit rows as CSV: full-precision numbers, empty cells where there is no value."""
    cols = ("protocol", "runtime", "status", "reason", "fid", "fid_low", "fid_high", "kid_mean", "kid_std",
            "is_mean", "is_std", "precision", "recall", "n_real", "n_fake", "extractor", "weights",
            "weights_sha256", "policy", "differs")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in data["rows"]:
        w.writerow(["" if r[c] is None else repr(r[c]) if isinstance(r[c], float) else r[c] for c in cols])
    return buf.getvalue()


def text_table(data: Mapping[str, Any]) -> str:
    """Returns the table as aligned text (the last column unpadded), then one line per skipped row or metric."""
    rows = table_rows(data)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    for r in data["rows"]:
        if r["status"] != "ok":
            lines.append(f"skipped {r['key']}: {r['reason']}")
        else:
            lines += [f"{r['key']}: {m} not computed: {why}" for m, why in r["skipped_metrics"].items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- figure


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InputError("the audit figure needs matplotlib: pip install 'fidkit[audit]' (or pass "
                         "--no-figure)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Returns what the figure plots, read from `AuditResult.to_dict` data (``audit.json``).

    ``groups``: one per feature space (extractor) in table order, FIDs of different networks being on
    different scales, each {"extractor", "labels", "fid", "low", "high" (NaN without an interval),
    "default" (index of the default row in the group, or None), "infinity" ({row key: {"sizes", "fids",
    "fid_infinity", "slope"}} of the group's rows)}; ``labels``/``fid`` of every plotted row, in order.
    """
    ok = [r for r in data["rows"] if r["status"] == "ok" and r["fid"] is not None]
    nan = float("nan")
    infinity = dict(data.get("infinity") or {})
    groups = []
    for extractor in dict.fromkeys(r["extractor"] for r in ok):
        rows = [r for r in ok if r["extractor"] == extractor]
        groups.append({
            "extractor": extractor, "labels": [r["key"] for r in rows], "fid": [float(r["fid"]) for r in rows],
            "low": [nan if r["fid_low"] is None else float(r["fid_low"]) for r in rows],
            "high": [nan if r["fid_high"] is None else float(r["fid_high"]) for r in rows],
            "default": next((i for i, r in enumerate(rows) if r["protocol"] == DEFAULT_ROW), None),
            "infinity": {r["key"]: infinity[r["key"]] for r in rows if r["key"] in infinity}})
    return {"groups": groups, "labels": [r["key"] for r in ok], "fid": [float(r["fid"]) for r in ok]}


def plot(data: Mapping[str, Any]) -> Any:
    """Returns the matplotlib Figure of the audit (Agg backend), drawn from ``audit.json`` data.

    One row of panels per feature space (FIDs of different networks are on different scales): the FID
    under each protocol with its bootstrap interval, the default row's FID and interval shaded, each
    point labelled with its value; with FID∞ fits, beside it FID against 1/N with the fitted lines
    (FID∞ at 1/N = 0). Artists carry gids ("fid-G", "points-G-J", "fit-G-J") for checking.
    """
    plt = _matplotlib()
    fd = figure_data(data)
    groups = fd["groups"] or [{"extractor": "", "labels": [], "fid": [], "low": [], "high": [], "default": None,
                               "infinity": {}}]
    cols = 2 if any(g["infinity"] for g in groups) else 1
    heights = [max(2.0, 0.9 + 0.45 * len(g["labels"])) for g in groups]
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fidkit-audit"}):
        fig, axes = plt.subplots(len(groups), cols, figsize=(6.5 * cols, sum(heights) + 0.6), squeeze=False,
                                 gridspec_kw={"height_ratios": heights})
        for gi, g in enumerate(groups):
            ax = axes[gi][0]
            y = np.arange(len(g["labels"]))[::-1]
            fid, low, high = (np.asarray(g[k], dtype=np.float64) for k in ("fid", "low", "high"))
            err = np.vstack([fid - low, high - fid]).reshape(2, -1)
            if len(fid):
                ax.errorbar(fid, y, xerr=np.where(np.isfinite(err), err, 0.0), fmt="o", color="C0", ecolor="C0",
                            capsize=3, gid=f"fid-{gi}")
            if g["default"] is not None:
                i = g["default"]
                ax.axvline(fid[i], color="C1", lw=1, ls="--", gid=f"default-fid-{gi}")
                if np.isfinite(low[i]):
                    ax.axvspan(low[i], high[i], color="C1", alpha=0.15, gid=f"default-interval-{gi}")
            for yi, v in zip(y, fid, strict=True):
                ax.annotate(f"{v:.4g}", (v, yi), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=7)
            ax.set_yticks(y, g["labels"])
            ax.set_ylim(-0.7, max(len(y) - 0.3, 0.7))
            ax.set_xlabel(f"FID on {g['extractor']} features ({data['settings']['level']:.0%} bootstrap interval)")
            if gi == 0:
                ax.set_title("FID under each protocol")
            if cols == 2:
                ax2 = axes[gi][1]
                for j, (key, fit) in enumerate(g["infinity"].items()):
                    inv = 1.0 / np.asarray(fit["sizes"], dtype=np.float64)
                    ax2.plot(inv, fit["fids"], "o", color=f"C{j % 10}", label=key, gid=f"points-{gi}-{j}")
                    line = np.linspace(0.0, inv.max(), 20)
                    ax2.plot(line, fit["fid_infinity"] + fit["slope"] * line, "-", color=f"C{j % 10}", lw=1,
                             gid=f"fit-{gi}-{j}")
                ax2.set_xlabel("1 / N (fake images)")
                ax2.set_ylabel("FID")
                ax2.set_xlim(left=0.0)
                if g["infinity"]:
                    ax2.legend(fontsize=7)
                if gi == 0:
                    ax2.set_title("FID against 1/N; FID∞ at 1/N = 0")
        fig.tight_layout()
    return fig


def write_figure(data: Mapping[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """Returns the paths of ``stem``.png and ``stem``.svg after drawing `plot` (data from ``audit.json``)."""
    plt = _matplotlib()
    fig = plot(data)
    paths = []
    try:
        for ext in ("png", "svg"):
            final = Path(f"{stem}.{ext}")
            with atomic_path(final) as tmp, plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fidkit-audit"}):
                fig.savefig(tmp, format=ext, dpi=120, metadata={"Date": None} if ext == "svg" else None)
            paths.append(final)
    finally:
        plt.close(fig)
    return paths[0], paths[1]


def write_outputs(result: AuditResult, out_dir: str | Path, figure: bool = True) -> list[Path]:
    """Returns the files written under ``out_dir``: audit.md, audit.csv, audit.json (then the figure
    drawn from that JSON, re-read from disk: what is plotted is what the JSON says)."""
    out_dir = Path(out_dir)
    data = result.to_dict()
    written = []
    for ext, text in (("md", markdown(data)), ("csv", csv_text(data)),
                      ("json", json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")):
        final = out_dir / f"{OUTPUT_STEM}.{ext}"
        with atomic_path(final) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(final)
    if figure:
        saved = json.loads((out_dir / f"{OUTPUT_STEM}.json").read_text(encoding="utf-8"))
        written.extend(write_figure(saved, out_dir / OUTPUT_STEM))
    return written


# ---------------------------------------------------------------------------------------------- CLI


def _weights_option(text: str, protocols: str) -> dict[str, str]:
    """Returns {extractor: file} for ``--weights``: ``EXTRACTOR=FILE``; or ``FILE`` for the extractor whose
    registered weights files include its name, else for the one network of the chosen protocols; raises
    `InputError` when that is ambiguous."""
    from .protocols import get_protocol
    from .registry import available_extractors, get_spec

    name, sep, path = text.partition("=")
    if sep and name in available_extractors():
        return {name: path}
    base = Path(text).name
    by_name = [e for e in available_extractors() if base in get_spec(e).weights]
    networks = sorted({get_protocol(n).extractor for n in _protocol_names(protocols)})
    chosen = by_name or networks
    if len(chosen) != 1:
        raise InputError(f"--weights {text}: the chosen protocols run {', '.join(networks) or 'no network'}; "
                         f"say which one the file is for: --weights EXTRACTOR=FILE (e.g. "
                         f"--weights inception-tf2015={text})")
    return {chosen[0]: text}


def _sizes_option(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sample-sizes {text}: expected whole numbers separated by commas, "
                                         f"e.g. 100,200,400") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--sample-sizes {text}: expected at least 2 sizes to fit a line")
    return sizes


def add_cli(subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
            ) -> argparse.ArgumentParser:
    """Returns the ``audit`` parser after adding it to ``subparsers`` (with ``parents``' options, e.g. --json).

    Sets ``func``: ``args.func(args)`` runs the audit, prints the table (or JSON with --json) and returns
    0; bad input raises `InputError`, which fidkit's CLI prints as one line, exiting with status 2.
    """
    p = subparsers.add_parser(
        "audit", parents=list(parents), help="the pair under every protocol: the spread against the interval",
        description="Compute REAL against FAKE under every evaluation protocol (docs/protocols.md) and runtime, "
                    "decoding each input once and running each distinct network once; print the table and "
                    "write it (Markdown, CSV, JSON) with a figure to --out. The fidkit-default row (the "
                    "shipped MNIST extractor) always runs; protocols that cannot run here are listed as "
                    "skipped with the reason.")
    p.add_argument("real", help="real/reference images: folder, zip or image array")
    p.add_argument("fake", help="generated images: folder, zip or image array")
    p.add_argument("--protocols", default="all", metavar="all|none|A,B",
                   help="protocols to compute (default: all); fidkit-default always runs")
    p.add_argument("--runtimes", default=None, metavar="R1,R2",
                   help="runtimes to compute each row on, e.g. torch,tf,jax (default: the first installed)")
    p.add_argument("--out", metavar="DIR", help="folder to write audit.md, audit.csv, audit.json, audit.png, audit.svg")
    p.add_argument("--sample-sizes", type=_sizes_option, metavar="N1,N2,...",
                   help="also FID of fake sub-samples of these sizes against 1/N, with the FID∞ fit")
    p.add_argument("--download", action="store_true",
                   help="download protocols' weights files that are not found locally (default: skip them)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help="bootstrap resamples for the FID intervals (default as fidkit score; 0: none)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of unfixed KID draws (default 0)")
    p.add_argument("--no-figure", dest="figure", action="store_false", help="write no figure (no matplotlib)")
    p.set_defaults(func=_cmd_audit)
    return p


def _cmd_audit(args: argparse.Namespace) -> int:
    for opt, dest, instead in (("--extractor", "extractor", "--protocols"), ("--resize", "resize", "--protocols"),
                               ("--protocol", "protocol", "--protocols"), ("--runtime", "runtime", "--runtimes")):
        if getattr(args, dest, None) is not None:
            raise InputError(f"{opt}: `fidkit audit` runs every protocol's own setting; choose with {instead}")
    if getattr(args, "checkpoint", None):
        raise InputError("--checkpoint: `fidkit audit` keeps its decoded images and features in memory and "
                         "does not checkpoint; drop --checkpoint")
    weights = _weights_option(args.weights, args.protocols) if getattr(args, "weights", None) else {}
    pipe = {k: getattr(args, k) for k in ("batch_size", "workers", "value_range", "layout", "skip_bad")
            if hasattr(args, k)}
    result = audit(args.real, args.fake, args.protocols, args.runtimes, sample_sizes=args.sample_sizes,
                   out=args.out, weights=weights, download=args.download, device=getattr(args, "device", None) or "cpu",
                   bootstrap=args.bootstrap, level=args.level, seed=args.seed,
                   progress=getattr(args, "progress", False), figure=args.figure, **pipe)
    if getattr(args, "json", False):
        print(json.dumps({**result.to_dict(), "files": list(result.files)}, indent=1, sort_keys=True))
    else:
        print(result.text(), end="")
        if result.files:
            print("wrote " + ", ".join(result.files))
    return 0


__all__ = ["AuditResult", "AuditRow", "DEFAULT_ROW", "add_cli", "audit", "csv_text", "figure_data", "infinity_points",
           "markdown", "plot", "protocol_fid", "table_rows", "text_table", "write_figure", "write_outputs"]
