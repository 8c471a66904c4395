"""sFID: the Fréchet distance of the 2015 Inception's spatial features, and one pass that collects them.

Nash, Menick, Dieleman and Battaglia, "Generating Images with Sparse Representations", ICML 2021
(arXiv:2103.03841), as the ADM evaluator computes it (openai/guided-diffusion
``evaluations/evaluator.py``): the tensor ``mixed_6/conv:0`` of the 2015 TF Inception graph (the ReLU of
``Mixed_6d``'s 1x1 branch, N x 17 x 17 x 192), its first 7 channels, each image flattened in (H, W, C)
order to 17 x 17 x 7 = 2023 numbers; then the Fréchet distance (`fidkit.frechet.frechet_distance`) of
the two sets' means and covariances, exactly as FID is computed from pool3. The features are the
``spatial`` output of the ``inception-tf2015`` extractor (`fidkit.archs.inception.SPATIAL_NODE`),
computed on every runtime in the same network pass as pool3 and the logits.

`Collector` accumulates one pass of extractor outputs (features as rows or as streamed statistics,
logits, spatial statistics); `image_operand` runs it over an image input; `spatial_stats` returns the
spatial statistics of an input with their provenance (``Stats.save`` writes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import InputError
from .extraction import Extractor
from .features import FeatureResult
from .inputs import Operand
from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, _as_extractor, _batches, _open
from .stats import Provenance, Stats, StatsAccumulator

#: The extractor output sFID reads.
SPATIAL_OUTPUT = "spatial"
#: Written into the provenance ``description`` of spatial statistics, so a file says what it holds.
SPATIAL_DESCRIPTION = ("sFID spatial features: mixed_6/conv:0[..., :7] of the 2015 Inception (Mixed_6d "
                       "1x1 branch after ReLU), 17x17x7 = 2023-d flattened in (H, W, C) order, as "
                       "openai/guided-diffusion's evaluator")


def require_spatial(ex: Extractor) -> None:
    """Raises `InputError` unless extractor ``ex`` has sFID's ``spatial`` output (inception-tf2015)."""
    if SPATIAL_OUTPUT not in ex.spec.extra.get("outputs", {}):
        raise InputError(f"sFID needs the spatial features of the 2015 Inception (mixed_6/conv), and "
                         f"extractor {ex.name!r} has none; pass --extractor inception-tf2015 "
                         f"(extractor= in Python)")


def spatial_provenance(ex: Extractor) -> Provenance:
    """Returns the provenance of ``ex``'s spatial features (its own, with `SPATIAL_DESCRIPTION`)."""
    return replace(Provenance.from_extractor(ex), description=SPATIAL_DESCRIPTION)


class Collector:
    """Accumulates the outputs of one pass of extractor ``ex`` over an input called ``label``.

    ``rows``: keep the (N, d) feature rows and the logits (for KID, IS, precision/recall, bootstraps);
    otherwise only the streamed float64 statistics of the features (memory O(d²) however many images).
    ``spatial``: also stream the statistics of sFID's ``spatial`` output.
    """

    def __init__(self, ex: Extractor, label: str, *, rows: bool, spatial: bool) -> None:
        if spatial:
            require_spatial(ex)
        self.ex = ex
        self.label = label
        self.rows = rows
        self.provenance = Provenance.from_extractor(ex)
        self._feats: list[np.ndarray] = []
        self._logits: list[np.ndarray] = []
        self._names: list[str] = []
        self._stats = None if rows else StatsAccumulator(self.provenance, label=label)
        self._spatial = StatsAccumulator(spatial_provenance(ex), label=label) if spatial else None

    def add(self, out: dict[str, Any], names: Iterable[Any]) -> None:
        """Adds one batch of host outputs (`Extractor.outputs`) and the names of its images."""
        if self.rows:
            self._feats.append(np.asarray(out["features"]))
            if "logits" in out:
                self._logits.append(np.asarray(out["logits"]))
            self._names.extend(str(n) for n in names)
        else:
            self._stats.update(out["features"])
        if self._spatial is not None:
            self._spatial.update(out[SPATIAL_OUTPUT])

    def result(self, skipped: list[str] | None = None) -> tuple[FeatureResult | Stats, Stats | None]:
        """Returns (the features with logits, or their statistics; the spatial statistics or None)."""
        spatial = self._spatial.stats() if self._spatial is not None else None
        if not self.rows:
            return self._stats.stats(), spatial
        if not self._feats:
            raise InputError(f"{self.label}: no images to compute features from")
        logits = np.concatenate(self._logits) if self._logits else None
        return (FeatureResult(np.concatenate(self._feats), logits, self._names, self.provenance,
                              list(skipped or [])), spatial)


def image_operand(value: Any, ex: Extractor, label: str, *, with_features: bool, spatial: bool,
                  batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                  progress: bool = False, value_range: Any = None, layout: str | None = None,
                  skip_bad: bool = False) -> tuple[Operand, Stats | None]:
    """Returns (``value``'s `Operand`, its spatial statistics or None) from one pass over its images.

    The same pass as `fidkit.inputs.operand` (features or streamed statistics, with logits), plus the
    statistics of sFID's spatial features when ``spatial``.
    """
    src = _open(value, value_range=value_range, layout=layout, skip_bad=skip_bad)
    col = Collector(ex, label, rows=with_features, spatial=spatial)
    for out, names in _batches(src, ex, batch_size, workers, progress, label):
        col.add(out, names)
    main, spatial_stats_ = col.result(list(getattr(src, "skipped", [])))
    op = Operand(label, features=main) if with_features else Operand(label, stats=main)
    return op, spatial_stats_


def spatial_stats(source: Any, extractor: Extractor | str = "inception-tf2015", *,
                  batch_size: int = DEFAULT_BATCH_SIZE, workers: int = DEFAULT_WORKERS,
                  progress: bool = False, value_range: Any = None, layout: str | None = None,
                  skip_bad: bool = False) -> Stats:
    """Returns the statistics of sFID's 2023-d spatial features of ``source`` (any image input
    `fidkit.images.open_source` accepts), float64, streamed, with provenance (description:
    `SPATIAL_DESCRIPTION`); ``.save(path)`` writes them. Raises `InputError` for an extractor without
    the spatial output."""
    ex = _as_extractor(extractor)
    _, st = image_operand(source, ex, "images", with_features=False, spatial=True, batch_size=batch_size,
                          workers=workers, progress=progress, value_range=value_range, layout=layout,
                          skip_bad=skip_bad)
    return st  # type: ignore[return-value]  (spatial=True: never None)


def sfid(real: Stats, fake: Stats) -> float:
    """Returns sFID, the Fréchet distance of two sets' spatial statistics (`spatial_stats`)."""
    from .frechet import frechet_distance

    return float(frechet_distance(real.mean, real.cov, fake.mean, fake.cov))


__all__ = ["SPATIAL_DESCRIPTION", "SPATIAL_OUTPUT", "Collector", "image_operand", "require_spatial", "sfid",
           "spatial_provenance", "spatial_stats"]
