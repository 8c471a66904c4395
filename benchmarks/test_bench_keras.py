"""Keras callback overhead: `fidkit.integrations.keras.FIDCallback`'s per-epoch cost over the bare extraction.

Run: ``pytest benchmarks/test_bench_keras.py --benchmark-columns=min,mean,rounds --benchmark-group-by=group``.
Keras picks its backend at import: this file asks for ``torch`` (``KERAS_BACKEND``, unless already set or
keras already imported; the backend used is in ``extra_info``). Under ``--benchmark-disable`` (CI) `N_SMOKE`
samples instead of `N_SAMPLES`.

Same samples, same extractor object (the shipped ``mnist`` extractor on the backend's runtime), reference
statistics of `N_REFERENCE` MNIST digits computed once before the timing (``on_train_begin``'s work):

- ``bare``: ``sample_fn(num, seed)``, then ``extractor.features`` batch by batch (the callback's
  ``batch_size``), a `fidkit.StatsAccumulator` and `fidkit.frechet_distance` against the reference;
- ``callback``: ``FIDCallback.on_epoch_end`` with ``score_options={"bootstrap": 0}``: the same work
  through `fidkit.compute_features` and `fidkit.score` (input checks, provenance, the logs);
- ``callback-default``: ``FIDCallback.on_epoch_end`` with its defaults, which include `fidkit.score`'s
  default bootstrap interval (`fidkit.metrics.DEFAULT_BOOTSTRAP` resamples of the FID) at every evaluation.

The logged FID is checked against the bare FID (same features, same statistics up to the order of float64
sums).
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "torch")
if os.environ.get("KERAS_BACKEND", "torch") == "torch":
    pytest.importorskip("torch")  # torch before tensorflow, always
keras = pytest.importorskip("keras")

import fidkit  # noqa: E402

N_SAMPLES = 2000
N_SMOKE = 100
BATCH_SIZE = 50
SEED = 7


N_REFERENCE, N_REFERENCE_SMOKE = 2000, 200


@pytest.fixture(scope="module")
def reference(request) -> tuple:
    """(reference Stats, extractor): the first callback's ``on_train_begin`` work, done once per module."""
    import fidkit.integrations.keras as fk

    disabled = request.config.getoption("benchmark_disable", False)
    digits, _ = fidkit.load_mnist()
    cb = fk.FIDCallback(digits[:N_REFERENCE_SMOKE if disabled else N_REFERENCE], lambda num, seed: None, 2,
                        batch_size=BATCH_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)  # fewer than 10,000 samples: intended
        cb.on_train_begin()
    return cb.evaluation.reference, cb.extractor


def _setup(n: int, options: dict | None, reference: tuple):
    import fidkit.integrations.keras as fk

    digits, _ = fidkit.load_mnist()
    pool = (digits[-n:].astype(np.float32) / 127.5 - 1.0) * 0.9  # a tanh generator's range

    def sample_fn(num: int, seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).standard_normal(pool.shape, dtype=np.float32) * 0.05
        return np.clip(pool[:num] + noise[:num], -1, 1)

    kwargs = {} if options is None else {"score_options": options}
    stats, ex = reference
    cb = fk.FIDCallback(stats, sample_fn, n, extractor=ex, seed=SEED, value_range=(-1, 1),
                        batch_size=BATCH_SIZE, **kwargs)
    cb.on_train_begin()
    return cb, sample_fn


@pytest.mark.parametrize("impl", ["bare", "callback", "callback-default"])
@pytest.mark.parametrize("runtime", ["keras"])  # sorted with the torch-based benchmarks (conftest)
def test_bench_keras_callback_overhead(benchmark, impl: str, runtime: str, reference: tuple) -> None:
    n = N_SMOKE if benchmark.disabled else N_SAMPLES
    cb, sample_fn = _setup(n, None if impl == "callback-default" else {"bootstrap": 0}, reference)
    ex, ref = cb.extractor, cb.evaluation.reference

    def bare() -> float:
        images = sample_fn(n, SEED)
        acc = fidkit.StatsAccumulator()
        for lo in range(0, n, BATCH_SIZE):
            acc.update(ex.features(images[lo:lo + BATCH_SIZE], value_range=(-1, 1)))
        s = acc.stats()
        return fidkit.frechet_distance(ref.mean, ref.cov, s.mean, s.cov)

    def callback() -> float:
        logs: dict = {}
        cb.on_epoch_end(0, logs)
        return logs["fid"]

    def run() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fidkit.FidkitWarning)
            return bare() if impl == "bare" else callback()

    if not benchmark.disabled:
        run()  # first call: backend kernels, thread pools
    benchmark.group = f"Keras FIDCallback per epoch vs bare extraction, {n} samples, mnist"
    value = benchmark.pedantic(run, rounds=1 if benchmark.disabled else 5, iterations=1, warmup_rounds=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        reference_fid = bare()
    benchmark.extra_info.update({"impl": impl, "fid": value, "keras_backend": keras.backend.backend(),
                                 "runtime": ex.runtime})
    assert abs(value - reference_fid) <= 1e-10 * abs(reference_fid)
