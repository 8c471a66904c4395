"""What an input is (statistics, features or images) and what each side of a comparison provides.

`classify` decides by content, before any image is decoded; `check_inputs` refuses a request that the
inputs cannot meet (KID from statistics, an unknown metric, a missing file) in a second, not after
minutes of feature extraction; `operand` turns an input into an `Operand` (statistics and/or features).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import npfile
from .errors import FidkitError, InputError
from .extraction import Extractor
from .features import FeatureResult, load_features
from .metrics import get_metric, needs_features, parse_metrics
from .pipeline import _as_extractor, compute_features, compute_stats
from .stats import Provenance, Stats
from .stats import load as load_stats

#: The fix named when a metric needs features and only statistics were given.
STATS_FIX = "pass images or a features file, or score only what statistics allow: --metrics fid"


@dataclass(frozen=True, eq=False)
class Operand:
    """One side of a comparison: whatever of stats, features, logits it provides, and its size."""

    label: str
    stats: Stats | None = None
    features: FeatureResult | None = None

    @property
    def provenance(self) -> Provenance:
        """The provenance of the features, else of the statistics, else unknown."""
        if self.features is not None:
            return self.features.provenance
        return self.stats.provenance if self.stats is not None else Provenance()

    @property
    def n(self) -> int | None:
        """The number of images behind this side; None when a statistics file did not record it."""
        if self.features is not None:
            return len(self.features.features)
        return self.stats.n if self.stats is not None else None

    def get_stats(self) -> Stats:
        """Returns the statistics (computed from the features when no file gave them)."""
        if self.stats is not None:
            return self.stats
        if self.features is None:
            raise FidkitError(f"{self.label}: holds neither statistics nor features")
        return Stats.from_features(self.features.features, self.features.provenance, label=self.label)

    @property
    def dim(self) -> int:
        """The feature dimension (of the features, else of the statistics)."""
        if self.features is not None:
            return int(self.features.features.shape[1])
        return self.get_stats().dim

    def need_features(self, metric: str) -> FeatureResult:
        """Returns the features; raises `InputError` naming ``metric`` when only statistics were given."""
        if self.features is None:
            raise InputError(f"{self.label}: {metric} needs features, but only mean/covariance "
                             f"statistics were given; {STATS_FIX}")
        return self.features

    def need_logits(self, metric: str) -> np.ndarray:
        """Returns the (N, k) logits; raises `InputError` naming ``metric`` when there are none."""
        logits = self.need_features(metric).logits
        if logits is None:
            raise InputError(f"{self.label}: {metric} needs logits, and this features file has none; "
                             f"recompute with `fidkit features` or pass images")
        return logits


def classify(value: Any) -> str:
    """Returns 'stats', 'features' or 'images': what kind of input ``value`` is.

    Files are told by content (`fidkit.npfile`): a numpy file that is none of the three (statistics
    under other names, a pickled object) raises `InputError` saying what was found and expected.
    """
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
        kind = npfile.container(p) if p.is_file() else None  # by content; a damaged .npy/.npz says how
        if kind in ("npy", "npz") or (kind is None and p.is_file() and p.suffix.lower() in (".npy", ".npz")):
            return npfile.require(p, "stats", "features", "images").kind
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


def check_inputs(real: Any, fake: Any, metrics: Sequence[str],
                 bootstrap: int = 0) -> tuple[list[str], bool, bool]:
    """Returns (kinds of real and fake, whether real needs features, whether fake does); raises early.

    Called before any image is decoded, so a request that cannot be met (KID from statistics, an
    unknown metric, a missing file) fails in a second, not after minutes of feature extraction.
    """
    metrics = parse_metrics(metrics)
    kinds = [classify(v) for v in (real, fake)]
    need_real = needs_features(metrics, "real")
    need_fake = needs_features(metrics, "fake", bootstrap=bootstrap > 0)
    for label, kind, needed in (("real", kinds[0], need_real), ("fake", kinds[1], need_fake)):
        if needed and kind == "stats":
            wants = [m for m in metrics if get_metric(m).needs != "stats" and label in get_metric(m).inputs]
            fix = STATS_FIX if wants else "pass images or a features file, or --bootstrap 0 (no intervals)"
            wants = wants or ["bootstrap intervals"]
            verb = "needs" if len(wants) == 1 else "need"
            raise InputError(f"{label}: {', '.join(wants)} {verb} features, but only mean/covariance "
                             f"statistics were given; {fix}")
    return kinds, need_real, need_fake


