"""Adapters for a user's own model: small torch, Keras and JAX models built here, checked against numpy."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.adapters import InputConvention, load_extractor, parameters_sha256
from fidkit.errors import FidkitWarning, InputError, ProvenanceMismatchError
from fidkit.resize import resize
from fidkit.stats import Provenance, Stats, check_compatible

LUMA = np.array([0.299, 0.587, 0.114])
RNG = np.random.default_rng(0)
H = W = 8
#: One tiny network, shared by all three frameworks: flatten (H, W, C order) -> dense 16 -> relu -> dense 5.
W1 = RNG.normal(size=(H * W, 16)).astype(np.float32) / 8
B1 = RNG.normal(size=16).astype(np.float32)
W2 = RNG.normal(size=(16, 5)).astype(np.float32) / 4
B2 = RNG.normal(size=5).astype(np.float32)


def _images(n: int = 6, size: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(n).uniform(0, 255, size=(n, *size, 3)).astype(np.float32)


def _reference(images: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (features, logits) of the tiny network on luminance mapped to [lo, hi], in float64."""
    x = images.astype(np.float64) @ LUMA * ((hi - lo) / 255) + lo
    emb = x.reshape(len(x), -1) @ W1.astype(np.float64) + B1
    return emb, np.maximum(emb, 0) @ W2.astype(np.float64) + B2


def _levels(images: np.ndarray) -> np.ndarray:
    """Returns float images rounded to uint8 levels: the default 'clean' policy's input quantization,
    which the preprocess applies on every route (a direct call as well as the pipeline)."""
    return np.clip(np.rint(images), 0, 255)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= tolerance("features", "vs_float64") * b.std(), np.abs(a - b).max()


# --- torch ---------------------------------------------------------------------------------------------

def _torch_model():
    require_runtime("torch")
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 16))
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(16, 5), nn.Dropout(0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    m = Tiny()
    with torch.no_grad():
        m.body[1].weight.copy_(torch.from_numpy(W1.T.copy()))
        m.body[1].bias.copy_(torch.from_numpy(B1))
        m.head[1].weight.copy_(torch.from_numpy(W2.T.copy()))
        m.head[1].bias.copy_(torch.from_numpy(B2))
    return m


def test_torch_adapter_layers_and_hooks() -> None:
    from fidkit.adapters import from_torch

    model = _torch_model().train()
    ex = from_torch(model, "body.1", logits_layer="", name="tiny-torch", input_size=(H, W), channels=1)
    assert (ex.name, ex.runtime, ex.feature_dim, ex.logits_dim, ex.input_size) == ("tiny-torch", "torch", 16, 5, (H, W))
    images = _images()
    out = ex(images)
    feats, logits = _reference(_levels(images))
    _close(out["features"], feats)
    _close(out["logits"], logits)  # Dropout is off: eval mode during extraction
    assert model.training  # ... and restored afterwards
    assert all(not m._forward_hooks for m in model.modules())


def test_torch_adapter_resizes_with_the_policy() -> None:
    from fidkit.adapters import from_torch

    ex = from_torch(_torch_model(), "body", name="tiny-torch", input_size=(H, W), channels=1,
                    policy="mnist")
    big = _images(4, (20, 20))
    _close(ex.features(big), _reference(resize(big, "mnist", (H, W)))[0])
    assert ex.policy.name == "mnist"


def test_torch_adapter_provenance_and_digest() -> None:
    import torch

    from fidkit.adapters import from_torch

    model = _torch_model()
    ex = from_torch(model, "body", name="tiny-torch", input_size=(H, W), channels=1)
    digest = parameters_sha256((k, v.numpy()) for k, v in model.state_dict().items())
    assert ex.weights_sha256 == digest
    prov = Provenance.from_extractor(ex)
    assert (prov.extractor, prov.weights_sha256, prov.resize_policy, prov.input_size) == (
        "tiny-torch", digest, "clean", f"{H}x{W}")
    with torch.no_grad():
        model.body[1].bias[0] += 1
    ex2 = from_torch(model, "body", name="tiny-torch", input_size=(H, W), channels=1)
    assert ex2.weights_sha256 != digest
    f1 = Stats.from_features(ex.features(_images()), Provenance.from_extractor(ex))
    f2 = Stats.from_features(ex2.features(_images()), Provenance.from_extractor(ex2))
    with pytest.raises(ProvenanceMismatchError, match="weights"):
        check_compatible(f1, f2)
    given = "ab" * 32
    ex3 = from_torch(model, "body", name="tiny-torch", input_size=(H, W), channels=1,
                     weights_sha256=given.upper())
    assert ex3.weights_sha256 == given and ex3.weights_source == "weights_sha256 argument"


def test_torch_adapter_rejects_bad_arguments() -> None:
    from fidkit.adapters import from_torch

    model = _torch_model()
    with pytest.raises(InputError, match="'body.7' is not a submodule.*'body'"):
        from_torch(model, "body.7", name="x", input_size=(H, W), channels=1)
    with pytest.raises(InputError, match="built-in extractor"):
        from_torch(model, "body", name="mnist", input_size=(H, W), channels=1)
    with pytest.raises(InputError, match="weights_sha256"):
        from_torch(model, "body", name="x", input_size=(H, W), channels=1, weights_sha256="abc")
    with pytest.raises(InputError, match="torch.nn.Module"):
        from_torch(lambda x: x, "body", name="x", input_size=(H, W))


def test_torch_adapter_on_the_shipped_classifier() -> None:
    """Adapting the training script's module at 'fc1' gives the built-in mnist extractor's features."""
    import importlib.util
    import sys

    import torch

    from fidkit.adapters import from_torch
    from fidkit.extraction import extractor
    from fidkit.mnist_data import load_mnist, to_rgb

    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("fidkit_train_mnist", repo / "scripts" / "train_mnist.py")
    tm = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tm
    spec.loader.exec_module(tm)
    net = tm.MnistNet()
    with np.load(repo / "fidkit" / "data" / "fidkit-mnist-v1.npz", allow_pickle=False) as z:
        net.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files}, strict=False)
    ex = from_torch(net, "fc1", logits_layer="fc2", name="my-mnist", input_size=(28, 28),
                    policy="mnist", input_range=(0, 255))
    images = to_rgb(load_mnist("test")[0][:32])
    ref = extractor("mnist", runtime="numpy")(images)
    out = ex(images)
    _close(out["features"], ref["features"])
    _close(out["logits"], ref["logits"])


