"""Feature statistics with provenance: the mean and covariance that FID compares, and where they came from.

The Fréchet Inception Distance (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium", NeurIPS 2017) compares two Gaussians fitted to features. A `Stats` holds one
such fit — sample count, mean and unbiased covariance in float64 — together with a `Provenance` that says
which extractor, weights and resize policy produced the features, so that statistics computed under
different conditions are never compared silently.

Moments are accumulated with the pairwise update of Chan, Golub and LeVeque ("Algorithms for computing
the sample variance: analysis and recommendations", The American Statistician 37(3), 1983): centred sums
of squares are combined exactly, never the raw sum of outer products, which loses precision when the
mean is large compared with the spread.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import npfile
from ._atomic import atomic_path
from ._validate import covariance
from .errors import FidkitWarning, InputError, ProvenanceMismatchError
from .frechet import _accept_rounded, _storage_rounding

if TYPE_CHECKING:
    from .extraction import Extractor

UNKNOWN = "unknown"
#: `Provenance.protocol` of features fidkit computed without ``--protocol`` (``protocol=``).
NO_PROTOCOL = "none"
FORMAT = npfile.STATS_FORMAT

#: Provenance fields that must agree for two statistics to be comparable, with their names in messages.
_COMPARED = {
    "extractor": "extractors",
    "weights_sha256": "weights (SHA-256)",
    "resize_policy": "resize policies",
    "input_size": "network input sizes",
}


@dataclass(frozen=True)
class Provenance:
    """How features were computed; ``"unknown"`` where a file from another tool does not say.

    ``protocol`` is the evaluation protocol's label (``"torch-fidelity@1"``, `fidkit.protocols`) the
    features were computed under, ``"none"`` (`NO_PROTOCOL`) when fidkit computed them without one, and
    ``"unknown"`` in files written before the field existed or by other tools.
    """

    extractor: str = UNKNOWN
    runtime: str = UNKNOWN
    weights_sha256: str = UNKNOWN
    weights_source: str = UNKNOWN
    resize_policy: str = UNKNOWN
    input_size: str = UNKNOWN
    fidkit_version: str = UNKNOWN
    description: str = ""
    protocol: str = UNKNOWN

    @classmethod
    def from_extractor(cls, ex: Extractor, description: str = "", protocol: str = NO_PROTOCOL) -> Provenance:
        """Returns the provenance of features computed by extractor ``ex`` (under ``protocol``, a label)."""
        from ._version import __version__

        h, w = ex.input_size
        return cls(extractor=ex.name, runtime=ex.runtime,
                   weights_sha256=ex.weights_sha256 or UNKNOWN,
                   weights_source=ex.weights_source or UNKNOWN,
                   resize_policy=ex.policy.name, input_size=f"{h}x{w}",
                   fidkit_version=__version__, description=description, protocol=protocol)

    @property
    def unknown_fields(self) -> list[str]:
        """Returns the compared fields whose value is unknown."""
        return [f for f in _COMPARED if getattr(self, f) == UNKNOWN]

    def to_json(self) -> str:
        """Returns the provenance as a JSON object string."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "provenance") -> Provenance:
        """Returns the provenance parsed from ``to_json`` output."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: provenance is not valid JSON ({exc}); re-create the file "
                             f"with `fidkit stats`") from None
        if not isinstance(raw, dict):
            raise InputError(f"{where}: provenance must be a JSON object, found {type(raw).__name__}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in raw.items() if k in names})


def _validate(n: int | None, mean: np.ndarray, cov: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean)
    cov = np.asarray(cov)
    if (_storage_rounding(mean) is not None or _storage_rounding(cov) is not None) and mean.ndim == 1 \
            and cov.shape == (mean.shape[0], mean.shape[0]):
        # float16 storage: PSD to within its rounding is accepted, with a warning bounding the cost
        mean, cov = _accept_rounded(mean, cov, f"{where}: mean", f"{where}: covariance")
    if mean.ndim != 1:
        raise InputError(f"{where}: mean must be 1-D (d,), found shape {mean.shape}")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise InputError(f"{where}: covariance must have shape {(d, d)} to match the mean, "
                         f"found {cov.shape}")
    for name, arr in (("mean", mean), ("covariance", cov)):
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{where}: {name} must be real numbers, found dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: {name} contains NaN or infinity; recompute the statistics "
                             f"from finite features")
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 2):
        raise InputError(f"{where}: sample count must be an integer >= 2 (a covariance needs two "
                         f"samples), found {n!r}")
    mean = np.array(mean, dtype=np.float64)
    try:  # symmetric (rounding-level asymmetry averaged away), non-negative variances
        cov = np.array(covariance(cov, "covariance", d), dtype=np.float64)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    mean.setflags(write=False)
    cov.setflags(write=False)
    return mean, cov


@dataclass(frozen=True, eq=False)
class Stats:
    """Sample count, float64 mean (d,) and covariance (d, d) divided by n - 1, with their provenance.

    ``n`` is None for statistics read from files that do not record it (pytorch-fid, TTUR, clean-fid);
    such statistics can be compared but not merged.
    """

    n: int | None
    mean: np.ndarray
    cov: np.ndarray
    provenance: Provenance = Provenance()

    def __post_init__(self) -> None:
        mean, cov = _validate(self.n, self.mean, self.cov, "Stats")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)
        if self.n is not None:
            object.__setattr__(self, "n", int(self.n))

    def __repr__(self) -> str:
        p = self.provenance
        return (f"Stats(n={self.describe_n}, d={self.dim}, extractor={p.extractor!r}, "
                f"resize_policy={p.resize_policy!r}, protocol={p.protocol!r})")

    @property
    def describe_n(self) -> str:
        """Returns the sample count as text: ``"10000"``, or ``"unknown"`` when the file did not record it."""
        return UNKNOWN if self.n is None else str(self.n)

    @property
    def dim(self) -> int:
        """Returns the feature dimension d."""
        return int(self.mean.shape[0])

    @classmethod
    def from_features(cls, features: np.ndarray, provenance: Provenance = Provenance(), *,
                      label: str | None = None) -> Stats:
        """Returns the statistics of an (N, d) feature array, N >= 2 (``label`` names the input in errors).

        A memory-mapped array (`fidkit.featurestore`'s spill file) is read in blocks of `FLUSH_ROWS` rows,
        so that it is never copied whole into float64 (equal to the one-block result to float64 rounding).
        """
        from .featurestore import blocks, is_mapped

        acc = StatsAccumulator(provenance, label=label)
        if is_mapped(features):
            for _, block in blocks(features, StatsAccumulator.FLUSH_ROWS * 4):
                acc.update(block)
        else:
            acc.update(features)
        return acc.stats()

    def merge(self, other: Stats) -> Stats:
        """Returns the statistics of the union of both samples (exact pooled moments)."""
        if not isinstance(other, Stats):
            raise InputError(f"Stats.merge: expected Stats, received {type(other).__name__}")
        if self.n is None or other.n is None:
            raise InputError("Stats.merge: statistics without a sample count (read from a pytorch-fid "
                             "or clean-fid file) cannot be merged; recompute them with fidkit")
        if self.dim != other.dim:
            raise InputError(f"Stats.merge: feature dimensions differ ({self.dim} vs {other.dim})")
        for name, label in _COMPARED.items():
            va, vb = getattr(self.provenance, name), getattr(other.provenance, name)
            if va != vb:
                raise ProvenanceMismatchError(f"Stats.merge: the shards were computed with different "
                                              f"{label} ({va} vs {vb}); merge only shards of one run")
        n, mean, m2 = _combine(self.n, self.mean, self.cov * (self.n - 1),
                               other.n, other.mean, other.cov * (other.n - 1))
        return Stats(n, mean, m2 / (n - 1), self.provenance)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Stats:
        """Returns the statistics stored at ``path`` (see `fidkit.stats.load` for the formats read)."""
        return load(path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Returns the path written: ``path``, with ".npz" appended if it lacks it, as ``numpy.savez`` does.

        Writes atomically (via a temp file) an .npz holding ``mu`` (d,) and ``sigma`` (d, d) float64 like
        pytorch-fid's, so other tools read it too, plus ``format``, ``n`` (-1 when unknown) and
        ``provenance`` (JSON).
        """
        arrays = {"format": np.array(FORMAT), "mu": self.mean, "sigma": self.cov,
                  "n": np.array(-1 if self.n is None else self.n, dtype=np.int64),
                  "provenance": np.array(self.provenance.to_json())}
        return _atomic_savez(path, arrays)


def _combine(na: int, ma: np.ndarray, m2a: np.ndarray, nb: int, mb: np.ndarray,
             m2b: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Returns (n, mean, centred sum of squares) of two pooled samples (Chan et al. 1983, eq. 2.1b)."""
    n = na + nb
    delta = mb - ma
    mean = ma + delta * (nb / n)
    m2 = m2a + m2b + np.outer(delta, delta) * (na * nb / n)
    return n, mean, m2


def _atomic_savez(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Returns the path written: ``path`` with ".npz" appended unless it ends so (exactly ``numpy.savez``'s
    rule), after writing ``arrays`` there atomically."""
    name = os.fspath(path)
    final = Path(name if name.endswith(".npz") else name + ".npz")
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return final


def _gram_upper(xc: np.ndarray) -> np.ndarray:
    """Returns xcᵀ xc (d, d) with only its upper triangle computed: BLAS syrk, half a GEMM's work."""
    from scipy.linalg.blas import dsyrk

    # xc is C-ordered (B, d), so xc.T is the Fortran-ordered (d, B) operand syrk reads without a copy
    return dsyrk(1.0, np.ascontiguousarray(xc).T, trans=0, lower=0)


def _mirror_upper(m: np.ndarray, block: int = 256) -> np.ndarray:
    """Returns a copy of ``m`` with its strict lower triangle replaced by the upper one's transpose: an
    exactly symmetric matrix, in cache-sized blocks (3x faster than ``np.triu(m) + np.triu(m, 1).T`` at
    d = 2048, which was most of a short run's fixed cost)."""
    out = np.array(m, dtype=np.float64)
    d = out.shape[0]
    for i in range(0, d, block):
        diag = out[i:i + block, i:i + block]
        lower = np.tril_indices(diag.shape[0], -1)
        diag[lower] = diag.T[lower]
        for j in range(i + block, d, block):
            out[j:j + block, i:i + block] = out[i:i + block, j:j + block].T
    return out


class StatsAccumulator:
    """Streams (B, d) feature batches into running centred moments; memory O(d²) whatever N is.

    Small batches are pooled until `FLUSH_ROWS` rows (at most that many rows are held), then their
    centred Gram matrix is one BLAS ``syrk`` (the upper triangle only: the updates are symmetric) and is
    merged into the running sums in place with Chan's update; `stats` mirrors the triangle, so the
    covariance is exactly symmetric.
    """

    #: Rows pooled before one update: amortises the O(d²) merge over many small pipeline batches.
    FLUSH_ROWS = 1024

    def __init__(self, provenance: Provenance = Provenance(), *, label: str | None = None) -> None:
        self.provenance = provenance
        #: the input's name in errors ("real", "fake", a path); None: the class's own name
        self.label = label
        self.n = 0
        self._dim: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._n_merged = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> StatsAccumulator:
        """Returns self after adding the rows of a (B, d) feature batch."""
        x = np.asarray(batch)
        if x.ndim != 2:
            raise InputError(f"StatsAccumulator.update: features must be 2-D (N, d), found shape {x.shape}")
        if self._dim is not None and x.shape[1] != self._dim:
            raise InputError(f"StatsAccumulator.update: batch has {x.shape[1]} features, earlier batches "
                             f"had {self._dim}")
        if x.shape[0] == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise InputError("StatsAccumulator.update: features contain NaN or infinity; check the "
                             "images and the extractor")
        self._dim = x.shape[1]
        self._pending.append(np.array(x, dtype=np.float64))  # a copy: the caller may reuse its buffer
        self._pending_rows += x.shape[0]
        self.n += x.shape[0]
        if self._pending_rows >= self.FLUSH_ROWS:
            self._flush()
        return self

    def _flush(self) -> None:
        if not self._pending:
            return
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        nb = x.shape[0]
        mb = x.mean(axis=0)
        m2b = _gram_upper(x - mb)
        if self._mean is None or self._m2 is None:
            self._n_merged, self._mean, self._m2 = nb, mb, m2b
            return
        from scipy.linalg.blas import dsyr

        na = self._n_merged
        n = na + nb
        delta = mb - self._mean
        # Chan et al. (2.1b), in place on the upper triangle: M2 += M2_b + (na nb / n) δ δᵀ
        self._m2 += m2b
        self._m2 = dsyr(na * nb / n, delta, a=self._m2, lower=0, overwrite_a=True)
        self._mean = self._mean + delta * (nb / n)
        self._n_merged = n

    def stats(self, label: str | None = None) -> Stats:
        """Returns the statistics of every row added so far (needs at least two); ``label`` (default:
        the one given to the constructor) names the input in errors."""
        self._flush()
        if self.n < 2 or self._mean is None or self._m2 is None:
            label = label or self.label
            if label is None:
                raise InputError(f"StatsAccumulator.stats: a covariance needs at least 2 feature rows, "
                                 f"received {self.n}; add more images")
            what = "no images" if self.n == 0 else f"{self.n} image" + ("s" if self.n != 1 else "")
            raise InputError(f"{label}: {what}; a mean and covariance (FID) need at least 2 images — "
                             f"pass more images")
        cov = _mirror_upper(self._m2)
        cov /= self.n - 1
        return Stats(self.n, self._mean.copy(), cov, self.provenance)


def load(path: str | os.PathLike[str]) -> Stats:
    """Returns the statistics stored at ``path``, a file recognised by content, whatever its name.

    Reads fidkit's own files, pytorch-fid / TTUR ``mu``/``sigma`` .npz files, clean-fid's statistics
    (``mu``/``sigma``) and feature files — fidkit's ``features``, clean-fid's KID ``feats``, a 2-D
    array — whose statistics it computes; provenance is unknown for the files of other tools, and so is
    ``n`` for statistics files that do not record it. A mean or covariance stored in float16 is
    accepted with a FidkitWarning when the covariance is PSD to within that rounding
    (`fidkit.frechet`). Never unpickles. Raises InputError naming the file when it is missing,
    truncated, not statistics (the message names the arrays found and those expected; see
    `fidkit.npfile.require`) or holds invalid statistics.
    """
    info = npfile.require(path, "stats", "features")
    where = str(info.path)
    if info.kind == "features" and info.main is not None:
        return Stats.from_features(npfile.read(info, [info.main])[info.main])
    data = npfile.read(info, [k for k in ("mu", "sigma", "n", "provenance") if k in info.arrays])
    n: Any = None
    provenance = Provenance()
    if info.format == FORMAT:
        missing = [k for k in ("n", "provenance") if k not in data]
        if missing:
            raise InputError(f"{where}: fidkit statistics file lacks {', '.join(missing)}; "
                             f"recreate it with `fidkit stats`")
        if data["n"].shape != () or data["n"].dtype.kind not in "iu":
            raise InputError(f"{where}: 'n' must be an integer scalar, found {data['n'].shape} "
                             f"{data['n'].dtype}; recreate the file with `fidkit stats`")
        n = int(data["n"])
        n = None if n < 0 else n
        provenance = Provenance.from_json(str(data["provenance"]), where)
    mean, cov = _validate(n, data["mu"], data["sigma"], where)
    return Stats(n, mean, cov, provenance)


def check_provenance(a: Provenance, b: Provenance, allow_mismatch: bool = False) -> None:
    """Returns None if features of provenance ``a`` and ``b`` may be compared; raises otherwise.

    Extractor, weights digest, resize policy and input size must agree (the runtime may differ: that is
    the point of fidkit). A difference raises ProvenanceMismatchError naming the field, or with
    ``allow_mismatch`` gives a FidkitWarning; unknown fields give a FidkitWarning. Two different named
    protocols give a FidkitWarning naming both (the features agree when the fields above do; the
    protocols' formulas differ, and the score follows the protocol it is computed under).
    """
    unknown = [f for f in _COMPARED if f in set(a.unknown_fields) | set(b.unknown_fields)]
    for name, label in _COMPARED.items():
        if name in unknown:
            continue
        va, vb = getattr(a, name), getattr(b, name)
        if va == vb:
            continue
        msg = (f"the two statistics were computed with different {label} ({va} vs {vb}); scores "
               f"across them are not comparable")
        if not allow_mismatch:
            raise ProvenanceMismatchError(msg + " — pass --allow-mismatch (allow_mismatch=True) to "
                                                "compute anyway")
        warnings.warn(msg, FidkitWarning, stacklevel=3)
    named = {a.protocol, b.protocol} - {UNKNOWN, NO_PROTOCOL}
    if a.protocol != b.protocol and len(named) == 2:
        warnings.warn(f"the two inputs were computed under different protocols ({a.protocol} vs {b.protocol}); "
                      f"their features agree where extractor, weights and resize policy do, but the numbers "
                      f"follow one protocol's formulas (--protocol)", FidkitWarning, stacklevel=3)
    if unknown:
        warnings.warn(f"provenance unknown ({', '.join(unknown)}) for at least one of the inputs "
                      f"(a file from another tool, or bare arrays?); fidkit cannot check they were "
                      f"computed alike", FidkitWarning, stacklevel=3)


def check_compatible(a: Stats, b: Stats, allow_mismatch: bool = False) -> None:
    """Returns None if statistics ``a`` and ``b`` may be compared; raises otherwise (see check_provenance)."""
    if a.dim != b.dim:
        raise InputError(f"the two statistics have different feature dimensions ({a.dim} vs {b.dim}); "
                         f"they come from different extractors")
    check_provenance(a.provenance, b.provenance, allow_mismatch)


def fid(a: Stats, b: Stats, *, allow_mismatch: bool = False, **kwargs: Any) -> float:
    """Returns the Fréchet distance between two statistics after checking they are comparable.

    Heusel et al. 2017; extra keyword arguments go to `fidkit.frechet.frechet_distance`. Warns
    (FidkitWarning) when a sample count is too small for a trustworthy FID.
    """
    from ._validate import warn_sample_size
    from .frechet import frechet_distance

    check_compatible(a, b, allow_mismatch=allow_mismatch)
    for label, s in (("first statistics", a), ("second statistics", b)):
        if s.n is not None:
            warn_sample_size(s.n, s.dim, label)
    return float(frechet_distance(a.mean, a.cov, b.mean, b.cov, **kwargs))
