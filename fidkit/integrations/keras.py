"""fidkit inside Keras 3 training: a callback that logs FID (and KID, IS, ...) every N epochs, and a metric.

`FIDCallback` draws ``num_samples`` images at the end of every ``every_n_epochs``-th epoch — from
``sample_fn(num, seed)``, or from a generator model fed seeded Gaussian noise — and scores them with
`fidkit.score` against reference statistics (or features) computed once. The extractor runs on the
fidkit runtime matching ``keras.backend.backend()`` (jax → ``jax``, tensorflow → ``tf``, torch →
``torch``, numpy → ``numpy``). The values go into the epoch's ``logs`` under the metric names (``fid``,
``kid``, ``is``, ``precision``, ``recall``, ``density``, ``coverage``; ``name`` adds a prefix), where
``History``, ``TensorBoard`` (``epoch_fid``), ``EarlyStopping(monitor="fid")``,
``ModelCheckpoint(monitor="fid")``, ``CSVLogger`` and the progress bar read them, provided the callback
comes before them in ``callbacks=[...]`` (Keras calls callbacks in list order; History and the progress
bar are appended last). Every evaluation sees the same samples for the same generator weights: the
seed does not advance.

`FID` is a ``keras.metrics.Metric`` for ``model.evaluate`` (``compile(metrics=[FID(...)],
run_eagerly=True)``): each batch's ``y_pred`` images are passed through the extractor and their
features added, on the host in float64, to a `fidkit.StatsAccumulator` (Chan et al.'s pairwise update;
nothing is accumulated in float32 or in Keras variables); ``y_true`` is the reference when no
``reference`` is given. Host-side accumulation needs eager steps: a compiled (traced) step raises,
saying so.

Importing this module imports neither Keras nor a framework; ``FIDCallback`` and ``FID`` subclass
Keras classes and are built on first access (a module ``__getattr__``). They raise
`fidkit.BackendUnavailableError` when Keras is not installed.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputError
from ..extraction import Extractor
from ..features import FeatureResult
from ..metrics import parse_metrics
from ..stats import Provenance, Stats, StatsAccumulator

# FID and FIDCallback subclass Keras classes: `__getattr__` builds them on first access
__all__ = ["FID", "FIDCallback", "KERAS_RUNTIMES", "log_keys", "runtime_for_backend"]  # noqa: F822

_PURPOSE = "fidkit.integrations.keras"

#: Keras backend name -> the fidkit runtime that runs the extractor beside it.
KERAS_RUNTIMES = {"jax": "jax", "tensorflow": "tf", "torch": "torch", "numpy": "numpy"}

#: The number written into ``logs`` for each metric: {log key: (result key, sub-key or None)}.
_LOGGED = {"fid": {"fid": ("fid", None)},
           "kid": {"kid": ("kid", "mean")},
           "is": {"is": ("is", "mean")},
           "pr": {"precision": ("pr", "precision"), "recall": ("pr", "recall")},
           "dc": {"density": ("dc", "density"), "coverage": ("dc", "coverage")}}


def _keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise BackendUnavailableError(f"{_PURPOSE} needs 'keras' 3 ({exc}): pip install keras "
                                      f"and one of 'fidkit[jax]', 'fidkit[tf]', 'fidkit[torch]'") from None
    return keras


def runtime_for_backend(backend: str) -> str:
    """Returns the fidkit runtime for a Keras backend name; raises `InputError` for one fidkit lacks."""
    try:
        return KERAS_RUNTIMES[backend]
    except KeyError:
        raise InputError(f"{_PURPOSE}: Keras backend {backend!r} has no fidkit runtime; expected one of "
                         f"{', '.join(KERAS_RUNTIMES)}, or pass runtime= (e.g. 'numpy') or an Extractor") from None


def log_keys(metrics: str | Sequence[str], name: str | None = None) -> list[str]:
    """Returns the ``logs`` keys the callback writes for ``metrics``: ``fid``, ``kid``, ``is``,
    ``precision``/``recall``, ``density``/``coverage``, each as ``{name}_{key}`` when ``name`` is given."""
    prefix = f"{name}_" if name else ""
    return [prefix + key for m in parse_metrics(metrics) for key in _LOGGED[m]]


def _build_extractor(extractor: Extractor | str, runtime: str | None, device: str) -> Extractor:
    if isinstance(extractor, Extractor):
        return extractor
    if not isinstance(extractor, str):
        raise InputError(f"{_PURPOSE}: extractor must be a registered name or a fidkit.Extractor, "
                         f"received {type(extractor).__name__}")
    from ..pipeline import _as_extractor

    rt = runtime or runtime_for_backend(_keras().backend.backend())
    return _as_extractor(extractor, rt, None, device)


def _first(element: Any) -> Any:
    """Returns the images of one dataset element: ``x`` of ``(x, y, ...)``, ``x["image(s)"]``, or ``x``."""
    if isinstance(element, (tuple, list)):
        return element[0]
    if isinstance(element, dict):
        for key in ("image", "images", "x"):
            if key in element:
                return element[key]
        raise InputError(f"{_PURPOSE}: reference dataset elements are dicts with keys {sorted(element)}; "
                         f"expected an 'image' or 'images' key, or (images, labels) tuples")
    return element


def _features_of_batches(batches: Iterable[Any], ex: Extractor, *, limit: int | None, batch_size: int,
                         value_range: Any, layout: str | None, label: str) -> FeatureResult:
    """Returns the features and logits of the images in ``batches`` (the first ``limit`` rows)."""
    from ..images import to_numpy
    from ..pipeline import compute_features

    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    n = 0
    for element in batches:
        x = to_numpy(_first(element))
        if limit is not None:
            x = x[:limit - n]
        if len(x) == 0:
            break
        out = compute_features(x, ex, batch_size=batch_size, progress=False, value_range=value_range,
                               layout=layout)
        feats.append(out.features)
        if out.logits is not None:
            logits.append(out.logits)
        n += len(x)
        if limit is not None and n >= limit:
            break
    if n < 2:
        raise InputError(f"{_PURPOSE}: {label} gave {n} images; at least 2 are needed")
    return FeatureResult(np.concatenate(feats), np.concatenate(logits) if logits else None,
                         [str(i) for i in range(n)], Provenance.from_extractor(ex))


def _reference(reference: Any, ex: Extractor, need_features: bool, *, limit: int | None,
               batch_size: int, value_range: Any, layout: str | None) -> Stats | FeatureResult:
    """Returns the reference as `Stats` (FID only) or a `FeatureResult` (features needed)."""
    from ..images import is_framework_tensor, to_numpy
    from ..inputs import operand

    if is_framework_tensor(reference):
        reference = to_numpy(reference)
    if isinstance(reference, np.ndarray) and limit is not None:
        reference = reference[:limit]
    if isinstance(reference, (Stats, FeatureResult, np.ndarray, str)) or hasattr(reference, "__fspath__"):
        op = operand(reference, ex, "reference", with_features=need_features, batch_size=batch_size,
                     progress=False, value_range=value_range, layout=layout)
        if need_features:
            return op.need_features("the requested metrics")
        return op.get_stats()
    if isinstance(reference, Iterable):  # a tf.data.Dataset, a DataLoader, a PyDataset, a list of batches
        res = _features_of_batches(reference, ex, limit=limit, batch_size=batch_size,
                                   value_range=value_range, layout=layout, label="the reference dataset")
        return res if need_features else res.stats()
    raise InputError(f"{_PURPOSE}: cannot read a reference from a {type(reference).__name__}; expected "
                     f"fidkit.Stats, a statistics or features file, an image folder/array/tensor, or a "
                     f"dataset of image batches")


def _noise(seed: int, num: int, latent_shape: tuple[int, ...]) -> np.ndarray:
    """Returns the generator input of every evaluation: ``num`` standard normal float32 vectors from
    ``numpy.random.default_rng(seed)`` (the same on every backend and at every epoch)."""
    return np.random.default_rng(seed).standard_normal((num, *latent_shape), dtype=np.float32)


class _Evaluation:
    """The framework-free part of `FIDCallback`: the reference, the samples and the scores."""

    def __init__(self, reference: Any, sample_fn: Any, num_samples: int, *, latent_shape: Any,
                 metrics: str | Sequence[str], extractor: Extractor | str, runtime: str | None,
                 device: str, seed: int, name: str | None, batch_size: int, value_range: Any,
                 reference_value_range: Any, layout: str | None, reference_limit: int | None,
                 score_options: dict[str, Any]) -> None:
        if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples < 2:
            raise InputError(f"{_PURPOSE}: num_samples must be an int >= 2, received {num_samples!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise InputError(f"{_PURPOSE}: seed must be an int, received {seed!r}")
        self.metrics = parse_metrics(metrics)
        self.keys = log_keys(self.metrics, name)
        self.prefix = f"{name}_" if name else ""
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.value_range = value_range
        self.layout = layout
        self.score_options = dict(score_options)
        self._sample = self._sampler(sample_fn, latent_shape)
        self._reference_input = reference
        self._reference_opts = {"limit": reference_limit, "batch_size": self.batch_size,
                                "value_range": reference_value_range, "layout": layout}
        self._extractor_args = (extractor, runtime, device)
        self.extractor: Extractor | None = None
        self.reference: Stats | FeatureResult | None = None

    def _sampler(self, sample_fn: Any, latent_shape: Any) -> Callable[[], Any]:
        keras = _keras()
        if isinstance(sample_fn, keras.Model):
            if latent_shape is None:
                raise InputError(f"{_PURPOSE}: a generator model needs latent_shape= (the shape of one "
                                 f"noise vector, e.g. (128,)), or pass sample_fn(num, seed) -> images")
            shape = (int(latent_shape),) if isinstance(latent_shape, (int, np.integer)) else \
                tuple(int(s) for s in latent_shape)
            model = sample_fn
            return lambda: model.predict(_noise(self.seed, self.num_samples, shape),
                                         batch_size=self.batch_size, verbose=0)
        if not callable(sample_fn):
            raise InputError(f"{_PURPOSE}: sample_fn must be a callable sample_fn(num, seed) -> images or "
                             f"a keras.Model generator, received {type(sample_fn).__name__}")
        if latent_shape is not None:
            raise InputError(f"{_PURPOSE}: latent_shape applies to a generator model, not to sample_fn")
        return lambda: sample_fn(self.num_samples, self.seed)

    def prepare(self) -> None:
        """Builds the extractor and computes the reference, once."""
        if self.extractor is None:
            self.extractor = _build_extractor(*self._extractor_args)
        if self.reference is None:
            need = any(m != "fid" for m in self.metrics)
            self.reference = _reference(self._reference_input, self.extractor, need,
                                        **self._reference_opts)
            self._reference_input = None  # computed once; do not keep the images alive

    def samples(self) -> np.ndarray:
        """Returns this evaluation's ``num_samples`` images as a numpy array."""
        from ..images import to_numpy

        images = self._sample()
        keras = _keras()
        if not isinstance(images, np.ndarray):
            images = to_numpy(keras.ops.convert_to_numpy(images) if keras.ops.is_tensor(images) else images)
        if images.ndim < 3 or len(images) != self.num_samples:
            raise InputError(f"{_PURPOSE}: sample_fn returned shape {images.shape}; expected "
                             f"{self.num_samples} images (N, H, W[, C]) or (N, C, H, W)")
        return images

    def score(self, images: np.ndarray) -> dict[str, Any]:
        """Returns `fidkit.score` of ``images`` against the reference (what the callback logs)."""
        from ..pipeline import compute_features
        from ..scoring import score

        self.prepare()
        fake = compute_features(images, self.extractor, batch_size=self.batch_size, progress=False,
                                value_range=self.value_range, layout=self.layout)
        return score(self.reference, fake, self.metrics, self.extractor, batch_size=self.batch_size,
                     seed=self.seed, **self.score_options)

    def logged(self, result: dict[str, Any]) -> dict[str, float]:
        """Returns the numbers of a `score` result under their ``logs`` keys."""
        out = {}
        for m in self.metrics:
            for key, (rkey, sub) in _LOGGED[m].items():
                value = result[rkey] if sub is None else result[rkey][sub]
                out[self.prefix + key] = float(value)
        return out


