"""NVIDIA's VGG16 (``vgg16-nvidia``, StyleGAN's precision/recall network) and StyleGAN's PR rule.

* The graph's parameters are torchvision ``vgg16``'s, name for name and shape for shape, and the key table
  of NVIDIA's archive (tests/weights_keys/nvidia-vgg16.json) maps onto them.
* A small configuration (same layer pattern, narrow, 32 x 32) on torch, tf, jax against the float64 numpy
  interpreter and against torchvision's ``VGG`` class built with ``make_layers`` and the same weights.
* A synthetic ``vgg16.pt`` (a scripted module with NVIDIA's parameter names, full size, torchvision's random
  initialisation) converted as ``--weights`` does, run end to end through the registered ``vgg16-nvidia``
  extractor on 2 non-square uint8 images, against an independent reference: the TF1-style resize as
  genforce re-implements the TorchScript (``F.affine_grid`` + ``F.grid_sample``, ``align_tf_resize``),
  ``/ 255``, ImageNet mean/std and torchvision's ``vgg16`` up to ReLU(fc2).
* The ``vgg16-tf1`` resize policy against that affine-grid resize on several sizes.
* torch-fidelity's own 'vgg16' extractor (its PR feature space), run on the same weights from the torch hub
  cache, against that reference and fidkit's ``vgg16-torchvision`` and ``vgg16-nvidia``.
* StyleGAN's ``compute_pr`` (stylegan2-ada-pytorch metrics/precision_recall.py) re-implemented in numpy from
  its stated algorithm (batched distances, radius = the (k+1)-th smallest distance of a row counting the
  point itself, ``dist <= radius``) against ``fidkit.prdc.precision_recall``.

StyleGAN casts the features to float16 and computes the distances in float16 (on the GPU); the test rounds
the features to float16 as it does but takes distances in float64, so samples whose distance lies within
float16 rounding (~1e-3 relative) of a radius may be counted differently by StyleGAN itself: the fraction of
such samples is measured below. Ties: StyleGAN and ADM count a probe at exactly the radius (``<=``), fidkit
and the ``prdc`` package do not (``<``): shown on a constructed tie.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.archs.synthetic import synthetic_images, synthetic_weights
from fidkit.archs.vgg16 import VGG16_CFG, conv_names, vgg16_nvidia, vgg_graph
from fidkit.backends.numpy.network import run_graph

KEYS = Path(__file__).parent / "weights_keys" / "nvidia-vgg16.json"
TINY_CFG = (4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 16, 16, 16, "M", 16, 16, 16, "M")
TINY = dict(size=32, hidden=24, classes=10)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_graph():
    return vgg_graph("vgg16-tiny", TINY_CFG, **TINY)


def _max_std(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / ref.std())


def _table() -> dict:
    return json.loads(KEYS.read_text())


# ------------------------------------------------------------------------------------------ names


def test_graph_parameters_are_torchvision_vgg16s() -> None:
    torchvision = pytest.importorskip("torchvision")
    import torch

    with torch.device("meta"):
        model = torchvision.models.vgg16()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == vgg16_nvidia().param_shapes()
    assert list(vgg16_nvidia().nodes[-1].attrs.values())[:2] == [4096, 1000]


def test_nvidia_key_table_maps_onto_the_graph() -> None:
    """Every entry of NVIDIA's archive (the table) is a canonical parameter of the right shape, or LPIPS."""
    from fidkit.backends.torch.convert import NVIDIA_VGG16_DROP, nvidia_vgg16_names

    keys = _table()["keys"]
    shapes = vgg16_nvidia().param_shapes()
    mapped = {src: info["canonical"] for src, info in keys.items() if info["canonical"] is not None}
    assert mapped == nvidia_vgg16_names()
    assert sorted(set(mapped.values())) == sorted(shapes)
    for src, canon in mapped.items():
        assert tuple(keys[src]["shape"]) == shapes[canon], src
    assert sorted(set(keys) - set(mapped)) == sorted(NVIDIA_VGG16_DROP)
    assert conv_names(VGG16_CFG)[:3] == ["features.0", "features.2", "features.5"]


