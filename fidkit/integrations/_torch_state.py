"""What the torchmetrics and ignite integrations share: float64 moments as one torch tensor, the images →
features stage, the reference side, gathering rows across processes, and the result record.

**Moments.** The features of one side are summarised by (n, mean, M2 = Σ (x - mean)(x - mean)ᵀ), packed
in one float64 tensor ``[n, mean (d), M2 (d·d)]`` on the metric's device. A batch is added with the
pairwise update of Chan, Golub and LeVeque (The American Statistician 37(3), 1983, eq. 2.1b): its own
mean and centred Gram matrix, then

    n = na + nb,   mean += δ nb / n,   M2 += M2_b + δδᵀ na nb / n,   δ = mean_b - mean_a,

which never forms raw sums Σxxᵀ (torchmetrics' own FID accumulates those, and loses digits to
cancellation when the mean is large compared with the spread). Processes merge their packed tensors
with the same update, in rank order (`merge_moments`), so a torchmetrics state can declare it as its
``dist_reduce_fx``: the statistics of all processes equal those of one process that saw every batch, to
float64 rounding (FID to 1e-12 relative is what the tests ask; they measure ~1e-15).

Importing this module imports no framework; its functions import torch when called.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..extraction import Extractor
from ..extraction import extractor as build_extractor
from ..image_rules import ValueRange, parse_value_range
from ..registry import get_spec, import_runtime
from ..stats import Provenance, Stats, check_provenance

__all__ = ["ImageFeatures", "MetricResult", "gather_rows", "merge_moments", "moments_add", "moments_init",
           "moments_n", "moments_stats", "reference_features", "reference_stats"]


def _torch(purpose: str) -> Any:
    return import_runtime("torch", purpose)


# --- moments -------------------------------------------------------------------------------------------

def moments_init(dim: int, device: Any = "cpu") -> Any:
    """Returns the packed float64 moments of no rows: zeros of length 1 + dim + dim², on ``device``."""
    torch = _torch("fidkit's torch integrations")
    return torch.zeros(1 + dim + dim * dim, dtype=torch.float64, device=device)


def _views(packed: Any, dim: int) -> tuple[Any, Any, Any]:
    return packed[0], packed[1:1 + dim], packed[1 + dim:].view(dim, dim)


def _dim(packed: Any) -> int:
    length = int(packed.shape[-1])
    dim = int(round(((4 * length - 3) ** 0.5 - 1) / 2))
    if 1 + dim + dim * dim != length:
        raise InputError(f"not a packed moments tensor: length {length} is not 1 + d + d² for any d")
    return dim


def moments_n(packed: Any) -> int:
    """Returns the number of rows summarised by a packed moments tensor."""
    return int(packed[0].item())


def _merge_into(acc: Any, other: Any, dim: int) -> None:
    """Merges packed ``other`` into packed ``acc`` in place (Chan et al. 1983, eq. 2.1b); empty is identity."""
    nb = float(other[0].item())
    if nb == 0:
        return
    n_a, mean_a, m2_a = _views(acc, dim)
    _, mean_b, m2_b = _views(other, dim)
    na = float(n_a.item())
    n = na + nb
    delta = mean_b - mean_a
    mean_a.add_(delta, alpha=nb / n)
    m2_a.add_(m2_b)
    if na > 0:
        m2_a.add_(delta[:, None] * delta[None, :], alpha=na * nb / n)
    n_a.fill_(n)


def moments_add(packed: Any, features: Any) -> Any:
    """Returns ``packed`` (updated in place) after adding the rows of a (B, d) feature tensor.

    The batch is moved to ``packed``'s device and computed on in float64. Raises `InputError` for a
    wrong width or non-finite features.
    """
    torch = _torch("fidkit's torch integrations")
    dim = _dim(packed)
    if features.ndim != 2 or features.shape[1] != dim:
        raise InputError(f"features must be (B, {dim}), received shape {tuple(features.shape)}")
    if features.shape[0] == 0:
        return packed
    x = features.detach().to(device=packed.device, dtype=torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise InputError("the features contain NaN or infinity; check the images and the extractor")
    mean_b = x.mean(dim=0)
    xc = x - mean_b
    batch = torch.empty_like(packed)
    batch[0] = x.shape[0]
    batch[1:1 + dim] = mean_b
    batch[1 + dim:] = (xc.T @ xc).reshape(-1)
    _merge_into(packed, batch, dim)
    return packed


def merge_moments(stacked: Any) -> Any:
    """Returns the packed moments of the union of the rows of ``stacked`` (P, L), merged in row order.

    Usable as a torchmetrics ``dist_reduce_fx``: after an all-gather, row p is process p's state.
    """
    if stacked.ndim == 1:
        return stacked
    dim = _dim(stacked)
    acc = stacked[0].clone()
    for p in range(1, stacked.shape[0]):
        _merge_into(acc, stacked[p], dim)
    return acc


def moments_stats(packed: Any, provenance: Provenance, where: str) -> Stats:
    """Returns the `Stats` (host, float64) of a packed moments tensor; raises `InputError` below 2 rows."""
    dim = _dim(packed)
    host = packed.detach().cpu().double().numpy()
    n = int(host[0])
    if n < 2:
        raise InputError(f"{where}: a covariance needs at least 2 images, {n} were seen (over all "
                         f"processes); call update with more images before compute")
    m2 = host[1 + dim:].reshape(dim, dim)
    return Stats(n, host[1:1 + dim].copy(), (m2 + m2.T) / (2.0 * (n - 1)), provenance)


# --- gathering rows across processes ---------------------------------------------------------------------

def gather_rows(rows: Any, all_gather: Callable[[Any], Any], world_size: int) -> Any:
    """Returns the (N, d) rows of every process, concatenated in rank order; ranks may hold any number of
    rows, none included.

    ``all_gather(t)`` must return the concatenation along dim 0 of every process's ``t`` (all of one
    shape), as ``ignite.distributed.all_gather`` does; the rows are padded to the largest count for it.
    """
    torch = _torch("fidkit's torch integrations")
    if world_size <= 1:
        return rows
    count = torch.tensor([rows.shape[0]], dtype=torch.int64, device=rows.device)
    counts = [int(c) for c in all_gather(count).reshape(-1).tolist()]
    most = max(counts)
    padded = torch.zeros((most,) + tuple(rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[:rows.shape[0]] = rows
    every = all_gather(padded).reshape((world_size, most) + tuple(rows.shape[1:]))
    return torch.cat([every[p, :c] for p, c in enumerate(counts)], dim=0)


# --- images -> features ------------------------------------------------------------------------------------

class ImageFeatures:
    """The images → features stage of a metric: a fidkit extractor on the torch runtime, its declared
    input convention, and the provenance it gives the results.

    ``extractor``: a registered name (built on ``device``, and again on the device images arrive on) or
    an `Extractor` on the torch runtime (``fidkit.from_torch(model, layer, name=..., input_size=...)``
    for a model of your own). ``policy`` overrides the resize policy; ``value_range`` and ``layout``
    declare the images (`fidkit.image_rules`: uint8 is 0..255; a float range is inferred only when
    unambiguous; the range is checked on every batch).
    """

    def __init__(self, extractor: str | Extractor, *, policy: str | None, value_range: ValueRange | str | None,
                 layout: str | None, device: str | None, where: str) -> None:
        self.where = where
        self.value_range = parse_value_range(value_range)
        self.layout = layout
        self._built: dict[str, Extractor] = {}
        if isinstance(extractor, str):
            get_spec(extractor)  # an unknown name fails here, before any weights are looked for
            self._name: str | None = extractor
            self._policy = policy
            first = self._build(device or "cpu")
        elif isinstance(extractor, Extractor):
            if extractor.runtime != "torch":
                raise InputError(f"{where}: extractor {extractor.name!r} runs on {extractor.runtime}; "
                                 f"build it on torch: fidkit.extractor({extractor.name!r}, runtime='torch')")
            first = extractor.with_policy(policy) if policy is not None else extractor
            self._name = None
            self._built[str(first.device)] = first
        else:
            hint = ("wrap the model: fidkit.from_torch(model, 'layer.path', name='my-model-v1', "
                    "input_size=(h, w))" if _is_module(extractor) else "pass a registered name "
                    "(fidkit.available_extractors()) or a fidkit.Extractor")
            raise InputError(f"{where}: extractor must be a name or a fidkit.Extractor, received "
                             f"{type(extractor).__name__}; {hint}")
        self.first = first
        self._first_device = str(first.device)
        self.feature_dim = int(first.feature_dim)
        self.logits_dim = None if first.logits_dim is None else int(first.logits_dim)
        self.provenance = Provenance.from_extractor(first)

    def __deepcopy__(self, memo: dict[int, Any]) -> ImageFeatures:
        # a metric's clone shares the extractors: they hold networks and closures, and no per-metric state
        new = copy.copy(self)
        new._built = dict(self._built)
        memo[id(self)] = new
        return new

    def __getstate__(self) -> dict[str, Any]:
        if self._name is None:
            raise InputError(f"{self.where}: a metric built on a fidkit.Extractor object cannot be pickled "
                             f"(the extractor holds closures); build the metric with a registered "
                             f"extractor name to pickle it")
        state = dict(self.__dict__)
        state["_built"], state["first"] = {}, None   # rebuilt from the name on unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.first = self._build(self._first_device)

    def _build(self, device: str) -> Extractor:
        ex = self._built.get(device)
        if ex is None:
            ex = build_extractor(self._name, runtime="torch", device=device, policy=self._policy)
            self._built[device] = ex
        return ex

    def extractor_for(self, images: Any) -> Extractor:
        """Returns the extractor for a batch: a named one built on the batch's device (once per device)."""
        if self._name is None:
            return self.first
        dev = getattr(images, "device", None)
        if dev is None or dev.type not in ("cpu", "cuda"):
            return self.first
        return self._build("cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}")

    def outputs(self, images: Any) -> dict[str, Any]:
        """Returns {'features', 'logits'?} of a batch as torch tensors on the extractor's device."""
        torch = _torch(self.where)
        if not isinstance(images, torch.Tensor):
            raise InputError(f"{self.where}: update expects a torch.Tensor batch of images (N, C, H, W), "
                             f"received {type(images).__name__}")
        ex = self.extractor_for(images)
        return ex.outputs(images, layout=self.layout, value_range=self.value_range, host=False,
                          name=f"{self.where} images")