# --- input conventions ------------------------------------------------------------------------------------

def test_input_convention_maps_range_and_normalises(runtime: str) -> None:
    """The runtime's preprocess ends with the network's convention: range, (x - mean) / std, layout."""
    from fidkit.registry import backend
    from fidkit.resize import get_policy

    rt = backend(runtime)
    policy = get_policy("legacy-pytorch")  # no input quantization, and (H, W) needs no resize
    images = _images(3)
    conv = InputConvention((H, W), 3, (-1.0, 1.0), (0.5,), (0.25,), "NCHW")
    x = rt.to_host(rt.preprocess(policy, conv, "cpu")(images, value_range=(0, 255)))
    expected = ((images.astype(np.float64) / 127.5 - 1) - 0.5) / 0.25
    np.testing.assert_allclose(x, expected.transpose(0, 3, 1, 2), rtol=1e-6, atol=1e-5)
    gray = rt.to_host(rt.preprocess(policy, InputConvention((H, W), channels=1), "cpu")(images))
    assert gray.shape == (3, H, W, 1)
    np.testing.assert_allclose(gray[..., 0], images @ LUMA, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("kwargs, words", [
    ({"input_size": (0, 8)}, "input_size"),
    ({"channels": 2}, "channels"),
    ({"input_range": (1.0, 1.0)}, "input_range"),
    ({"layout": "CHW"}, "layout"),
    ({"mean": (0.5,)}, "together"),
    ({"mean": (0.5,), "std": (0.0,)}, "positive"),
    ({"mean": (0.5, 0.5), "std": (1.0, 1.0)}, "one per channel"),
])
def test_input_convention_rejects(kwargs: dict, words: str) -> None:
    args = {"input_size": (H, W)} | kwargs
    with pytest.raises(InputError, match=words):
        InputConvention(**args)


def test_adapter_rejects_an_unknown_resize_policy() -> None:
    from fidkit.adapters import make_extractor

    with pytest.raises(InputError, match="unknown resize policy 'no-such-policy'"):
        make_extractor(name="tiny", runtime="numpy", convention=InputConvention((H, W)),
                       policy="no-such-policy", run=lambda x: {"features": x.reshape(len(x), -1)},
                       weights_sha256=None, weights_source="test")


# --- Keras ---------------------------------------------------------------------------------------------

def _keras_model():
    require_runtime("tf")
    import keras

    model = keras.Sequential([
        keras.Input((H, W, 1)), keras.layers.Flatten(), keras.layers.Dense(16, name="emb"),
        keras.layers.ReLU(), keras.layers.Dense(5, name="logits")])
    model.get_layer("emb").set_weights([W1, B1])
    model.get_layer("logits").set_weights([W2, B2])
    return model


def test_keras_adapter() -> None:
    from fidkit.adapters import from_keras

    model = _keras_model()
    ex = from_keras(model, "emb", logits_layer="", name="tiny-keras")
    assert (ex.runtime, ex.input_size, ex.feature_dim, ex.logits_dim) == ("tf", (H, W), 16, 5)
    images = _images()
    out = ex(images)
    feats, logits = _reference(_levels(images))
    _close(out["features"], feats)
    _close(out["logits"], logits)
    assert ex.weights_sha256 and Provenance.from_extractor(ex).extractor == "tiny-keras"
    with pytest.raises(InputError, match="'nope' is not a layer.*'emb'"):
        from_keras(model, "nope", name="tiny-keras")


def test_keras_adapter_needs_a_built_model() -> None:
    require_runtime("tf")
    import keras

    from fidkit.adapters import from_keras

    with pytest.raises(InputError, match="built"):
        from_keras(keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3, name="emb")]), "emb",
                   name="unbuilt")
    with pytest.raises(InputError, match="keras.Model"):
        from_keras(object(), "emb", name="x")


