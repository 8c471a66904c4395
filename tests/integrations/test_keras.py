"""fidkit.integrations.keras: the callback's logged values are `fidkit.score` of the same seeded samples.

Keras picks its backend once, at import, so each backend runs in its own subprocess
(KERAS_BACKEND=jax / tensorflow / torch) that trains a tiny generator for 3 epochs with `FIDCallback`
(FID + KID, every epoch, and FID alone every 2 epochs under a prefix), `EarlyStopping(monitor="fid")`,
`ModelCheckpoint(monitor="fid")`, `CSVLogger` and `TensorBoard` after it, then reports JSON: the
History values, `fidkit.score` recomputed on the samples the callback drew (same extractor, same
batches: equal to 1e-12 relative), the noise of a generator model recomputed from the documented rule,
and `FID` under ``model.evaluate``. The tests below judge the report. About 25 s per backend on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_runtime

WORKER = r'''
import json, os, sys, warnings
BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "torch":
    import torch  # noqa: F401  (torch before tensorflow, which TensorBoard imports)
import numpy as np
import keras
import fidkit
import fidkit.integrations.keras as fk

warnings.simplefilter("ignore", fidkit.FidkitWarning)     # n < 10,000 samples: intended here
out_dir = sys.argv[1]
keras.utils.set_random_seed(0)
digits, _ = fidkit.load_mnist()
reference = digits[:300]
LATENT, N = 8, 120

gen = keras.Sequential([keras.Input((LATENT,)), keras.layers.Dense(28 * 28, activation="tanh"),
                        keras.layers.Reshape((28, 28, 1))])
gen.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
target = (digits[300:556, :, :, None] / 127.5 - 1).astype("float32")    # fit pulls the output to digits
z_train = np.random.default_rng(1).standard_normal((256, LATENT)).astype("float32")

drawn = []
def sample_fn(num, seed):
    z = np.random.default_rng(seed).standard_normal((num, LATENT)).astype("float32")
    images = gen.predict(z, batch_size=64, verbose=0)
    drawn.append((seed, np.array(images)))
    return images

cb = fk.FIDCallback(reference, sample_fn, N, metrics=("fid", "kid"), seed=7, value_range=(-1, 1),
                    score_options={"kid_subsets": 10})
cb2 = fk.FIDCallback(reference, gen, N, every_n_epochs=2, latent_shape=(LATENT,), seed=3,
                     name="g", value_range=(-1, 1))
es = keras.callbacks.EarlyStopping(monitor="fid", patience=5, mode="min")
ckpt = keras.callbacks.ModelCheckpoint(os.path.join(out_dir, "best.keras"), monitor="fid", mode="min",
                                       save_best_only=True)
csv = keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"))
import importlib.util
has_tb = importlib.util.find_spec("tensorboard") is not None     # Keras' TensorBoard needs the package
tb = [keras.callbacks.TensorBoard(os.path.join(out_dir, "tb"))] if has_tb else []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    hist = gen.fit(z_train, target, epochs=3, batch_size=64, verbose=0, callbacks=[cb, cb2, es, ckpt, csv, *tb])
monitor_warnings = [str(w.message) for w in caught if not issubclass(w.category, fidkit.FidkitWarning)
                    and "fid" in str(w.message).lower()]   # "metric `fid` which is not available"

ex = cb.extractor
rescored = [fidkit.score(reference, images, ("fid", "kid"), ex, seed=7, kid_subsets=10)   # ranges inferred
            for _, images in drawn]
gen_noise = np.random.default_rng(3).standard_normal((N, LATENT), dtype=np.float32)
gen_final = fidkit.score(reference, gen.predict(gen_noise, batch_size=50, verbose=0), "fid", ex)["fid"]

# FID as a metric under model.evaluate: y_true batches as the reference, or a fixed reference
z_eval = np.random.default_rng(5).standard_normal((150, LATENT)).astype("float32")
real_eval = digits[600:750, :, :, None]
gen.compile(loss="mse", metrics=[fk.FID(extractor=ex, value_range=(-1, 1), reference_value_range=(0, 255)),
                                 fk.FID(reference, extractor=ex, value_range=(-1, 1), name="fid_ref")],
            run_eagerly=True)
ev = gen.evaluate(z_eval, real_eval.astype("float32"), batch_size=50, verbose=0, return_dict=True)
fake_eval = gen.predict(z_eval, batch_size=50, verbose=0)
acc = lambda x, **kw: fidkit.StatsAccumulator(fidkit.Provenance.from_extractor(ex)).update(
    np.concatenate([ex.features(x[i:i + 50], **kw) for i in range(0, len(x), 50)])).stats()
ev_ref = fidkit.stats.fid(acc(real_eval, value_range=(0, 255)), acc(fake_eval, value_range=(-1, 1)))
ev_fixed = fidkit.score(reference, fake_eval, "fid", ex)["fid"]
gen.compile(loss="mse", metrics=[fk.FID(reference, extractor=ex, value_range=(-1, 1))])
try:
    gen.evaluate(z_eval, real_eval.astype("float32"), batch_size=50, verbose=0)
    compiled_error = None
except Exception as exc:
    compiled_error = f"{type(exc).__name__}: {exc}"

tb_files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(out_dir, "tb")) for f in fs]
print(json.dumps({
    "backend": keras.backend.backend(), "runtime": ex.runtime, "history": hist.history,
    "seeds": [s for s, _ in drawn], "rescored": [{"fid": r["fid"], "kid": r["kid"]["mean"]} for r in rescored],
    "results_epochs": [e for e, _ in cb.results], "gen_final": gen_final,
    "csv": open(os.path.join(out_dir, "log.csv")).read(), "checkpoint": os.path.exists(os.path.join(out_dir, "best.keras")),
    "tensorboard_fid": any(b"epoch_fid" in open(f, "rb").read() for f in tb_files) if has_tb else None,
    "monitor_warnings": monitor_warnings, "stopped_epoch": es.stopped_epoch,
    "evaluate": ev, "evaluate_expected": {"fid": ev_ref, "fid_ref": ev_fixed}, "compiled_error": compiled_error,
}))
'''

BACKENDS = {"jax": "jax", "tensorflow": "tf", "torch": "torch"}
_REPORTS: dict[str, dict] = {}


def _report(backend: str, tmp_path: Path) -> dict:
    """Runs the worker under ``KERAS_BACKEND=backend`` once and returns its JSON report."""
    require_runtime(BACKENDS[backend])
    if backend not in _REPORTS:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path)], capture_output=True, text=True,
                              env=env, check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        _REPORTS[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _REPORTS[backend]


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_callback_logs_fidkit_score(backend: str, tmp_path: Path) -> None:
    r = _report(backend, tmp_path)
    assert (r["backend"], r["runtime"]) == (backend, BACKENDS[backend])
    h = r["history"]
    assert len(h["fid"]) == len(h["kid"]) == len(h["loss"]) == 3
    assert r["seeds"] == [7, 7, 7]                              # the same noise at every evaluation
    assert r["results_epochs"] == [0, 1, 2]
    for logged_fid, logged_kid, again in zip(h["fid"], h["kid"], r["rescored"], strict=True):
        assert logged_fid == pytest.approx(again["fid"], rel=1e-12, abs=1e-12)
        assert logged_kid == pytest.approx(again["kid"], rel=1e-12, abs=1e-12)
    assert len(set(h["fid"])) == 3                              # the generator moved between epochs
    # every 2 epochs, plus the last: epochs 2 and 3 (1-based); the generator's noise is the documented one
    assert len(h["g_fid"]) == 2
    assert h["g_fid"][-1] == pytest.approx(r["gen_final"], rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_keras_callbacks_see_the_values(backend: str, tmp_path: Path) -> None:
    r = _report(backend, tmp_path)
    header, *rows = r["csv"].strip().splitlines()
    assert "fid" in header.split(",") and "kid" in header.split(",") and len(rows) == 3
    assert r["checkpoint"]
    assert r["monitor_warnings"] == []                          # EarlyStopping / ModelCheckpoint found "fid"
    assert r["stopped_epoch"] == 0
    if r["tensorboard_fid"] is None:
        pytest.skip("tensorboard is not installed (Keras' TensorBoard callback needs it)")
    assert r["tensorboard_fid"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_fid_metric_under_evaluate(backend: str, tmp_path: Path) -> None:
    r = _report(backend, tmp_path)
    assert r["evaluate"]["fid"] == pytest.approx(r["evaluate_expected"]["fid"], rel=1e-12)
    assert r["evaluate"]["fid_ref"] == pytest.approx(r["evaluate_expected"]["fid_ref"], rel=1e-12)
    if backend != "torch":                                      # torch steps are eager unless jit_compile=True
        assert "run_eagerly=True" in (r["compiled_error"] or "")


def test_import_builds_no_keras_class() -> None:
    code = ("import sys, fidkit.integrations.keras as fk; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_runtime_mapping_and_keys() -> None:
    from fidkit.errors import InputError
    from fidkit.integrations.keras import log_keys, runtime_for_backend

    assert [runtime_for_backend(b) for b in ("jax", "tensorflow", "torch")] == ["jax", "tf", "torch"]
    with pytest.raises(InputError, match="openvino"):
        runtime_for_backend("openvino")
    assert log_keys(("fid", "kid", "pr")) == ["fid", "kid", "precision", "recall"]
    assert log_keys("fid,is", name="ema") == ["ema_fid", "ema_is"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_dcgan_example_short_run(backend: str, tmp_path: Path) -> None:
    """examples/keras_dcgan_mnist.py in its CI setting: 1 epoch of 5 steps, 200 samples scored."""
    require_runtime(BACKENDS[backend])
    pytest.importorskip("matplotlib")
    example = Path(__file__).parents[2] / "examples" / "keras_dcgan_mnist.py"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(example), "--epochs", "1", "--steps", "5", "--num-samples", "200",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, check=False,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "epoch 1: FID" in proc.stdout
    assert {"fid_per_epoch.png", "log.csv", "samples.png"} <= {p.name for p in tmp_path.iterdir()}
    assert "fid" in (tmp_path / "log.csv").read_text().splitlines()[0].split(",")


def test_reference_from_dataset_array_and_stats_file(tmp_path: Path) -> None:
    """The reference is read the same from batches ((images, labels) pairs, capped), an array and a file."""
    import numpy as np

    import fidkit
    from fidkit.integrations.keras import _reference

    digits, labels = fidkit.load_mnist()
    ex = fidkit.extractor("mnist", "numpy")
    opts = {"batch_size": 50, "value_range": None, "layout": None}
    batches = [(digits[i:i + 64], labels[i:i + 64]) for i in range(0, 320, 64)]
    from_batches = _reference(batches, ex, True, limit=150, **opts)
    from_array = _reference(digits[:150], ex, True, limit=None, **opts)
    assert from_batches.features.shape == (150, 128)
    np.testing.assert_allclose(from_batches.features, from_array.features, rtol=0, atol=1e-9)
    path = from_array.stats().save(tmp_path / "ref.npz")
    from_file = _reference(str(path), ex, False, limit=None, **opts)
    np.testing.assert_array_equal(from_file.cov, from_array.stats().cov)
    assert from_file.provenance == from_array.provenance
    with pytest.raises(fidkit.InputError, match="features"):
        _reference(str(path), ex, True, limit=None, **opts)       # KID and the k-NN metrics need features


def test_fid_metric_without_reference_needs_y_true() -> None:
    code = r'''
import os, sys
os.environ["KERAS_BACKEND"] = "numpy"
import numpy as np, fidkit
import fidkit.integrations.keras as fk
m = fk.FID(extractor=fidkit.extractor("mnist", "numpy"))
assert np.isnan(m.result())
try:
    m.update_state(None, np.zeros((4, 28, 28, 1), np.uint8))
except fidkit.InputError as exc:
    print(exc)
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "evaluate(x, real_images)" in out.stdout
