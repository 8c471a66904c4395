"""fidkit's metrics as ``ignite.metrics.Metric`` subclasses, attachable to an ``Engine``.

    from fidkit.integrations.ignite import FID

    fid = FID("mnist", reference=real_stats, value_range=(-1, 1))   # the real side once
    fid.attach(evaluator, "fid")                                    # evaluator.state.metrics["fid"]

Classes: `FID`, `InceptionScore`, `KID`, `PrecisionRecall`, `DensityCoverage`. Each takes the engine's
output through ``output_transform`` (ignite's convention) and reads from it:

* with ``reference``: the generated images, or a ``(fake, real)`` pair whose ``real`` is ignored (the
  tutorial's evaluation step returns that pair; the real side is the reference, computed once);
* without ``reference`` (FID, KID, PR, DC): a ``(fake, real)`` pair, both sides accumulated each epoch,
  as ``ignite.metrics.FID`` does;
* `InceptionScore`: the generated images.

Images are torch tensors (N, C, H, W) on any device, uint8 or float with a declared ``value_range``
(checked on every batch). ``extractor``, ``reference``, ``policy``, ``layout`` and ``allow_mismatch``
mean what they mean in `fidkit.integrations.torchmetrics`; ``device`` is where the states live.

`compute` returns a float (FID, KID mean, IS mean) or a dict of floats (precision/recall,
density/coverage), which ignite stores in ``engine.state.metrics``; `result` gives the last value with
its std, sample counts and provenance (`MetricResult`). FID's state is float64 moments merged exactly
across processes (`fidkit.integrations._torch_state`), the others keep their feature rows, gathered in
rank order at `compute`; every process gets the same value. Collectives go through
``ignite.distributed``, so every process must call `compute` (ignite's engine does, at the end of each
epoch).

Importing this module imports neither torch nor ignite: the classes are built on first access (a
module ``__getattr__``), which raises `fidkit.BackendUnavailableError` when either is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputError
from ..registry import import_runtime
from ._torch_state import (
    ImageFeatures,
    MetricResult,
    gather_rows,
    merge_moments,
    moments_add,
    moments_init,
    moments_stats,
    reference_features,
    reference_stats,
)
from .torchmetrics import FIDKIT_DEFAULT, _default

# the classes are built by __getattr__ on first access
__all__ = ["FID", "DensityCoverage", "InceptionScore", "KID", "MetricResult", "PrecisionRecall"]  # noqa: F822

_PURPOSE = "fidkit.integrations.ignite"
_CLASSES = ("FID", "DensityCoverage", "InceptionScore", "KID", "PrecisionRecall")
_DEFAULT_EXTRACTOR = "inception-tf2015"


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        classes = _build()
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CLASSES))


def _identity(x: Any) -> Any:
    return x


def _build() -> dict[str, type]:
    """Returns the metric classes, subclasses of ``ignite.metrics.Metric`` (imports torch and ignite)."""
    torch = import_runtime("torch", _PURPOSE)
    try:
        import ignite.distributed as idist
        from ignite.metrics import Metric
        from ignite.metrics.metric import reinit__is_reduced
    except ImportError as exc:
        raise BackendUnavailableError(f"{_PURPOSE} needs 'pytorch-ignite' ({exc}): pip install pytorch-ignite"
                                      ) from None

    from ..frechet import FrechetReference, frechet_distance
    from ..inception_score import inception_score
    from ..kid import kid
    from ..prdc import density_coverage, precision_recall
    from ..stats import Stats

    def split_output(output: Any, where: str, needs_real: bool) -> tuple[Any, Any]:
        if isinstance(output, (tuple, list)):
            if len(output) != 2:
                raise InputError(f"{where}: expected the generated images or a (fake, real) pair from "
                                 f"output_transform, received a sequence of {len(output)}")
            return output[0], output[1] if needs_real else None
        if needs_real:
            raise InputError(f"{where}: without reference= the metric needs (fake, real) image pairs from "
                             f"output_transform, received {type(output).__name__}; pass reference= (the real "
                             f"side, computed once) or return both batches")
        return output, None

    class _FidkitIgniteMetric(Metric):
        _metric = ""

        def __init__(self, extractor: Any, *, reference: Any, value_range: Any, layout: str | None,
                     policy: str | None, allow_mismatch: bool, output_transform: Callable[[Any], Any],
                     device: Any) -> None:
            # before Metric.__init__, which calls reset()
            self._features = ImageFeatures(extractor, policy=policy, value_range=value_range, layout=layout,
                                           device=None, where=type(self).__name__)
            self.allow_mismatch = bool(allow_mismatch)
            self._last: MetricResult | None = None
            self._setup_reference(reference)
            super().__init__(output_transform=output_transform, device=device)

        def _setup_reference(self, reference: Any) -> None:
            self._reference = reference

        @property
        def provenance(self) -> Any:
            """Returns the `fidkit.Provenance` of the features this metric computes."""
            return self._features.provenance

        def result(self) -> MetricResult:
            """Returns the last computed value with its sample counts and provenance."""
            if self._last is None:
                raise InputError(f"{type(self).__name__}.result: nothing computed yet; run the engine (or "
                                 f"call compute) first")
            return self._last

        def _outputs(self, imgs: Any, key: str = "features") -> Any:
            out = self._features.outputs(imgs)
            if key not in out:
                raise InputError(f"{type(self).__name__}: extractor {self.provenance.extractor!r} has no "
                                 f"{key}")
            return out[key]

        def _gather(self, rows: Any) -> np.ndarray:
            every = gather_rows(rows, idist.all_gather, idist.get_world_size())
            return every.detach().cpu().double().numpy()

    class FID(_FidkitIgniteMetric):
        """FID (Heusel et al., NeurIPS 2017); ``reference``: a `fidkit.Stats` or a statistics file."""

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     value_range: Any = None, layout: str | None = None, policy: str | None = None,
                     allow_mismatch: bool = False, output_transform: Callable[[Any], Any] = _identity,
                     device: Any = "cpu") -> None:
            super().__init__(extractor, reference=reference, value_range=value_range, layout=layout,
                             policy=policy, allow_mismatch=allow_mismatch, output_transform=output_transform,
                             device=device)

        def _setup_reference(self, reference: Any) -> None:
            self._reference: Stats | None = None
            self._frechet: FrechetReference | None = None
            if reference is not None:
                self._reference = reference_stats(reference, self._features, self.allow_mismatch)
                self._frechet = FrechetReference(self._reference.mean, self._reference.cov)

        @reinit__is_reduced
        def reset(self) -> None:
            d = self._features.feature_dim
            self._fake = moments_init(d, self._device)
            self._real = moments_init(d, self._device) if self._reference is None else None

        @reinit__is_reduced
        def update(self, output: Any) -> None:
            fake, real = split_output(output, "FID", self._reference is None)
            moments_add(self._fake, self._outputs(fake))
            if real is not None:
                moments_add(self._real, self._outputs(real))

        def _merged(self, packed: Any) -> Any:
            if idist.get_world_size() <= 1:
                return packed
            return merge_moments(idist.all_gather(packed.unsqueeze(0)))

        def stats(self, real: bool = False) -> Stats:
            """Returns the float64 `fidkit.Stats` of the generated (or real) images of every process."""
            if real and self._reference is not None:
                return self._reference
            return moments_stats(self._merged(self._real if real else self._fake), self.provenance,
                                 f"FID ({'real' if real else 'generated'} side)")

        def compute(self) -> float:
            from .._validate import warn_sample_size

            fake = self.stats()
            warn_sample_size(fake.n, fake.dim, "FID: generated images")
            if self._frechet is not None and self._reference is not None:
                value = self._frechet.distance(fake.mean, fake.cov, name="generated covariance")
                n_real, ref = self._reference.n, self._reference.provenance
            else:
                real = self.stats(real=True)
                warn_sample_size(real.n, real.dim, "FID: real images")
                value = frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
                n_real, ref = real.n, self.provenance
            self._last = MetricResult("fid", float(value), fake.n, n_real, None, self.provenance, ref)
            return float(value)

    class _RowsMetric(_FidkitIgniteMetric):
        def _setup_reference(self, reference: Any) -> None:
            self._reference: np.ndarray | None = None
            self._reference_provenance = None
            if reference is not None:
                self._reference, self._reference_provenance = reference_features(
                    reference, self._features, self.allow_mismatch)

        @reinit__is_reduced
        def reset(self) -> None:
            self._fake_rows: list[Any] = []
            self._real_rows: list[Any] = []

        @reinit__is_reduced
        def update(self, output: Any) -> None:
            fake, real = split_output(output, type(self).__name__, self._reference is None)
            self._fake_rows.append(self._outputs(fake).detach().to(self._device, torch.float32))
            if real is not None:
                self._real_rows.append(self._outputs(real).detach().to(self._device, torch.float32))

        def _side(self, rows: list[Any]) -> np.ndarray:
            d = self._features.feature_dim
            local = torch.cat(rows) if rows else torch.zeros((0, d), dtype=torch.float32, device=self._device)
            return self._gather(local)

        def _both(self) -> tuple[np.ndarray, np.ndarray, Any]:
            fake = self._side(self._fake_rows)
            if self._reference is not None:
                return self._reference, fake, self._reference_provenance
            return self._side(self._real_rows), fake, self.provenance

    class KID(_RowsMetric):
        """KID (Bińkowski et al., ICLR 2018): `compute` returns the mean over subsets (std in `result`)."""

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     subsets: int | None = None, subset_size: int | None = None, degree: int = 3,
                     gamma: float | None = None, coef0: float = 1.0, seed: int = 0,
                     value_range: Any = None, layout: str | None = None, policy: str | None = None,
                     allow_mismatch: bool = False, output_transform: Callable[[Any], Any] = _identity,
                     device: Any = "cpu") -> None:
            self.settings = {"subsets": _default("kid", "subsets", subsets),
                             "subset_size": _default("kid", "subset_size", subset_size),
                             "degree": degree, "gamma": gamma, "coef0": coef0, "seed": seed}
            super().__init__(extractor, reference=reference, value_range=value_range, layout=layout,
                             policy=policy, allow_mismatch=allow_mismatch, output_transform=output_transform,
                             device=device)

        def compute(self) -> float:
            real, fake, ref = self._both()
            mean, std = kid(real, fake, **self.settings)
            self._last = MetricResult("kid", mean, len(fake), len(real), std, self.provenance, ref,
                                      dict(self.settings))
            return mean

    class _KnnMetric(_RowsMetric):
        _function: Callable[..., Any] = staticmethod(precision_recall)

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     k: int | None = None, value_range: Any = None, layout: str | None = None,
                     policy: str | None = None, allow_mismatch: bool = False,
                     output_transform: Callable[[Any], Any] = _identity, device: Any = "cpu") -> None:
            self.k = _default(self._metric, "k", k)
            super().__init__(extractor, reference=reference, value_range=value_range, layout=layout,
                             policy=policy, allow_mismatch=allow_mismatch, output_transform=output_transform,
                             device=device)

        def compute(self) -> dict[str, float]:
            real, fake, ref = self._both()
            out = dict(type(self)._function(real, fake, k=self.k)._asdict())
            self._last = MetricResult(self._metric, out, len(fake), len(real), None, self.provenance, ref,
                                      {"k": self.k})
            return out

    class PrecisionRecall(_KnnMetric):
        """Precision and recall (Kynkäänniemi et al., NeurIPS 2019), k = 3 by default:
        `compute` returns {'precision': ..., 'recall': ...}."""

        _metric = "pr"
        _function = staticmethod(precision_recall)

    class DensityCoverage(_KnnMetric):
        """Density and coverage (Naeem et al., ICML 2020), k = 5 by default:
        `compute` returns {'density': ..., 'coverage': ...}."""

        _metric = "dc"
        _function = staticmethod(density_coverage)

    class InceptionScore(_FidkitIgniteMetric):
        """Inception Score (Salimans et al., NeurIPS 2016) from the extractor's logits: `compute` returns
        the mean over ``splits`` parts (std in `result`); ``shuffle_seed`` as in `fidkit.inception_score`."""

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, splits: int | None = None,
                     shuffle_seed: Any = FIDKIT_DEFAULT, value_range: Any = None, layout: str | None = None,
                     policy: str | None = None, output_transform: Callable[[Any], Any] = _identity,
                     device: Any = "cpu") -> None:
            self.settings = {"splits": _default("is", "splits", splits)}
            if shuffle_seed is not FIDKIT_DEFAULT:
                self.settings["shuffle_seed"] = shuffle_seed
            super().__init__(extractor, reference=None, value_range=value_range, layout=layout, policy=policy,
                             allow_mismatch=False, output_transform=output_transform, device=device)
            if self._features.logits_dim is None:
                raise InputError(f"InceptionScore: extractor {self.provenance.extractor!r} has no logits; "
                                 f"choose one with logits (e.g. 'mnist', 'inception-tf2015'), or pass "
                                 f"logits_layer= to fidkit.from_torch")

        @reinit__is_reduced
        def reset(self) -> None:
            self._logits: list[Any] = []

        @reinit__is_reduced
        def update(self, output: Any) -> None:
            imgs, _ = split_output(output, "InceptionScore", False)
            self._logits.append(self._outputs(imgs, "logits").detach().to(self._device, torch.float32))

        def compute(self) -> float:
            k = self._features.logits_dim or 0
            local = (torch.cat(self._logits) if self._logits
                     else torch.zeros((0, k), dtype=torch.float32, device=self._device))
            logits = self._gather(local)
            mean, std = inception_score(logits, **self.settings)
            self._last = MetricResult("is", mean, len(logits), None, std, self.provenance, None,
                                      dict(self.settings))
            return mean

    out = {"FID": FID, "KID": KID, "InceptionScore": InceptionScore, "PrecisionRecall": PrecisionRecall,
           "DensityCoverage": DensityCoverage}
    for name, cls in out.items():
        cls.__module__ = __name__
        cls.__qualname__ = name
    return out