class _Accumulation:
    """The framework-free part of `FID`: float64 host-side statistics of the batches seen."""

    def __init__(self, reference: Any, extractor: Extractor | str, runtime: str | None, device: str,
                 value_range: Any, reference_value_range: Any, layout: str | None) -> None:
        self._reference_input = reference
        self._extractor_args = (extractor, runtime, device)
        self.value_range = value_range
        self.reference_value_range = reference_value_range
        self.layout = layout
        self.extractor: Extractor | None = None
        self.reference: Stats | None = None
        self.reset()

    def reset(self) -> None:
        self.fake: StatsAccumulator | None = None
        self.real: StatsAccumulator | None = None
        self._value: float | None = None

    def prepare(self) -> Extractor:
        if self.extractor is None:
            self.extractor = _build_extractor(*self._extractor_args)
        if self.reference is None and self._reference_input is not None:
            self.reference = _reference(self._reference_input, self.extractor, False, limit=None,
                                        batch_size=50, value_range=self.reference_value_range,
                                        layout=self.layout)
            self._reference_input = None
        return self.extractor

    def update(self, y_true: Any, y_pred: Any) -> None:
        from ..images import to_numpy

        ex = self.prepare()
        if self.reference is None and y_true is None:
            raise InputError(f"{_PURPOSE}.FID: no reference was given, so the y_true batches are the "
                             f"real images, and evaluate() received none; pass FID(reference=...) "
                             f"(Stats, a statistics file, images) or evaluate(x, real_images)")
        prov = Provenance.from_extractor(ex)
        if self.fake is None:
            self.fake = StatsAccumulator(prov)
        self.fake.update(ex.features(to_numpy(y_pred), layout=self.layout, value_range=self.value_range))
        if self.reference is None:
            if self.real is None:
                self.real = StatsAccumulator(prov)
            self.real.update(ex.features(to_numpy(y_true), layout=self.layout,
                                         value_range=self.reference_value_range))
        self._value = None

    def result(self) -> float:
        from ..stats import fid

        if self.fake is None or self.fake.n < 2:
            return math.nan
        if self._value is None:
            real = self.reference if self.reference is not None else self.real.stats()
            self._value = fid(real, self.fake.stats())
        return self._value


