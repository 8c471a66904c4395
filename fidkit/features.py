"""Feature files: features (N, d), logits (N, k), the inputs' names and provenance, as one .npz.

`FeatureResult` is what `fidkit.compute_features` returns and `fidkit features` writes; `load_features`
reads fidkit's own files, clean-fid's (``feats``) and plain 2-D arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import npfile
from .stats import Provenance, Stats, _atomic_savez

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


def load_features(path: str | os.PathLike[str]) -> FeatureResult:
    """Returns the features stored in a .npy (2-D array) or .npz (``features`` or clean-fid ``feats``).

    Raises `InputError` (from `fidkit.npfile`) for a file that holds no features, naming what it holds.
    """
    info = npfile.require(path, "features")
    arrays = npfile.read(info, [k for k in info.arrays if not info.arrays[k].pickled])
    feats = arrays[info.main or "features"]
    logits = arrays.get("logits")
    names = [str(n) for n in arrays["names"]] if "names" in arrays else [str(i) for i in range(len(feats))]
    prov = (Provenance.from_json(str(arrays["provenance"]), str(info.path)) if "provenance" in arrays
            else Provenance())
    return FeatureResult(feats, logits, names, prov)