def test_registered_spec() -> None:
    import fidkit.extractors  # noqa: F401
    from fidkit.registry import get_spec
    from fidkit.weights import WEIGHTS_FILES

    spec = get_spec("vgg16-nvidia")
    assert (spec.feature_dim, spec.logits_dim, spec.input_size) == (4096, 1000, (224, 224))
    assert spec.weights == ("vgg16.pt",) and spec.policy == "vgg16-tf1"
    e = WEIGHTS_FILES["vgg16.pt"]
    assert e.url.endswith("/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt") and e.format == "torchscript"
    tv = get_spec("vgg16-torchvision")
    assert (tv.feature_dim, tv.input_size, tv.policy) == (4096, (224, 224), "vgg16-tf1")
    assert tv.weights == ("vgg16-397923af.pth",) and WEIGHTS_FILES[tv.weights[0]].format == "torch-state-dict"


@pytest.mark.peers
def test_torchvision_url_is_the_registered_one() -> None:
    """The URL torchvision (hence torch-fidelity's 'vgg16') downloads is the registered one."""
    torchvision = pytest.importorskip("torchvision")
    from fidkit.weights import WEIGHTS_FILES

    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert WEIGHTS_FILES[url.rsplit("/", 1)[1]].url == url


def test_too_small_input_is_refused() -> None:
    with pytest.raises(ValueError, match="vanishes"):
        vgg_graph("x", TINY_CFG, size=16)


# ------------------------------------------------------------------------------ small configuration


@pytest.fixture(scope="module")
def tiny_params() -> dict[str, np.ndarray]:
    return synthetic_weights(tiny_graph(), seed=4, size=(32, 32), n_images=3)