def _symbolic_build() -> bool:
    """Returns whether Keras is building state from shapes (``compute_output_spec``), not running a step."""
    try:  # not in Keras' public API; without it, a shape-only call is treated as a traced step
        from keras.src.backend import in_symbolic_scope
    except ImportError:
        return False
    return bool(in_symbolic_scope())


def _traced(x: Any) -> bool:
    """Returns whether ``x`` is a symbolic or traced tensor (a compiled step), not a concrete one."""
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(x, keras.KerasTensor):
        return True
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.core.Tracer):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.Tensor) and not tf.executing_eagerly():
        return True
    torch = sys.modules.get("torch")
    return bool(torch is not None and isinstance(x, torch.Tensor) and torch.compiler.is_compiling())


@functools.cache
def _classes() -> dict[str, type]:
    """Returns the Keras subclasses, built once on first access (importing Keras then, not before)."""
    keras = _keras()

    class FIDCallback(keras.callbacks.Callback):
        """Scores ``num_samples`` generated images with fidkit every ``every_n_epochs`` epochs into ``logs``.

        ``reference``: `fidkit.Stats`, a statistics or features file, an image array / tensor / folder,
        or a dataset of image batches (``tf.data.Dataset``, ``torch.utils.data.DataLoader``,
        ``keras.utils.PyDataset``, any iterable; ``(images, labels)`` elements are fine, at most
        ``reference_limit`` images are read); processed once, before the first epoch. Statistics
        suffice for FID; KID, PR and DC need features (images or a features file).
        ``sample_fn(num, seed) -> images`` (numpy or backend tensors, NHWC / NCHW / NHW; it must
        return the same images for the same seed and weights), or a ``keras.Model`` generator with
        ``latent_shape``: its input is then ``numpy.random.default_rng(seed).standard_normal((num,
        *latent_shape), dtype=float32)``, run through ``model.predict`` in batches of ``batch_size``.
        ``metrics``: names of `fidkit.metrics` ("fid", "kid", "is", "pr", "dc"); ``extractor``: a
        registered name built on the runtime of ``keras.backend.backend()`` (or ``runtime=``) and
        ``device``, or a `fidkit.Extractor`. ``value_range`` / ``reference_value_range`` declare float
        images' range ((-1, 1) for tanh); ``seed`` also seeds KID's subsets. Evaluated after epochs
        e (0-based) with (e + 1) % every_n_epochs == 0, and after the last epoch; on other epochs the keys
        are absent (as Keras does for validation_freq). ``score_options`` go to `fidkit.score`
        (``kid_subsets``, ``k``, ...). ``results`` lists (epoch, full `fidkit.score` result) pairs;
        ``verbose`` prints one line per evaluation.
        """

        def __init__(self, reference: Any, sample_fn: Any, num_samples: int, every_n_epochs: int = 1,
                     metrics: str | Sequence[str] = ("fid",), extractor: Extractor | str = "mnist",
                     seed: int = 0, name: str | None = None, *, latent_shape: Any = None,
                     runtime: str | None = None, device: str = "auto", batch_size: int = 50,
                     value_range: Any = None, reference_value_range: Any = None,
                     layout: str | None = None, reference_limit: int | None = None,
                     score_options: dict[str, Any] | None = None, verbose: int = 0) -> None:
            super().__init__()
            if not isinstance(every_n_epochs, (int, np.integer)) or every_n_epochs < 1:
                raise InputError(f"{_PURPOSE}: every_n_epochs must be a positive int, "
                                 f"received {every_n_epochs!r}")
            self.every_n_epochs = int(every_n_epochs)
            self.verbose = verbose
            self.evaluation = _Evaluation(
                reference, sample_fn, num_samples, latent_shape=latent_shape, metrics=metrics,
                extractor=extractor, runtime=runtime, device=device, seed=seed, name=name,
                batch_size=batch_size, value_range=value_range,
                reference_value_range=reference_value_range, layout=layout,
                reference_limit=reference_limit, score_options=score_options or {})
            self.results: list[tuple[int, dict[str, Any]]] = []

        @property
        def keys(self) -> list[str]:
            """The ``logs`` keys this callback writes."""
            return list(self.evaluation.keys)

        @property
        def extractor(self) -> Extractor:
            """The extractor the scores use (built on first use)."""
            self.evaluation.prepare()
            return self.evaluation.extractor

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.evaluation.prepare()  # reference errors now, not after the first epoch

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            last = self.params.get("epochs") if self.params else None
            if (epoch + 1) % self.every_n_epochs and (last is None or epoch + 1 != last):
                return
            result = self.evaluation.score(self.evaluation.samples())
            self.results.append((epoch, result))
            values = self.evaluation.logged(result)
            if logs is not None:
                logs.update(values)
            if self.verbose:
                text = " - ".join(f"{k}: {v:.6g}" for k, v in values.items())
                print(f"fidkit epoch {epoch + 1}: {text}")

    class FID(keras.metrics.Metric):
        """FID of ``model.evaluate``'s predictions, from float64 statistics accumulated on the host.

        ``y_pred`` holds a batch of generated images; the reference is ``reference`` (processed once,
        as in `FIDCallback`) or, when None, the ``y_true`` batches. Each batch runs through the
        extractor (a name built on the runtime of ``keras.backend.backend()``, or a `fidkit.Extractor`)
        and its features are added to a `fidkit.StatsAccumulator` (float64, Chan et al.'s pairwise
        update); ``result()`` is `fidkit.stats.fid` of the statistics (NaN before 2 images), computed
        once per new batch; ``reset_state()`` empties them. The accumulation runs in Python, so the
        model must be compiled with ``run_eagerly=True``; a traced step raises `InputError`.
        ``sample_weight`` is not supported. Not serializable with the model (``get_config`` has no
        reference): attach it again after loading.
        """

        def __init__(self, reference: Any = None, extractor: Extractor | str = "mnist", *,
                     runtime: str | None = None, device: str = "auto", value_range: Any = None,
                     reference_value_range: Any = None, layout: str | None = None,
                     name: str = "fid", dtype: Any = None) -> None:
            super().__init__(name=name, dtype=dtype)
            self.accumulation = _Accumulation(reference, extractor, runtime, device, value_range,
                                              reference_value_range, layout)

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            if _symbolic_build():  # Keras builds metrics on shapes first; there are no images yet
                return
            if any(_traced(t) for t in (y_true, y_pred)):
                raise InputError(f"{_PURPOSE}.FID accumulates float64 statistics on the host, which a "
                                 f"compiled step cannot do: compile the model with run_eagerly=True")
            if sample_weight is not None:
                raise InputError(f"{_PURPOSE}.FID: sample_weight is not supported (every image counts once)")
            self.accumulation.update(y_true, y_pred)

        def result(self) -> Any:
            return self.accumulation.result()

        def reset_state(self) -> None:
            self.accumulation.reset()

    for cls in (FIDCallback, FID):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return {"FIDCallback": FIDCallback, "FID": FID}


def __getattr__(name: str) -> Any:
    if name in ("FIDCallback", "FID"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
