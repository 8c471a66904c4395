"""The Inception graphs, the synthetic weights, and every runtime interpreter op by op on a toy graph."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, runtimes_under_test, tolerance

from fidkit.archs.inception import inception_tf2015, inception_torchvision
from fidkit.archs.spec import Graph, GraphBuilder
from fidkit.archs.synthetic import synthetic_images, synthetic_weights, write_synthetic_weights
from fidkit.backends.common import load_params
from fidkit.backends.numpy.network import run_graph
from fidkit.errors import BackendUnavailableError, InputError, WeightsError
from fidkit.extraction import Extractor, assemble, builtin_convention
from fidkit.registry import ExtractorSpec, load_object, parse_device, pick_gpu
from fidkit.resize import get_policy
from fidkit.weights import CanonicalWeights, load_canonical

if "torch" in runtimes_under_test() and importlib.util.find_spec("torchvision") is not None:
    # torchvision imports torch._dynamo, which segfaults once tensorflow is loaded: load it first
    import torchvision  # noqa: F401

TOY_SIZE = (20, 20)


def toy_graph() -> Graph:
    """Returns a small graph that uses every op, asymmetric padding, strides and both avg-pool modes."""
    b = GraphBuilder("toy", channels=3)
    x = b.channel_affine("affine", "input", (0.5, 1.0, 2.0), (0.1, -0.2, 0.3))
    x = b.conv2d("stem.conv", x, 3, 8, (3, 3), (2, 2), ((0, 1), (1, 0)), bias=True)
    x = b.relu("stem.relu", b.batchnorm("stem.bn", x, 8, 1e-3))
    y = b.conv2d("row.conv", x, 8, 6, (1, 3), (1, 1), ((0, 0), (1, 1)))
    y = b.relu("row.relu", b.batchnorm("row.bn", y, 6, 1e-3))
    m = b.maxpool2d("same.max", x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    a = b.avgpool2d("same.avg_excl", x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)
    c = b.avgpool2d("same.avg_incl", y, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=True)
    cat = b.concat("cat", [m, a, c, y])
    s = b.avgpool2d("down.avg", cat, (2, 3), (2, 2), ((1, 0), (0, 1)), count_include_pad=False)
    s = b.maxpool2d("down.max", s, (3, 2), (2, 1), ((0, 1), (1, 0)))
    feats = b.concat("features", [b.global_avgpool("gap_a", s), b.global_avgpool("gap_b", y)])
    logits = b.dense("head", b.flatten("flat", s), 28 * 2 * 5, 7, bias=True)
    return b.build(features=feats, logits=logits)


# ------------------------------------------------------------------------------------------ graphs


@pytest.mark.torch
@pytest.mark.peers
def test_tf2015_parameter_names_are_pytorch_fid_state_dict_keys() -> None:
    require_runtime("torch")
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in (("Mixed_5b", pf.FIDInceptionA(192, 32)), ("Mixed_5c", pf.FIDInceptionA(256, 64)),
                        ("Mixed_5d", pf.FIDInceptionA(288, 64)), ("Mixed_6b", pf.FIDInceptionC(768, 128)),
                        ("Mixed_6c", pf.FIDInceptionC(768, 160)), ("Mixed_6d", pf.FIDInceptionC(768, 160)),
                        ("Mixed_6e", pf.FIDInceptionC(768, 192)), ("Mixed_7b", pf.FIDInceptionE_1(1280)),
                        ("Mixed_7c", pf.FIDInceptionE_2(2048))):
        setattr(net, name, block)
    theirs = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert inception_tf2015(logits_bias=True).param_shapes() == theirs
    assert inception_tf2015().param_shapes() == {k: v for k, v in theirs.items() if k != "fc.bias"}


@pytest.mark.torch
def test_torchvision_parameter_names_are_torchvision_state_dict_keys() -> None:
    require_runtime("torch")
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    theirs = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert inception_torchvision().param_shapes() == theirs
    assert list(inception_torchvision().param_shapes()) == list(theirs)


def test_tf2015_differs_from_torchvision_where_tensorflow_did() -> None:
    tf, tv = inception_tf2015(), inception_torchvision()
    tf_pools = {n.name: n for n in tf.nodes if n.op in ("avgpool2d", "maxpool2d")}
    tv_pools = {n.name: n for n in tv.nodes if n.op in ("avgpool2d", "maxpool2d")}
    assert all(not n.attrs["count_include_pad"] for n in tf_pools.values() if n.op == "avgpool2d")
    assert all(n.attrs["count_include_pad"] for n in tv_pools.values() if n.op == "avgpool2d")
    assert tf_pools["Mixed_7c.branch_pool.maxpool"].op == "maxpool2d"
    assert tv_pools["Mixed_7c.branch_pool.avgpool"].op == "avgpool2d"
    assert tf_pools["Mixed_7b.branch_pool.avgpool"].op == "avgpool2d"
    fc = {n.name: n for n in tf.nodes}["fc"]
    assert fc.attrs["out_features"] == 1008 and fc.attrs["bias"] is False
    assert tv.nodes[1].op == "channel_affine" and tv.nodes[1].inputs == ("input",)
    assert {n.name: n for n in tv.nodes}["fc"].attrs == {"in_features": 2048, "out_features": 1000, "bias": True}


def test_torchvision_transform_input_is_the_inverse_imagenet_normalization() -> None:
    """transform_input maps ImageNet-normalized pixels to (x - 0.5) / 0.5, computed independently here."""
    node = inception_torchvision().nodes[1]
    pixel = np.linspace(0.0, 1.0, 11)[:, None]
    imagenet = (pixel - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    mapped = imagenet * np.array(node.attrs["scale"]) + np.array(node.attrs["shift"])
    np.testing.assert_allclose(mapped, np.broadcast_to((pixel - 0.5) / 0.5, mapped.shape), atol=1e-12)


def test_registered_inception_specs_point_at_these_graphs() -> None:
    from fidkit.registry import get_spec

    for name in ("inception-tf2015", "inception-torchvision"):
        spec = get_spec(name)
        graph = load_object(spec.arch)()
        assert spec.feature_dim == 2048 and spec.input_size == (299, 299)
        assert graph.outputs.keys() - {"spatial"} == {"features", "logits"}  # spatial: sFID (tf2015)
        assert {n.name: n for n in graph.nodes}["fc"].attrs["out_features"] == spec.logits_dim


# -------------------------------------------------------------------------------- synthetic weights


def test_synthetic_weights_are_seeded_and_complete() -> None:
    g = toy_graph()
    a = synthetic_weights(g, seed=3, size=TOY_SIZE)
    b = synthetic_weights(g, seed=3, size=TOY_SIZE)
    c = synthetic_weights(g, seed=4, size=TOY_SIZE)
    assert {k: v.shape for k, v in a.items()} == g.param_shapes()
    assert all(v.dtype == np.float32 for v in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["stem.conv.weight"], c["stem.conv.weight"])


def test_batchnorm_calibration_normalizes_its_input() -> None:
    """On the calibration images, each BatchNorm's running statistics are those of its input.

    Checked with the float64 numpy interpreter on the graph cut at each BatchNorm's input, independently
    of the float32 calibrator; the output then has per-channel mean = shift and std = scale (up to eps).
    """
    g = toy_graph()
    w = synthetic_weights(g, seed=0, size=TOY_SIZE, n_images=3)
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    images = synthetic_images(3, TOY_SIZE, seed=1).astype(np.float64) / 127.5 - 1.0
    names = [n.name for n in g.nodes]
    for bn in (n for n in g.nodes if n.op == "batchnorm"):
        cut = Graph(g.name, g.nodes[:names.index(bn.name) + 1], {"x": bn.inputs[0], "y": bn.name})
        out = run_graph(cut, w64, images)
        mean, var = out["x"].mean(axis=(0, 2, 3)), out["x"].var(axis=(0, 2, 3))
        tol = tolerance("features", "batchnorm_calibration")
        np.testing.assert_allclose(w[f"{bn.name}.running_mean"], mean, rtol=tol, atol=tol / 10)
        np.testing.assert_allclose(w[f"{bn.name}.running_var"], var, rtol=tol)
        np.testing.assert_allclose(out["y"].mean(axis=(0, 2, 3)), w[f"{bn.name}.bias"], atol=tol)
        expected_std = w64[f"{bn.name}.weight"] * np.sqrt(var / (var + bn.attrs["eps"]))
        np.testing.assert_allclose(out["y"].std(axis=(0, 2, 3)), expected_std, rtol=tol)


def test_synthetic_weights_file_is_canonical_and_written_atomically(tmp_path: Path) -> None:
    path = write_synthetic_weights(toy_graph(), tmp_path / "toy.npz", size=TOY_SIZE)
    arrays = load_canonical(path)
    assert set(arrays) == set(toy_graph().param_shapes())
    assert [p.name for p in tmp_path.iterdir()] == ["toy.npz"]


def test_synthetic_images_are_deterministic_image_like() -> None:
    a = synthetic_images(2, (16, 24), seed=0)
    assert a.shape == (2, 16, 24, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_images(2, (16, 24), seed=0))
    assert a.min() == 0 and a.max() == 255
    with pytest.raises(InputError, match="at least 1"):
        synthetic_images(0)


# ------------------------------------------------------------------------------ runtime interpreters


def toy_spec(input_size: tuple[int, int] = TOY_SIZE) -> ExtractorSpec:
    from fidkit.extractors import GRAPH_BUILDERS

    this = sys.modules[__name__].__name__
    return ExtractorSpec(name="toy", feature_dim=28 + 6, logits_dim=7, input_size=input_size,
                         policy="legacy-tensorflow", builders=GRAPH_BUILDERS, arch=f"{this}:toy_graph")


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory: pytest.TempPathFactory) -> CanonicalWeights:
    path = write_synthetic_weights(toy_graph(), tmp_path_factory.mktemp("toy") / "toy.npz", size=TOY_SIZE)
    return CanonicalWeights(str(path), "synthetic", "toy.npz", official=False)


def _build(runtime: str, weights: CanonicalWeights, policy: str = "legacy-tensorflow",
           spec: ExtractorSpec | None = None, device: str = "cpu") -> Extractor:
    """The runtime's network behind its preprocess (what `fidkit.extractor` assembles): 0..255 in."""
    spec = spec or toy_spec()
    pol = get_policy(policy)
    net = load_object(spec.builders[runtime])(spec=spec, weights=weights, device=device)
    conv = builtin_convention(spec, pol, net.layout)
    return assemble(spec, runtime, device, pol, conv, net, weights_sha256=None, weights_source=None)


