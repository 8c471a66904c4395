"""fidkit's metrics as ``torchmetrics.Metric`` subclasses: Lightning logging, DDP sync and ``compute_on_cpu``
come with the base class; the numbers, exactness and provenance are fidkit's.

    from fidkit.integrations.torchmetrics import FrechetInceptionDistance

    fid = FrechetInceptionDistance("mnist", reference="real.npz", value_range=(-1, 1))
    fid.update(fake_images)              # torch tensors (N, C, H, W) on any device, every batch
    fid.compute()                        # float64 scalar tensor, the same on every process
    fid.result()                         # the value with n and provenance (MetricResult); fid.reset()

Classes: `FrechetInceptionDistance`, `KernelInceptionDistance`, `InceptionScore`, `PrecisionRecall`,
`DensityCoverage`. The calling convention is torchmetrics': ``update(imgs, real=False)`` (``real=True``
adds real images when no ``reference`` is given), ``compute()``, ``reset()``, ``reset_real_features``.
What fidkit adds:

* ``extractor``: a registered name (`fidkit.available_extractors()`; built on the torch runtime, on the
  device the images arrive on) or a `fidkit.Extractor` on torch — ``fidkit.from_torch(model, layer,
  name=..., input_size=...)`` for a model of your own. The default, ``inception-tf2015``, is the network
  torchmetrics' own FID uses (torch-fidelity's port of the 2015 TensorFlow Inception);
* ``reference``: the real side computed once, not every epoch — a `fidkit.Stats` or a statistics file for
  FID, feature rows or a features file for KID and the k-NN metrics; its provenance is checked against
  the extractor's (a different extractor, weights or resize policy is an error unless
  ``allow_mismatch=True``);
* ``value_range`` / ``layout`` / ``policy`` declare the images (uint8 is 0..255; a float range such as
  ``(-1, 1)`` is inferred only when unambiguous; the range is checked on every batch, as everywhere in
  fidkit) and the resize policy;
* ``result()``: the last value as a `MetricResult` (sample counts, the extractor's provenance and the
  reference's); ``stats()`` (FID): the float64 `fidkit.Stats` of either side, e.g. to save the real
  side once.

States. FID keeps per side one float64 tensor of moments (n, mean, M2), updated per batch with Chan's
pairwise formula and merged across processes with it (`fidkit.integrations._torch_state`), never
torchmetrics' float32 Σxxᵀ - nμμᵀ: under DDP the FID equals the single-process FID on the same features
to float64 rounding (tests: 2 gloo processes, uneven shards, an empty rank; ~1e-15 relative). KID, IS
and the k-NN metrics keep their feature rows (float32, as extracted; ``dist_reduce_fx="cat"``): their
values under DDP equal the single-process values on the rows in rank order (KID's subsets and IS's
splits depend on the order; precision/recall and density/coverage do not). A rank with no images
contributes none. ``compute()`` evaluates fidkit's own functions (`fidkit.frechet_distance`,
`fidkit.kid`, `fidkit.inception_score`, `fidkit.precision_recall`, `fidkit.density_coverage`) on the
host in float64. Calling the metric (``forward``) adds the batch and returns None: these are
distribution metrics, a single batch has no meaningful value.

Importing this module imports neither torch nor torchmetrics: the classes are built on first access
(a module ``__getattr__``), which raises `fidkit.BackendUnavailableError` when either is missing.
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
    merge_moments,
    moments_add,
    moments_init,
    moments_stats,
    reference_features,
    reference_stats,
)

# the classes are built by __getattr__ on first access
__all__ = ["DensityCoverage", "FrechetInceptionDistance", "InceptionScore", "KernelInceptionDistance", "MetricResult", "PrecisionRecall"]  # noqa: F822

_PURPOSE = "fidkit.integrations.torchmetrics"
_CLASSES = ("DensityCoverage", "FrechetInceptionDistance", "InceptionScore", "KernelInceptionDistance",
            "PrecisionRecall")
_DEFAULT_EXTRACTOR = "inception-tf2015"


class _FidkitDefault:
    def __repr__(self) -> str:
        return "FIDKIT_DEFAULT"


#: An argument left to the fidkit function's own default (e.g. InceptionScore's ``shuffle_seed``).
FIDKIT_DEFAULT: Any = _FidkitDefault()


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        classes = _build()
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CLASSES))


def _default(metric: str, key: str, value: Any) -> Any:
    """Returns ``value``, or the registry's default for ``metric``'s ``key`` when it is None."""
    if value is not None:
        return value
    from ..metrics import get_metric

    return get_metric(metric).defaults[key]


def _build() -> dict[str, type]:
    """Returns the metric classes, subclasses of ``torchmetrics.Metric`` (imports torch and torchmetrics)."""
    torch = import_runtime("torch", _PURPOSE)
    try:
        import torchmetrics  # the package (absolute import), not this module
        from torchmetrics.utilities.data import dim_zero_cat
        from torchmetrics.utilities.distributed import gather_all_tensors
    except ImportError as exc:
        raise BackendUnavailableError(f"{_PURPOSE} needs 'torchmetrics' ({exc}): pip install torchmetrics"
                                      ) from None

    from ..frechet import FrechetReference, frechet_distance
    from ..inception_score import inception_score
    from ..kid import kid
    from ..prdc import density_coverage, precision_recall
    from ..stats import Stats

    class _FidkitMetric(torchmetrics.Metric):
        """What every fidkit torchmetrics metric has: the images → features stage, the reference side,
        feature-row states that survive a rank without images, and `result`."""

        is_differentiable = False
        full_state_update = False
        _metric = ""

        def __init__(self, extractor: Any, *, value_range: Any, layout: str | None, policy: str | None,
                     device: str | None, allow_mismatch: bool, reset_real_features: bool,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._features = ImageFeatures(extractor, policy=policy, value_range=value_range, layout=layout,
                                           device=device, where=type(self).__name__)
            self.allow_mismatch = bool(allow_mismatch)
            self.reset_real_features = bool(reset_real_features)
            self._row_widths: dict[str, int] = {}
            self._last: MetricResult | None = None

        @property
        def provenance(self) -> Any:
            """Returns the `fidkit.Provenance` of the features this metric computes."""
            return self._features.provenance

        def _add_rows(self, name: str, width: int) -> None:
            self.add_state(name, default=[], dist_reduce_fx="cat")
            self._row_widths[name] = width

        def _rows(self, name: str) -> np.ndarray:
            value = getattr(self, name)
            if isinstance(value, list):
                if not value:
                    return np.zeros((0, self._row_widths[name]))
                value = dim_zero_cat(value)
            return value.detach().cpu().double().numpy()

        def _append(self, name: str, rows: Any) -> None:
            getattr(self, name).append(rows.detach().to(device=self.device, dtype=torch.float32))

        def _sync_dist(self, dist_sync_fn: Callable[..., Any] | None = None,
                       process_group: Any | None = None) -> None:
            # a rank without images would send torchmetrics' 1-D empty placeholder, whose shape cannot
            # be gathered with the (n, d) rows of the others: send (0, d) rows instead
            for name, width in self._row_widths.items():
                if isinstance(getattr(self, name), list) and not getattr(self, name):
                    dev = "cpu" if self.compute_on_cpu else self.device
                    setattr(self, name, [torch.zeros((0, width), dtype=torch.float32, device=dev)])
            super()._sync_dist(dist_sync_fn or gather_all_tensors, process_group)

        def reset(self) -> None:
            """Clears the generated side (and the real side when ``reset_real_features``)."""
            keep = {} if self.reset_real_features else {
                k: getattr(self, k) for k in self._defaults if k.startswith("real_")}
            super().reset()
            for k, v in keep.items():
                setattr(self, k, v)

        def merge_state(self, incoming_state: Any) -> None:
            """Adds another metric's state (or a state dict) to this one, as torchmetrics does, and drops
            the cached value of `compute` (torchmetrics 1.9 keeps it, returning the pre-merge value)."""
            super().merge_state(incoming_state)
            self._computed = None

        def forward(self, *args: Any, **kwargs: Any) -> None:
            """Adds the batch (as `update`) and returns None: a single batch has no distribution metric."""
            self.update(*args, **kwargs)

        def result(self) -> MetricResult:
            """Returns the value of `compute` with its sample counts and provenance."""
            self.compute()
            if self._last is None:  # compute came from torchmetrics' cache of another instance state
                raise InputError(f"{type(self).__name__}.result: no value computed yet; call update first")
            return self._last

        def _real_rows(self) -> tuple[np.ndarray, Any]:
            if self._reference is not None:
                return self._reference, self._reference_provenance
            return self._rows("real_features"), self.provenance

        def _features_for(self, imgs: Any, key: str = "features") -> Any:
            out = self._features.outputs(imgs)
            if key not in out:
                raise InputError(f"{type(self).__name__}: extractor {self.provenance.extractor!r} has no "
                                 f"{key}; choose one with logits (e.g. 'mnist', 'inception-tf2015')")
            return out[key]

        def _check_real(self, real: bool) -> None:
            if real and self._reference is not None:
                raise InputError(f"{type(self).__name__}.update: real=True but reference= already fixes "
                                 f"the real side; drop reference= to accumulate real images, or stop "
                                 f"passing real batches")

    class FrechetInceptionDistance(_FidkitMetric):
        """FID (Heusel et al., NeurIPS 2017) between generated images and a reference or real images.

        ``reference``: a `fidkit.Stats` or a statistics file (the real side, factorised once); without
        it, ``update(imgs, real=True)`` accumulates real images (kept across `reset` when
        ``reset_real_features=False``). ``compute()`` returns a float64 scalar tensor on the metric's
        device; `stats` returns either side's `fidkit.Stats`. Other arguments: see the module docstring;
        ``**kwargs`` go to ``torchmetrics.Metric`` (``compute_on_cpu``, ``sync_on_compute``,
        ``process_group``, ...).
        """

        higher_is_better = False
        _metric = "fid"

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     value_range: Any = None, layout: str | None = None, policy: str | None = None,
                     device: str | None = None, reset_real_features: bool = True,
                     allow_mismatch: bool = False, **kwargs: Any) -> None:
            super().__init__(extractor, value_range=value_range, layout=layout, policy=policy, device=device,
                             allow_mismatch=allow_mismatch, reset_real_features=reset_real_features,
                             **kwargs)
            d = self._features.feature_dim
            self.add_state("fake_moments", moments_init(d), dist_reduce_fx=merge_moments)
            self._reference: Stats | None = None
            self._frechet: FrechetReference | None = None
            if reference is None:
                self.add_state("real_moments", moments_init(d), dist_reduce_fx=merge_moments)
            else:
                self._reference = reference_stats(reference, self._features, self.allow_mismatch)
                self._frechet = FrechetReference(self._reference.mean, self._reference.cov)

        def update(self, imgs: Any, real: bool = False) -> None:
            """Adds a batch of images (N, C, H, W) to the generated side, or to the real side with ``real``."""
            self._check_real(real)
            moments_add(self.real_moments if real else self.fake_moments, self._features_for(imgs))

        def stats(self, real: bool = False) -> Stats:
            """Returns the float64 `fidkit.Stats` of the generated (or real) images of every process."""
            if real and self._reference is not None:
                return self._reference
            with self.sync_context(should_sync=self._to_sync, should_unsync=self._should_unsync):
                packed = self.real_moments if real else self.fake_moments
                return moments_stats(packed, self.provenance, f"{type(self).__name__} "
                                                             f"({'real' if real else 'generated'} side)")

        def compute(self) -> Any:
            """Returns the FID as a float64 scalar tensor."""
            from .._validate import warn_sample_size

            where = type(self).__name__
            fake = moments_stats(self.fake_moments, self.provenance, f"{where} (generated side)")
            warn_sample_size(fake.n, fake.dim, f"{where}: generated images")
            if self._frechet is not None and self._reference is not None:
                value = self._frechet.distance(fake.mean, fake.cov, name="generated covariance")
                n_real, ref = self._reference.n, self._reference.provenance
            else:
                real = moments_stats(self.real_moments, self.provenance, f"{where} (real side)")
                warn_sample_size(real.n, real.dim, f"{where}: real images")
                value = frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
                n_real, ref = real.n, self.provenance
            self._last = MetricResult("fid", float(value), fake.n, n_real, None, self.provenance, ref)
            return torch.tensor(float(value), dtype=torch.float64, device=self.device)

    class _RowsMetric(_FidkitMetric):
        """A metric of the feature rows of both sides (KID, precision/recall, density/coverage)."""

        def __init__(self, extractor: Any, reference: Any, **kwargs: Any) -> None:
            super().__init__(extractor, **kwargs)
            d = self._features.feature_dim
            self._add_rows("fake_features", d)
            self._reference: np.ndarray | None = None
            self._reference_provenance = None
            if reference is None:
                self._add_rows("real_features", d)
            else:
                self._reference, self._reference_provenance = reference_features(
                    reference, self._features, self.allow_mismatch)

        def update(self, imgs: Any, real: bool = False) -> None:
            """Adds a batch of images (N, C, H, W) to the generated side, or to the real side with ``real``."""
            self._check_real(real)
            self._append("real_features" if real else "fake_features", self._features_for(imgs))

    class KernelInceptionDistance(_RowsMetric):
        """KID (Bińkowski et al., ICLR 2018): `compute` returns (mean, std) over ``subsets`` random subsets
        of ``subset_size`` rows per side (float64 tensors); defaults from `fidkit.metrics` (100, 1000).
        ``reference``: real feature rows (array/tensor) or a features file."""

        higher_is_better = False
        _metric = "kid"

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     subsets: int | None = None, subset_size: int | None = None, degree: int = 3,
                     gamma: float | None = None, coef0: float = 1.0, seed: int = 0,
                     value_range: Any = None, layout: str | None = None, policy: str | None = None,
                     device: str | None = None, reset_real_features: bool = True,
                     allow_mismatch: bool = False, **kwargs: Any) -> None:
            super().__init__(extractor, reference, value_range=value_range, layout=layout, policy=policy,
                             device=device, allow_mismatch=allow_mismatch,
                             reset_real_features=reset_real_features, **kwargs)
            self.settings = {"subsets": _default("kid", "subsets", subsets),
                             "subset_size": _default("kid", "subset_size", subset_size),
                             "degree": degree, "gamma": gamma, "coef0": coef0, "seed": seed}

        def compute(self) -> tuple[Any, Any]:
            """Returns (KID mean, std over subsets) as float64 scalar tensors."""
            real, ref = self._real_rows()
            fake = self._rows("fake_features")
            mean, std = kid(real, fake, **self.settings)
            self._last = MetricResult("kid", mean, len(fake), len(real), std, self.provenance, ref,
                                      dict(self.settings))
            return (torch.tensor(mean, dtype=torch.float64, device=self.device),
                    torch.tensor(std, dtype=torch.float64, device=self.device))

    class _KnnMetric(_RowsMetric):
        higher_is_better = True
        _function: Callable[..., Any] = staticmethod(precision_recall)

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, reference: Any = None,
                     k: int | None = None, value_range: Any = None, layout: str | None = None,
                     policy: str | None = None, device: str | None = None,
                     reset_real_features: bool = True, allow_mismatch: bool = False,
                     **kwargs: Any) -> None:
            super().__init__(extractor, reference, value_range=value_range, layout=layout, policy=policy,
                             device=device, allow_mismatch=allow_mismatch,
                             reset_real_features=reset_real_features, **kwargs)
            self.k = _default(self._metric, "k", k)

        def compute(self) -> tuple[Any, Any]:
            real, ref = self._real_rows()
            fake = self._rows("fake_features")
            out = type(self)._function(real, fake, k=self.k)
            self._last = MetricResult(self._metric, dict(out._asdict()), len(fake), len(real), None,
                                      self.provenance, ref, {"k": self.k})
            return tuple(torch.tensor(v, dtype=torch.float64, device=self.device) for v in out)

    class PrecisionRecall(_KnnMetric):
        """Precision and recall (Kynkäänniemi et al., NeurIPS 2019) with k-NN balls, k = 3 by default:
        `compute` returns (precision, recall) as float64 tensors. ``reference``: real feature rows or a
        features file."""

        _metric = "pr"
        _function = staticmethod(precision_recall)

        def compute(self) -> tuple[Any, Any]:
            """Returns (precision, recall) as float64 scalar tensors."""
            return super().compute()

    class DensityCoverage(_KnnMetric):
        """Density and coverage (Naeem et al., ICML 2020), k = 5 by default: `compute` returns (density,
        coverage) as float64 tensors. ``reference``: real feature rows or a features file."""

        _metric = "dc"
        _function = staticmethod(density_coverage)

        def compute(self) -> tuple[Any, Any]:
            """Returns (density, coverage) as float64 scalar tensors."""
            return super().compute()

    class InceptionScore(_FidkitMetric):
        """Inception Score (Salimans et al., NeurIPS 2016) of generated images from the extractor's logits:
        `compute` returns (mean, std) over ``splits`` parts (default from `fidkit.metrics`), the rows
        ordered as `fidkit.inception_score` orders them (``shuffle_seed``: its default unless given)."""

        higher_is_better = True
        _metric = "is"

        def __init__(self, extractor: Any = _DEFAULT_EXTRACTOR, *, splits: int | None = None,
                     shuffle_seed: Any = FIDKIT_DEFAULT, value_range: Any = None, layout: str | None = None,
                     policy: str | None = None, device: str | None = None, **kwargs: Any) -> None:
            super().__init__(extractor, value_range=value_range, layout=layout, policy=policy, device=device,
                             allow_mismatch=False, reset_real_features=True, **kwargs)
            if self._features.logits_dim is None:
                raise InputError(f"InceptionScore: extractor {self.provenance.extractor!r} has no logits; "
                                 f"choose one with logits (e.g. 'mnist', 'inception-tf2015'), or pass "
                                 f"logits_layer= to fidkit.from_torch")
            self._reference = None
            self.settings = {"splits": _default("is", "splits", splits)}
            if shuffle_seed is not FIDKIT_DEFAULT:
                self.settings["shuffle_seed"] = shuffle_seed
            self._add_rows("logits", self._features.logits_dim)

        def update(self, imgs: Any) -> None:
            """Adds a batch of generated images (N, C, H, W)."""
            self._append("logits", self._features_for(imgs, "logits"))

        def compute(self) -> tuple[Any, Any]:
            """Returns (IS mean, std over splits) as float64 scalar tensors."""
            logits = self._rows("logits")
            mean, std = inception_score(logits, **self.settings)
            self._last = MetricResult("is", mean, len(logits), None, std, self.provenance, None,
                                      dict(self.settings))
            return (torch.tensor(mean, dtype=torch.float64, device=self.device),
                    torch.tensor(std, dtype=torch.float64, device=self.device))

    out = {"FrechetInceptionDistance": FrechetInceptionDistance, "KernelInceptionDistance": KernelInceptionDistance,
           "InceptionScore": InceptionScore, "PrecisionRecall": PrecisionRecall, "DensityCoverage": DensityCoverage}
    for name, cls in out.items():
        cls.__module__ = __name__
        cls.__qualname__ = name
    return out