# --- JAX ------------------------------------------------------------------------------------------------

def _jax_fn():
    require_runtime("jax")
    import jax.numpy as jnp

    def fn(params, x):
        emb = x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"]
        return {"features": emb, "logits": jnp.maximum(emb, 0) @ params["w2"] + params["b2"]}

    return fn, {"w1": W1, "b1": B1, "w2": W2, "b2": B2}


def test_jax_adapter() -> None:
    from fidkit.adapters import from_jax

    fn, params = _jax_fn()
    ex = from_jax(fn, params, name="tiny-jax", input_size=(H, W), channels=1, input_range=(-1, 1))
    assert (ex.runtime, ex.feature_dim, ex.logits_dim) == ("jax", 16, 5)
    images = _images()
    out = ex(images)
    feats, logits = _reference(_levels(images), -1.0, 1.0)
    _close(out["features"], feats)
    _close(out["logits"], logits)
    assert ex.weights_sha256 == parameters_sha256(
        [("['b1']", B1), ("['b2']", B2), ("['w1']", W1), ("['w2']", W2)])


def test_jax_adapter_closure_has_unknown_digest() -> None:
    from fidkit.adapters import from_jax

    fn, params = _jax_fn()
    ex = from_jax(lambda x: fn(params, x)["features"], name="tiny-jax", input_size=(H, W), channels=1,
                  jit=False)
    assert ex.weights_sha256 is None and ex.logits_dim is None
    a = Stats.from_features(ex.features(_images(5)), Provenance.from_extractor(ex))
    with pytest.warns(FidkitWarning, match="weights_sha256"):
        check_compatible(a, a)


def test_three_frameworks_agree() -> None:
    """One network in torch, Keras and JAX: the same features through their adapters."""
    from fidkit.adapters import from_jax, from_keras, from_torch

    images = _images(9, (12, 12))
    fn, params = _jax_fn()
    exs = [from_torch(_torch_model(), "body", name="tiny", input_size=(H, W), channels=1),
           from_keras(_keras_model(), "emb", name="tiny"),
           from_jax(fn, params, name="tiny", input_size=(H, W), channels=1)]
    ref = _reference(resize(_levels(images), "clean", (H, W)))[0]
    for ex in exs:
        _close(ex.features(images), ref)


# --- module:attribute ---------------------------------------------------------------------------------------

def _write_plugin(folder: Path) -> Path:
    path = folder / "my_plugin.py"
    path.write_text(textwrap.dedent(f"""
        import numpy as np
        from fidkit.adapters import make_extractor, InputConvention

        W = np.linspace(-1, 1, {H * W * 3 * 4}).reshape({H * W * 3}, 4)

        def build():
            return make_extractor(name="plugin", runtime="numpy", convention=InputConvention(({H}, {W})),
                                  run=lambda x: {{"features": x.reshape(len(x), -1) @ W}},
                                  weights_sha256=None, weights_source="unknown")

        EXTRACTOR = build()
        NOT_AN_EXTRACTOR = 3
    """))
    return path


def test_load_extractor_from_module_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    images = _images(3)
    expected = _levels(images).reshape(3, -1).astype(np.float64) @ np.linspace(-1, 1, H * W * 3 * 4).reshape(-1, 4)
    for ref in ("my_plugin:EXTRACTOR", "my_plugin:build", f"{path}:build"):
        ex = load_extractor(ref)
        assert ex.name == "plugin" and ex.feature_dim == 4
        _close(ex.features(images), expected)
    for ref, words in (("my_plugin", "form"), ("my_plugin:NOT_AN_EXTRACTOR", "int"),
                       ("my_plugin:missing", "has no attribute 'missing'; it has EXTRACTOR, "),
                       ("no_such_module_xyz:x", "cannot import 'no_such_module_xyz'"),
                       (f"{tmp_path}/nope.py:x", "no such Python file")):
        with pytest.raises(InputError, match=words):
            load_extractor(ref)


def test_pipeline_accepts_an_adapter_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fidkit.pipeline import compute_stats

    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    images = np.rint(_images(7))  # whole grey levels: the 'clean' policy rounds float input to them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = compute_stats(images, "my_plugin:build", progress=False, value_range=(0, 255))
    expected = Stats.from_features(load_extractor("my_plugin:EXTRACTOR").features(images))
    np.testing.assert_allclose(stats.mean, expected.mean, rtol=1e-6, atol=1e-6)
    assert stats.provenance.extractor == "plugin"