def _tiny_inputs(n: int = 3) -> np.ndarray:
    x = synthetic_images(n, (32, 32), seed=9).astype(np.float32) / np.float32(255)
    return ((x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).astype(np.float32)


def _run(runtime: str, graph, params: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    if runtime == "torch":
        import torch

        from fidkit.backends.torch.network import load_module

        with torch.inference_mode():
            out = load_module(graph, params)(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        return {k: v.numpy() for k, v in out.items()}
    if runtime == "jax":
        import jax

        from fidkit.backends.jax.network import apply, to_jax_params

        out = jax.jit(lambda p, v: apply(graph, p, v))(to_jax_params(graph, params), x)
        return {k: np.asarray(v) for k, v in out.items()}
    if runtime == "tf":
        import tensorflow as tf

        from fidkit.backends.tf.network import graph_module

        out = graph_module(graph, params, x.shape[1:3])(tf.constant(x))
        return {k: v.numpy() for k, v in out.items()}
    return run_graph(graph, {k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64))


def test_tiny_runtimes_match_the_float64_reference(runtime: str, tiny_params) -> None:
    if runtime == "numpy":
        pytest.skip("numpy is the float64 reference itself")
    x = _tiny_inputs()
    ref = _run("numpy", tiny_graph(), tiny_params, x)
    got = _run(runtime, tiny_graph(), tiny_params, x)
    assert got["features"].shape == (3, TINY["hidden"]) and got["features"].dtype == np.float32
    assert (ref["features"] >= 0).all() and ref["features"].std() > 0  # ReLU(fc2), not degenerate
    for key in ("features", "logits"):
        assert _max_std(got[key], ref[key]) < tolerance("vgg16", "tiny_vs_float64"), key


def _torchvision_vgg(cfg, hidden: int, classes: int, flat: int):
    """torchvision's own VGG class with ``make_layers(cfg)``; its classifier at the given width (VGG's
    structure: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear) and a pooling to the input's grid."""
    import torch
    from torchvision.models.vgg import VGG, make_layers

    model = VGG(make_layers(list(cfg)), num_classes=classes, init_weights=False)
    side = int(round((flat // [c for c in cfg if c != "M"][-1]) ** 0.5))
    model.avgpool = torch.nn.AdaptiveAvgPool2d((side, side))
    model.classifier = torch.nn.Sequential(
        torch.nn.Linear(flat, hidden), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(hidden, classes))
    return model.eval()


def test_tiny_graph_equals_torchvisions_vgg(tiny_params) -> None:
    """torchvision's VGG with the same weights (strict load: the canonical names are torchvision's)."""
    pytest.importorskip("torchvision")
    require_runtime("torch")
    import torch

    model = _torchvision_vgg(TINY_CFG, TINY["hidden"], TINY["classes"], 16)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tiny_params.items()}, strict=True)
    x = _tiny_inputs()
    with torch.inference_mode():
        t = model.features(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        t = torch.flatten(model.avgpool(t), 1)
        feats = model.classifier[:5](t).numpy()
        logits = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    ref = _run("numpy", tiny_graph(), tiny_params, x)
    assert _max_std(feats, ref["features"]) < tolerance("vgg16", "tiny_vs_float64")
    assert _max_std(logits, ref["logits"]) < tolerance("vgg16", "tiny_vs_float64")


# ------------------------------------------------------------------------ NVIDIA's archive, full size


def write_nvidia_archive(path: Path, canonical: dict[str, np.ndarray], lpips: bool = True) -> Path:
    """A scripted module whose ``state_dict()`` has NVIDIA's ``vgg16.pt`` names (tests/weights_keys/
    nvidia-vgg16.json): ``layers.conv1`` ... ``layers.fc3`` and the LPIPS weights ``lpips0`` ... ``lpips4``."""
    import torch

    class Holder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    root.add_module("layers", Holder())
    for src, info in _table()["keys"].items():
        if info["canonical"] is None:
            if lpips:
                root.register_parameter(src, torch.nn.Parameter(torch.ones(info["shape"]), requires_grad=False))
            continue
        layer, leaf = src.removeprefix("layers.").split(".")
        if not hasattr(root.layers, layer):
            root.layers.add_module(layer, Holder())
        t = torch.from_numpy(np.ascontiguousarray(canonical[info["canonical"]]))
        getattr(root.layers, layer).register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    torch.jit.script(root).save(str(path))
    return path


def test_tiny_archive_converts_to_the_canonical_names(tmp_path: Path, tiny_params) -> None:
    require_runtime("torch")
    from fidkit.weights import convert

    path = write_nvidia_archive(tmp_path / "vgg16.pt", tiny_params)
    arrays = convert(path)
    assert sorted(arrays) == sorted(tiny_params)
    for k, v in tiny_params.items():
        np.testing.assert_array_equal(arrays[k], v)


def test_archive_missing_a_layer_is_named(tmp_path: Path, tiny_params) -> None:
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.convert import canonical_from_nvidia_vgg16
    from fidkit.errors import WeightsError

    state = {src: torch.from_numpy(tiny_params[c]) for src, c in
             ((s, i["canonical"]) for s, i in _table()["keys"].items()) if c is not None}
    del state["layers.conv7.bias"]
    state["layers.extra"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"missing \['layers.conv7.bias'\], unexpected \['layers.extra'\]"):
        canonical_from_nvidia_vgg16(state, "vgg16.pt")


def nvidia_resize(torch, x, size: int = 224):
    """The TorchScript's resize as genforce re-implements it (models/perceptual_model.py, align_tf_resize):
    an identity affine grid shifted by 1/in - 1/out, bilinear ``grid_sample`` with border padding."""
    import torch.nn.functional as F

    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += theta[0, 0] / x.shape[3] - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / x.shape[2] - theta[1, 1] / size
    theta = theta.unsqueeze(0).repeat(x.shape[0], 1, 1)
    grid = F.affine_grid(theta, size=(x.shape[0], x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("hw", [(32, 32), (256, 256), (100, 300), (224, 224)])
def test_policy_is_the_torchscripts_resize(hw: tuple[int, int]) -> None:
    """fidkit's ``vgg16-tf1`` resize (numpy float64) against the affine-grid resize in torch float32."""
    require_runtime("torch")
    import torch

    from fidkit.resize import resize

    images = synthetic_images(2, hw, seed=5)
    ours = resize(images.astype(np.float32), "vgg16-tf1", (224, 224))
    with torch.inference_mode():
        theirs = nvidia_resize(torch, torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2))
    theirs = theirs.permute(0, 2, 3, 1).numpy()
    step = max(np.abs(np.diff(images.astype(np.float64), axis=a)).max() for a in (1, 2))
    bound = tolerance("vgg16", "grid_sample_coordinates") * max(hw) * step  # torch's float32 grid
    assert np.abs(ours - theirs).max() <= bound
    assert np.abs(ours - theirs).max() > 0 or hw == (224, 224)


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory: pytest.TempPathFactory):
    """A full-size synthetic ``vgg16.pt`` from torchvision's seeded random initialisation (biases made
    non-zero) and that torchvision model."""
    pytest.importorskip("torchvision")
    require_runtime("torch")
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.05)
    canonical = {k: v.numpy() for k, v in model.state_dict().items()}
    path = write_nvidia_archive(tmp_path_factory.mktemp("vgg") / "vgg16.pt", canonical)
    return path, model


FULL_IMAGES = synthetic_images(2, (96, 160), seed=21)


@pytest.fixture(scope="module")
def full_reference(full_archive) -> np.ndarray:
    """NVIDIA's computation as genforce documents it, in torch: resize, / 255, mean/std, VGG16 to ReLU(fc2)."""
    import torch

    _, model = full_archive
    with torch.inference_mode():
        x = nvidia_resize(torch, torch.from_numpy(FULL_IMAGES.astype(np.float32)).permute(0, 3, 1, 2))
        x = (x / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        t = torch.flatten(model.avgpool(model.features(x)), 1)
        return model.classifier[:5](t).double().numpy()


@pytest.fixture(scope="module")
def fidkit_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIDKIT_HOME", str(home))
        mp.setenv("FIDKIT_OFFLINE", "1")
        yield home


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("rt", ["torch", "tf", "jax", "numpy"])
def test_full_size_extractor_matches_nvidias_computation(rt: str, full_archive, full_reference,
                                                         fidkit_home) -> None:
    """The registered extractor with the synthetic archive passed as --weights (unofficial digest), on two
    96 x 160 uint8 images, each runtime against the torch reference of NVIDIA's module."""
    require_runtime(rt)
    from fidkit.errors import FidkitWarning
    from fidkit.extraction import extractor

    path, _ = full_archive
    start = time.perf_counter()
    with pytest.warns(FidkitWarning, match="unofficial"):
        ex = extractor("vgg16-nvidia", rt, weights=str(path))
    got = ex.features(FULL_IMAGES)
    print(f"vgg16-nvidia {rt}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    assert got.shape == (2, 4096)
    assert full_reference.std() > 0 and (full_reference > 0).mean() > 0.1
    assert _max_std(got, full_reference) < tolerance("vgg16", "full_vs_reference")


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torch_fidelity_vgg16_is_the_same_computation(full_archive, full_reference, fidkit_home,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-fidelity's own 'vgg16' extractor (FeatureExtractorVGG16, 'fc2_relu': its PR feature space) with
    its default weights, which torchvision loads from the torch hub cache: the same synthetic weights saved
    there as ``vgg16-397923af.pth``. It resizes like TF1 (interpolate_bilinear_2d_like_tensorflow1x),
    normalises with ImageNet mean/std on 0..255 and runs torchvision's vgg16 to fc2, ReLU: the same function
    as NVIDIA's module by independent code. It agrees with the torch reference above, with fidkit's
    vgg16-torchvision on that state dict and with vgg16-nvidia on the TorchScript archive."""
    pytest.importorskip("torch_fidelity")
    import torch
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    from fidkit.errors import FidkitWarning
    from fidkit.extraction import extractor

    archive, model = full_archive
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(model.state_dict(), hub / "vgg16-397923af.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    peer = FeatureExtractorVGG16("vgg16", ["fc2_relu"], verbose=False)
    with torch.inference_mode():
        (theirs,) = peer(torch.from_numpy(FULL_IMAGES).permute(0, 3, 1, 2).contiguous())
    theirs = theirs.double().numpy()
    tol = tolerance("vgg16", "full_vs_reference")
    assert _max_std(theirs, full_reference) < tol
    for name, weights in (("vgg16-torchvision", hub / "vgg16-397923af.pth"), ("vgg16-nvidia", archive)):
        with pytest.warns(FidkitWarning, match="unofficial"):
            ours = extractor(name, "torch", weights=str(weights)).features(FULL_IMAGES)
        assert _max_std(ours, theirs) < tol, name


# ---------------------------------------------------------------------------- StyleGAN's PR rule


def stylegan_pr(real: np.ndarray, gen: np.ndarray, nhood_size: int = 3, row_batch_size: int = 10000,
                col_batch_size: int = 10000) -> tuple[float, float]:
    """stylegan2-ada-pytorch ``compute_pr`` (one GPU), re-implemented from its stated algorithm: for each
    (manifold, probes) pair, distances in row batches of the manifold against the manifold cut into column
    batches (zero-padded to equal chunks, then trimmed), radius = the (nhood_size + 1)-th smallest distance
    of the row (``kthvalue``: the point itself is at distance 0 and counted), then a probe is in the manifold
    when ``dist <= radius`` for some manifold point; precision: gen probes vs the real manifold, recall:
    real probes vs the gen manifold."""

    def distances(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        n = cols.shape[0]
        num_batches = (n - 1) // col_batch_size + 1
        padded = np.concatenate([cols, np.zeros((-n % num_batches, cols.shape[1]))])
        chunks = np.array_split(padded, num_batches)  # equal chunks: torch.chunk of a divisible length
        out = [np.sqrt(np.maximum(((rows[:, None, :] - c[None, :, :]) ** 2).sum(-1), 0.0)) for c in chunks]
        return np.concatenate(out, axis=1)[:, :n]

    results = []
    for manifold, probes in ((real, gen), (gen, real)):
        kth = np.concatenate([np.sort(distances(b, manifold), axis=1)[:, nhood_size]
                              for b in np.array_split(manifold, range(row_batch_size, len(manifold),
                                                                      row_batch_size))])
        pred = np.concatenate([(distances(b, manifold) <= kth[None, :]).any(axis=1)
                               for b in np.array_split(probes, range(row_batch_size, len(probes),
                                                                     row_batch_size))])
        results.append(float(pred.mean()))
    return results[0], results[1]


def _features(seed: int, n: int, shift: float) -> np.ndarray:
    """Clustered, ReLU'd features like VGG's fc2 (non-negative), rounded to float16 as StyleGAN stores them."""
    centres = np.random.default_rng(0).standard_normal((5, 64)) * 2  # the same clusters in both sets
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 5, n)] + rng.standard_normal((n, 64)) + shift
    return np.maximum(x, 0).astype(np.float16).astype(np.float64)


@pytest.mark.parametrize("batches", [(10000, 10000), (37, 50)])
def test_stylegan_pr_equals_fidkit(batches: tuple[int, int]) -> None:
    from fidkit.prdc import precision_recall

    real, gen = _features(1, 300, 0.0), _features(2, 250, 0.3)
    theirs = stylegan_pr(real, gen, 3, *batches)
    ours = precision_recall(real, gen, k=3)
    assert 0.05 < theirs[0] < 0.95 and 0.05 < theirs[1] < 0.95, theirs  # not saturated: the test can fail
    assert (ours.precision, ours.recall) == theirs


@pytest.mark.peers
def test_torch_fidelity_prc_equals_fidkit() -> None:
    """torch-fidelity's own PR (metric_prc.py: torch.cdist in float32, kthvalue(k + 1), ``<=``) on the same
    features, input1 = generated: equal to fidkit's on generic data."""
    pytest.importorskip("torch_fidelity")
    require_runtime("torch")
    import torch
    from torch_fidelity.metric_prc import (
        calculate_precision_recall_full,
        calculate_precision_recall_part,
    )

    from fidkit.prdc import precision_recall

    real, gen = _features(1, 300, 0.0), _features(2, 250, 0.3)
    ours = precision_recall(real, gen, k=3)
    for fn in (calculate_precision_recall_full, calculate_precision_recall_part):
        p, r = fn(torch.from_numpy(gen).float(), torch.from_numpy(real).float(), 3, 100)
        counts = (round(float(p) * len(gen)), round(float(r) * len(real)))  # its float32 mean, as counts
        assert counts == (round(ours.precision * len(gen)), round(ours.recall * len(real))), fn.__name__
    assert (ours.precision, ours.recall) == stylegan_pr(real, gen)


def test_float16_distances_move_few_samples() -> None:
    """How many probes StyleGAN's float16 distances could count differently: those whose nearest
    (distance / radius) ratio over the manifold is within 2 float16 ulps (2^-9) of 1."""
    from fidkit.prdc import knn_radii

    real, gen = _features(1, 300, 0.0), _features(2, 250, 0.3)
    radii = knn_radii(real, 3)
    d = np.sqrt(((gen[:, None, :] - real[None, :, :]) ** 2).sum(-1))
    ratio = (d / radii[None, :]).min(axis=1)
    near = float(np.mean(np.abs(ratio - 1) < 2.0 ** -9))
    assert near < 0.02, near


def test_ties_at_the_radius_differ() -> None:
    """A probe at exactly a radius: StyleGAN's ``<=`` counts it, fidkit's (and prdc's) ``<`` does not."""
    from fidkit.prdc import precision_recall

    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0], [13.0]])
    gen = np.array([[6.0], [20.0], [21.0], [22.0], [23.0]])  # 6 is at distance 3 = radius (k=3) of 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = precision_recall(real, gen, k=3)
    theirs = stylegan_pr(real, gen, 3)
    assert theirs[0] == 0.2 and ours.precision == 0.0


# ------------------------------------------------- PR under --protocol stylegan / torch-fidelity (second pass)

N_PR = 6  # images per side: k = 3 needs more than 3
PR_REAL = synthetic_images(N_PR, (64, 64), seed=31)
#: half near copies of real images (small noise: inside the real balls), half darkened others (outside), so
#: that precision and recall are neither 0 nor 1 and the comparisons below can fail
PR_FAKE = np.concatenate([
    np.clip(PR_REAL[:3].astype(np.int16) + np.random.default_rng(33).integers(-3, 4, PR_REAL[:3].shape), 0, 255),
    synthetic_images(N_PR - 3, (64, 64), seed=32).astype(np.int16) // 3]).astype(np.uint8)


@pytest.fixture(scope="module")
def pr_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The PR images as PNG folders (lossless: the decoded files are the arrays)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pr_images")
    out = {}
    for label, images in (("real", PR_REAL), ("fake", PR_FAKE)):
        (root / label).mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(root / label / f"{i:02d}.png")
        out[label] = root / label
    return out


def _reference_features(model, images: np.ndarray) -> np.ndarray:
    """NVIDIA's computation as genforce documents it (the `full_reference` fixture's), float64."""
    import torch

    with torch.inference_mode():
        x = nvidia_resize(torch, torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2))
        x = (x / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        t = torch.flatten(model.avgpool(model.features(x)), 1)
        return model.classifier[:5](t).double().numpy()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_stylegan_protocol_pr_is_a_second_pass_on_nvidias_vgg16(full_archive, fidkit_home, pr_dirs) -> None:
    """``fidkit.score(..., "pr", protocol="stylegan")`` on PNG folders, with the synthetic ``vgg16.pt`` as
    --pr-weights: the features of NVIDIA's computation (torch reference above) through StyleGAN's
    ``compute_pr`` re-implemented (``<=``), the same counts; the Inception extractor is not built (PR only)."""
    import fidkit

    archive, model = full_archive
    out = fidkit.score(str(pr_dirs["real"]), str(pr_dirs["fake"]), "pr", protocol="stylegan",
                       pr_weights=str(archive), runtime="torch", bootstrap=0)
    theirs = stylegan_pr(_reference_features(model, PR_REAL), _reference_features(model, PR_FAKE), 3)
    print(f"stylegan PR: fidkit {out['pr']}, StyleGAN rule on the reference features {theirs}")
    assert (out["pr"]["precision"], out["pr"]["recall"]) == theirs
    assert 0 < theirs[0] < 1, theirs  # precision not saturated (3 of 6 near copies): the comparison can fail
    assert out["settings"]["pr"] == {"k": 3, "radius_inclusive": True, "extractor": "vgg16-nvidia"}
    assert out["provenance"]["extractor"] == "vgg16-nvidia" and out["provenance"]["protocol"] == "stylegan@1"
    assert any("second pass" in n for n in out["notes"])


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_torch_fidelity_protocol_pr_equals_torch_fidelity(full_archive, fidkit_home, pr_dirs,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-fidelity's own ``calculate_metrics(prc=True)`` (its 'vgg16' extractor, weights from the torch hub
    cache: the synthetic state dict as ``vgg16-397923af.pth``) on the same folders, input1 = generated,
    against ``fidkit.score(..., "pr", protocol="torch-fidelity")`` with that file as --pr-weights: the same
    counts (torch-fidelity returns float32 fractions)."""
    pytest.importorskip("torch_fidelity")
    import torch
    import torch_fidelity

    import fidkit

    _, model = full_archive
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(model.state_dict(), hub / "vgg16-397923af.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    theirs = torch_fidelity.calculate_metrics(input1=str(pr_dirs["fake"]), input2=str(pr_dirs["real"]), prc=True,
                                              cuda=False, cache=False, verbose=False, save_cpu_ram=True)
    out = fidkit.score(str(pr_dirs["real"]), str(pr_dirs["fake"]), "pr", protocol="torch-fidelity",
                       pr_weights=str(hub / "vgg16-397923af.pth"), runtime="torch", bootstrap=0)
    print(f"torch-fidelity PR: fidkit {out['pr']}, torch-fidelity {theirs}")
    assert 0 < theirs["precision"] < 1, theirs  # not saturated: the comparison can fail
    assert round(theirs["precision"] * N_PR) == round(out["pr"]["precision"] * N_PR)
    assert round(theirs["recall"] * N_PR) == round(out["pr"]["recall"] * N_PR)
    assert out["settings"]["pr"]["extractor"] == "vgg16-torchvision"
    ours = _reference_features(model, PR_REAL), _reference_features(model, PR_FAKE)
    assert (out["pr"]["precision"], out["pr"]["recall"]) == stylegan_pr(*ours, 3)  # the same <= rule


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_protocol_pr_without_its_weights_is_one_line(pr_dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    """Absent VGG16 weights: named with `fidkit weights where`, in one line, on the API and the CLI; with
    the protocol's default metrics on features, PR is left out with a note (it needs images)."""
    import fidkit
    from fidkit.cli import main
    from fidkit.errors import InputError
    from fidkit.features import FeatureResult

    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    real, fake = str(pr_dirs["real"]), str(pr_dirs["fake"])
    for name, ex, file in (("stylegan", "vgg16-nvidia", "vgg16.pt"),
                           ("torch-fidelity", "vgg16-torchvision", "vgg16-397923af.pth")):
        with pytest.raises(InputError, match=f"weights file {file} is not here.*`fidkit weights where {ex}`"):
            fidkit.score(real, fake, "pr", protocol=name, bootstrap=0)
        assert main(["score", real, fake, "--protocol", name, "--metrics", "pr", "--bootstrap", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"fidkit weights where {ex}" in err[0] and "Traceback" not in err[0], err
    rng = np.random.default_rng(3)
    feats = [FeatureResult(rng.normal(size=(20, 5)), rng.normal(size=(20, 10)), [str(i) for i in range(20)])
             for _ in range(2)]
    out = fidkit.score(*feats, protocol="stylegan", bootstrap=0)
    assert "pr" not in out and any("vgg16-nvidia" in n and "not computed" in n for n in out["notes"])
    with pytest.raises(InputError, match="real: --protocol stylegan computes precision/recall on vgg16-nvidia"):
        fidkit.score(*feats, "pr", protocol="stylegan", bootstrap=0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_pr_second_pass_beside_the_first(full_archive, fidkit_home, pr_dirs, tmp_path: Path) -> None:
    """``score(..., "fid,pr", protocol="torch-fidelity")``: the first pass (the synthetic 2015 Inception under
    torch-fidelity's file name) gives FID, the second (VGG16) PR; each equals the metric computed alone, and
    PR equals the StyleGAN-rule count on the reference VGG16 features."""
    import torch

    import fidkit
    from fidkit.archs.inception import inception_tf2015
    from fidkit.archs.synthetic import write_synthetic_weights
    from fidkit.weights import load_canonical

    _, model = full_archive
    vgg = tmp_path / "vgg16-397923af.pth"
    torch.save(model.state_dict(), vgg)
    npz = write_synthetic_weights(inception_tf2015(logits_bias=True), tmp_path / "tf2015.npz")
    inception = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({k: torch.from_numpy(v) for k, v in load_canonical(npz).items()}, inception)
    real, fake = str(pr_dirs["real"]), str(pr_dirs["fake"])
    common = {"protocol": "torch-fidelity", "weights": str(inception), "pr_weights": str(vgg), "runtime": "torch",
              "bootstrap": 0}
    both = fidkit.score(real, fake, "fid,pr", **common)
    assert both["fid"] == fidkit.score(real, fake, "fid", **common)["fid"]
    assert both["pr"] == fidkit.score(real, fake, "pr", **common)["pr"]
    ref = stylegan_pr(_reference_features(model, PR_REAL), _reference_features(model, PR_FAKE), 3)
    assert (both["pr"]["precision"], both["pr"]["recall"]) == ref and both["fid"] > 0
    assert both["settings"]["pr"]["extractor"] == "vgg16-torchvision"
    assert both["provenance"]["extractor"] == "inception-tf2015"  # the first pass's, which FID used