def _is_module(obj: Any) -> bool:
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


# --- the reference side --------------------------------------------------------------------------------------

def reference_stats(reference: Any, features: ImageFeatures, allow_mismatch: bool) -> Stats:
    """Returns the real-side `Stats` from ``reference`` (a `Stats` or a statistics/features file), checked
    against the extractor's provenance (`fidkit.stats.check_compatible`)."""
    if isinstance(reference, (str, os.PathLike)):
        if not os.path.exists(reference):
            raise InputError(f"{features.where}: reference {os.fspath(reference)!r} is not a file; pass a "
                             f"fidkit.Stats or a statistics file (`fidkit stats real/ -o real.npz`)")
        from ..stats import load

        reference = load(reference)
    if not isinstance(reference, Stats):
        raise InputError(f"{features.where}: reference must be a fidkit.Stats or a statistics file, "
                         f"received {type(reference).__name__}")
    if reference.dim != features.feature_dim:
        raise InputError(f"{features.where}: reference statistics are {reference.dim}-d, but extractor "
                         f"{features.provenance.extractor!r} gives {features.feature_dim}-d features")
    check_provenance(reference.provenance, features.provenance, allow_mismatch)
    return reference


def reference_features(reference: Any, features: ImageFeatures,
                       allow_mismatch: bool) -> tuple[np.ndarray, Provenance | None]:
    """Returns the real-side feature rows (N, d) float64 and their provenance (None for bare rows) from
    ``reference``: an array or tensor of rows, or a features file (`fidkit features real/ -o real.npz`,
    checked against the extractor's provenance)."""
    where = features.where
    provenance = None
    if isinstance(reference, Stats):
        raise InputError(f"{where}: this metric needs the real feature rows, not their statistics; pass "
                         f"a features file (`fidkit features real/ -o real_features.npz`) or an (N, "
                         f"{features.feature_dim}) array")
    if isinstance(reference, (str, os.PathLike)):
        from ..features import load_features

        loaded = load_features(reference)
        check_provenance(loaded.provenance, features.provenance, allow_mismatch)
        rows, provenance = loaded.features, loaded.provenance
    elif hasattr(reference, "detach"):
        rows = reference.detach().cpu().double().numpy()
    else:
        rows = np.asarray(reference)
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != features.feature_dim:
        raise InputError(f"{where}: reference features must be (N, {features.feature_dim}) for extractor "
                         f"{features.provenance.extractor!r}, received shape {rows.shape}")
    if not np.all(np.isfinite(rows)):
        raise InputError(f"{where}: reference features contain NaN or infinity")
    return rows, provenance


# --- results ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricResult:
    """One computed metric with what it was computed from: ``value`` (a float, or a dict of floats for
    metrics with several numbers), ``std`` (over subsets or splits, where the metric has one), the
    sample counts, and the provenance of the generated side and of the real side."""

    metric: str
    value: float | dict[str, float]
    n_fake: int
    n_real: int | None = None
    std: float | None = None
    provenance: Provenance = Provenance()
    reference: Provenance | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        val = (", ".join(f"{k} {v:.6g}" for k, v in self.value.items()) if isinstance(self.value, dict)
               else f"{self.value:.6g}" + ("" if self.std is None else f" ± {self.std:.3g}"))
        real = "" if self.n_real is None else f"{self.n_real} real, "
        return (f"{self.metric} {val} (n = {real}{self.n_fake} fake; extractor {self.provenance.extractor}, "
                f"resize policy {self.provenance.resize_policy})")
