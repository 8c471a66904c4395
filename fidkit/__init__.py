"""fidkit: FID, IS, KID, precision/recall and density/coverage that agree across PyTorch, TensorFlow and JAX.

Importing fidkit never imports torch, tensorflow or jax; a runtime is imported when an extractor on it
is built.
"""

from __future__ import annotations

from ._version import __version__
from .adapters import from_jax, from_keras, from_torch, load_extractor
from .bootstrap import (
    ConfidenceInterval,
    MeanStd,
    bootstrap_fid,
    bootstrap_kid,
    bootstrap_prdc,
    mean_std,
    over_seeds,
)
from .cmmd import cmmd
from .errors import (
    BackendUnavailableError,
    FidkitError,
    FidkitWarning,
    InputError,
    NumericalError,
    ProvenanceMismatchError,
    WeightsError,
)
from .extraction import Extractor, InputConvention, extractor, preprocess
from .features import FeatureResult, load_features
from .frechet import FrechetReference, frechet_distance, frechet_distance_features
from .images import ImageSource, open_source
from .inception_score import inception_score
from .infinity import InfinityResult, fid_infinity, is_infinity
from .kid import kid
from .mnist_data import load_mnist
from .prdc import PRDC, DensityCoverage, PrecisionRecall, density_coverage, prdc, precision_recall
from .registry import ExtractorSpec, available_extractors, get_spec, register_extractor
from .resize import ResizePolicy, available_policies, get_policy, register_policy, resize
from .scoring import compute_features, compute_stats, score
from .stats import Provenance, Stats, StatsAccumulator, check_compatible
from .stats import load as load_stats
from .weights import CanonicalWeights, canonical_digest, resolve_weights

__all__ = [
    "__version__",
    "BackendUnavailableError",
    "FidkitError",
    "FidkitWarning",
    "InputError",
    "NumericalError",
    "ProvenanceMismatchError",
    "WeightsError",
    "ConfidenceInterval",
    "MeanStd",
    "bootstrap_fid",
    "bootstrap_kid",
    "bootstrap_prdc",
    "cmmd",
    "mean_std",
    "over_seeds",
    "FrechetReference",
    "frechet_distance",
    "frechet_distance_features",
    "ImageSource",
    "open_source",
    "inception_score",
    "InfinityResult",
    "fid_infinity",
    "is_infinity",
    "kid",
    "FeatureResult",
    "compute_features",
    "compute_stats",
    "load_features",
    "score",
    "PRDC",
    "DensityCoverage",
    "PrecisionRecall",
    "density_coverage",
    "prdc",
    "precision_recall",
    "Extractor",
    "InputConvention",
    "ExtractorSpec",
    "available_extractors",
    "extractor",
    "get_spec",
    "register_extractor",
    "ResizePolicy",
    "available_policies",
    "get_policy",
    "preprocess",
    "register_policy",
    "resize",
    "Provenance",
    "Stats",
    "StatsAccumulator",
    "check_compatible",
    "load_stats",
    "CanonicalWeights",
    "from_jax",
    "from_keras",
    "from_torch",
    "load_extractor",
    "load_mnist",
    "canonical_digest",
    "resolve_weights",
]
