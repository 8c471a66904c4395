"""The metrics by name: what each computes, what it needs, its defaults and its source, written once.

`fidkit.scoring.score`, the command line and everything after look metrics up here; no metric name or
default is written anywhere else. A metric needs, of each input it reads (``inputs``):

* ``"stats"``: mean and covariance (images, features or a statistics file will do);
* ``"features"``: the feature rows (images or a features file);
* ``"logits"``: the classifier logits (images, or a features file that kept them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``name`` (as on the command line), how it prints, where its function lives
    (``"module:function"``), what it needs of which inputs, its keyword defaults and its source."""

    name: str
    title: str
    function: str
    needs: str
    inputs: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    #: the result's keys, for metrics that return several numbers
    keys: tuple[str, ...] = ()


_METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Returns ``spec`` after adding it to the registry; raises `InputError` for a taken name."""
    if spec.name in _METRICS and _METRICS[spec.name] != spec:
        raise InputError(f"metric {spec.name!r} is already registered")
    _METRICS[spec.name] = spec
    return spec


register_metric(MetricSpec(
    "fid", "FID", "fidkit.frechet:frechet_distance", "stats", ("real", "fake"),
    reference="Heusel et al., NeurIPS 2017"))
register_metric(MetricSpec(
    "kid", "KID", "fidkit.kid:kid", "features", ("real", "fake"),
    defaults={"subsets": 100, "subset_size": 1000},
    reference="Bińkowski et al., ICLR 2018"))
register_metric(MetricSpec(
    "is", "IS", "fidkit.inception_score:inception_score", "logits", ("fake",),
    defaults={"splits": 10, "shuffle_seed": 2020},
    reference="Salimans et al., NeurIPS 2016; rows permuted first as torch-fidelity (shuffle_seed=None: "
              "the original consecutive splits)"))
register_metric(MetricSpec(
    "pr", "precision/recall", "fidkit.prdc:precision_recall", "features", ("real", "fake"),
    defaults={"k": 3}, reference="Kynkäänniemi et al., NeurIPS 2019", keys=("precision", "recall")))
register_metric(MetricSpec(
    "dc", "density/coverage", "fidkit.prdc:density_coverage", "features", ("real", "fake"),
    defaults={"k": 5}, reference="Naeem et al., ICML 2020", keys=("density", "coverage")))
register_metric(MetricSpec(
    "cmmd", "CMMD", "fidkit.cmmd:cmmd", "features", ("real", "fake"),
    defaults={"sigma": 10.0, "scale": 1000.0},
    reference="Jayasumana et al., CVPR 2024: biased MMD² with a Gaussian RBF kernel (sigma 10) x 1000, on "
              "CLIP ViT-L/14@336px embeddings (the clip-vitl14-336 extractor)"))

# sFID (fidkit.sfid): FID's formula on the spatial statistics of inception-tf2015's "spatial" output, which
# fidkit.score collects in the same pass as pool3 ("stats": statistics suffice, given as spatial=)
register_metric(MetricSpec(
    "sfid", "sFID", "fidkit.frechet:frechet_distance", "stats", ("real", "fake"),
    reference="Nash et al., ICML 2021, as openai/guided-diffusion's evaluator: mixed_6/conv, first 7 "
              "channels, 17x17x7 = 2023-d"))

#: The registry, read-only: name -> `MetricSpec`, in the order results are printed.
METRICS: Mapping[str, MetricSpec] = MappingProxyType(_METRICS)
#: Bootstrap resamples behind the intervals of `fidkit.score` and ``fidkit score`` when none are asked
#: for (0: point values only; a statistics file as the generated input has nothing to resample).
DEFAULT_BOOTSTRAP = 100
#: What `fidkit.score` and ``fidkit score`` compute when no metrics are named.
DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "is", "pr", "dc")


#: The command-line flag of each metric option, by its Python argument name (``dc_k`` is density/coverage's
#: ``k``). Errors from the metric functions name the flag and the argument, so that one message serves the
#: command line and Python: "pass --splits 3 or fewer (splits= in Python)".
FLAGS: Mapping[str, str] = MappingProxyType({
    "splits": "--splits", "subsets": "--subsets", "subset_size": "--subset-size", "k": "--k",
    "dc_k": "--dc-k", "n_boot": "--bootstrap", "level": "--level", "seed": "--seed",
    "value_range": "--range", "metrics": "--metrics", "cmmd_sigma": "--cmmd-sigma", "cmmd_scale": "--cmmd-scale",
    "protocol": "--protocol",
})


def flag(arg: str, metric: str | None = None) -> str:
    """Returns the command-line flag that sets argument ``arg`` of ``metric`` (``k`` of "dc" is
    ``--dc-k``); an argument without a flag is returned as ``arg=``, its Python spelling."""
    if metric == "dc" and arg == "k":
        arg = "dc_k"
    return FLAGS.get(arg, f"{arg}=")


def get_metric(name: str) -> MetricSpec:
    """Returns the registered metric ``name``; raises `InputError` naming the known ones."""
    try:
        return _METRICS[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r}; expected some of {', '.join(_METRICS)} "
                         f"(--metrics)") from None


def parse_metrics(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    """Returns metric names in registry order from ``"fid"``, ``"fid,kid"`` or a sequence of names
    (None: `DEFAULT_METRICS`); a single string is one metric or a comma-separated list, never letters.
    Raises `InputError` for an unknown or empty choice."""
    if metrics is None:
        return DEFAULT_METRICS
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    names = [m for m in names if m]
    if not names:
        raise InputError(f"no metric was named; expected some of {', '.join(_METRICS)} (--metrics)")
    for m in names:
        get_metric(m)
    return tuple(m for m in _METRICS if m in names)


def needs_features(metrics: Sequence[str], side: str, *, bootstrap: bool = False) -> bool:
    """Returns whether any of ``metrics`` needs feature rows (or logits) of input ``side``
    ('real' or 'fake'); a bootstrap of FID resamples the fake features."""
    for m in metrics:
        spec = get_metric(m)
        if side in spec.inputs and spec.needs != "stats":
            return True
    return bootstrap and side == "fake" and "fid" in metrics


def load_function(name: str) -> Any:
    """Returns the function computing metric ``name``, imported only when that metric is asked for."""
    from .registry import load_object

    return load_object(get_metric(name).function)


__all__ = ["DEFAULT_METRICS", "FLAGS", "METRICS", "flag", "MetricSpec", "get_metric", "load_function", "needs_features",
           "parse_metrics", "register_metric"]