@pytest.mark.parametrize("policy", ["legacy-tensorflow", "torchvision"])
def test_every_op_matches_the_float64_reference(runtime: str, toy_weights: CanonicalWeights,
                                                policy: str) -> None:
    if runtime == "numpy":
        pytest.skip("numpy is the float64 reference itself")
    pol = get_policy(policy)
    images = synthetic_images(3, TOY_SIZE, seed=7).astype(np.float32)
    ref = run_graph(toy_graph(), load_params(toy_graph(), toy_weights.path),
                    pol.normalize(images).astype(np.float64))
    out = _build(runtime, toy_weights, policy)(images)
    tol = tolerance("features", "ops")
    for key in ("features", "logits"):
        assert out[key].dtype == np.float32 and out[key].shape == ref[key].shape
        err = np.abs(out[key] - ref[key]).max() / ref[key].std()
        assert err <= tol, f"{runtime} {key}: max-abs {err:.2e} x std > {tol:.0e}"


def test_resizes_to_the_input_size_with_the_policy(runtime: str, toy_weights: CanonicalWeights) -> None:
    """A 33x27 batch goes through the runtime's resize fast path; the reference is numpy's resize."""
    if runtime == "numpy":
        pytest.skip("numpy is the float64 reference itself")
    images = synthetic_images(2, (33, 27), seed=2).astype(np.float32)
    ref = _build("numpy", toy_weights)(images)
    out = _build(runtime, toy_weights)(images)
    for key in ("features", "logits"):
        err = np.abs(out[key] - ref[key]).max() / ref[key].std()
        assert err <= tolerance("features", "ops_resized"), f"{runtime} {key}: {err:.2e}"


