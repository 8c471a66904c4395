"""Feature files: features (N, d), logits (N, k), the inputs' names and provenance, as one .npz.

`FeatureResult` is what `fidkit.compute_features` returns and `fidkit features` writes; `load_features`
reads fidkit's own files, clean-fid's (``feats``) and plain 2-D arrays.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
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