def test_batch_size_does_not_change_results(runtime: str, toy_weights: CanonicalWeights) -> None:
    fwd = _build(runtime, toy_weights)
    images = synthetic_images(4, TOY_SIZE, seed=9).astype(np.float32)
    whole = fwd(images)["features"]
    parts = np.concatenate([fwd(images[:1])["features"], fwd(images[1:])["features"]])
    np.testing.assert_allclose(whole, parts, rtol=0, atol=tolerance("features", "ops_pair") * whole.std())


def test_missing_parameter_is_named(runtime: str, tmp_path: Path) -> None:
    arrays = synthetic_weights(toy_graph(), size=TOY_SIZE)
    del arrays["row.bn.running_var"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeightsError, match=r"row\.bn\.running_var"):
        _build(runtime, CanonicalWeights(str(tmp_path / "bad.npz"), "x", "bad.npz", official=False))


def test_wrong_shape_is_named(runtime: str, tmp_path: Path) -> None:
    arrays = synthetic_weights(toy_graph(), size=TOY_SIZE)
    arrays["head.weight"] = arrays["head.weight"].T.copy()
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeightsError, match=r"head\.weight.*shape"):
        _build(runtime, CanonicalWeights(str(tmp_path / "bad.npz"), "x", "bad.npz", official=False))


def test_no_weights_is_an_error(runtime: str) -> None:
    with pytest.raises(WeightsError, match="needs weights"):
        _build(runtime, None)  # type: ignore[arg-type]


def test_device_names_every_runtime_accepts() -> None:
    assert [parse_device(d) for d in ("cpu", "auto", "cuda", "gpu", "cuda:3")] == [
        ("cpu", 0), ("auto", 0), ("gpu", 0), ("gpu", 0), ("gpu", 3)]
    for bad in ("tpu9", "cuda:", "cuda:x", "CPU", "cuda:1:2"):
        with pytest.raises(InputError, match=f"unknown device '{bad}'"):
            parse_device(bad)
    two = ["first", "second"]
    assert [pick_gpu(d, two, "rt") for d in ("cpu", "auto", "cuda", "cuda:1")] == [None, "first", "first", "second"]
    assert pick_gpu("auto", [], "rt") is None
    with pytest.raises(BackendUnavailableError, match="'cuda:2' was asked for, but rt sees 2 GPU"):
        pick_gpu("cuda:2", two, "rt")
    with pytest.raises(BackendUnavailableError, match="rt sees no GPU"):
        pick_gpu("gpu", [], "rt")


@pytest.mark.parametrize("rt", ["torch", "tf", "jax"])
def test_cuda_without_a_gpu_says_so(rt: str, toy_weights: CanonicalWeights) -> None:
    require_runtime(rt)
    from conftest import cuda_available

    if cuda_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        _build(rt, toy_weights, device="cuda")
    with pytest.raises(InputError, match="unknown device"):
        _build(rt, toy_weights, device="tpu9")


@pytest.mark.torch
def test_torch_module_state_dict_keys_are_canonical(toy_weights: CanonicalWeights) -> None:
    require_runtime("torch")
    module = _build("torch", toy_weights).network.module
    keys = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(toy_graph().param_shapes())
    assert not module.training


@pytest.mark.tf
def test_keras_model_equals_the_tf_function(toy_weights: CanonicalWeights) -> None:
    require_runtime("tf")
    from fidkit.backends.tf.network import keras_model

    pol = get_policy("legacy-tensorflow")
    model = keras_model(toy_graph(), load_params(toy_graph(), toy_weights.path), TOY_SIZE, pol.mean, pol.std)
    images = synthetic_images(2, TOY_SIZE, seed=4).astype(np.float32)
    out = model(images)
    ref = _build("tf", toy_weights)(images)
    for key in ("features", "logits"):
        np.testing.assert_allclose(np.asarray(out[key]), ref[key], rtol=0,
                                   atol=tolerance("features", "ops_pair") * ref[key].std())
    assert {w.name for w in model.weights} >= {"stem.conv.weight", "head.bias"}
    assert not model.trainable_weights


@pytest.mark.tf
def test_keras_extractor_resolves_weights_and_policy(toy_weights: CanonicalWeights, monkeypatch) -> None:
    require_runtime("tf")
    from fidkit import registry
    from fidkit.backends.tf.network import keras_extractor
    from fidkit.errors import FidkitWarning

    monkeypatch.setitem(registry._REGISTRY, "toy", toy_spec())
    with pytest.warns(FidkitWarning, match="unofficial"):
        model = keras_extractor("toy", weights=toy_weights.path)
    images = synthetic_images(2, TOY_SIZE, seed=4).astype(np.float32)
    ref = _build("tf", toy_weights)(images)
    np.testing.assert_allclose(np.asarray(model(images)["logits"]), ref["logits"], rtol=0,
                               atol=tolerance("features", "ops_pair") * ref["logits"].std())


@pytest.mark.jax
def test_jax_apply_is_pure_and_jittable(toy_weights: CanonicalWeights) -> None:
    require_runtime("jax")
    import jax

    from fidkit.backends.jax.network import apply, to_jax_params

    params = to_jax_params(toy_graph(), load_params(toy_graph(), toy_weights.path))
    x = get_policy("legacy-tensorflow").normalize(synthetic_images(2, TOY_SIZE, seed=4))
    eager = apply(toy_graph(), params, x)
    jitted = jax.jit(lambda p, v: apply(toy_graph(), p, v))(params, x)
    for key in eager:
        np.testing.assert_allclose(np.asarray(eager[key]), np.asarray(jitted[key]), rtol=0,
                                   atol=tolerance("features", "ops_pair") * np.asarray(jitted[key]).std())


def test_network_modules_import_their_framework_lazily() -> None:
    """Importing the interpreters (e.g. for docs or the registry) must not import torch, tf or jax."""
    import subprocess

    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'tensorflow', 'jax', 'jaxlib', 'keras'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fidkit.backends.torch.network, fidkit.backends.tf.network, fidkit.backends.jax.network\n"
        "import fidkit.archs.inception, fidkit.archs.synthetic\n"
        "from fidkit.backends.jax.network import resolve_device\n"
        "from fidkit.errors import BackendUnavailableError\n"
        "try:\n"
        "    resolve_device('cpu')\n"
        "except BackendUnavailableError as e:\n"
        "    print('ok', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "pip install 'fidkit[jax]'" in out.stdout
