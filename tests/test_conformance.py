"""Conformance: the Inception extractors give the same features and scores on torch, tf, jax and the peers.

Same synthetic weights (seeded, BatchNorm calibrated: `fidkit.archs.synthetic`), same images, same
policy. Runtimes against each other and against the float64 numpy interpreter; the torch runtime's
network against pytorch-fid's ``InceptionV3`` (legacy-pytorch), torch-fidelity's extractor
(legacy-tensorflow) and torchvision's ``inception_v3`` (torchvision policy), each loaded from the same
synthetic file saved under the peer's own file name and run here. Tolerances: tests/tolerances.toml.
Each extractor is built once per (extractor, runtime, policy, device) and its outputs cached for the
session, so the suite costs a handful of Inception forwards per runtime.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    cuda_available,
    require_runtime,
    runtime_sees_gpu,
    runtimes_under_test,
    tolerance,
)

from fidkit.archs.inception import inception_tf2015, inception_torchvision
from fidkit.archs.synthetic import synthetic_images, write_synthetic_weights
from fidkit.errors import FidkitWarning
from fidkit.extraction import Extractor, extractor
from fidkit.weights import load_canonical

if "torch" in runtimes_under_test() and importlib.util.find_spec("torchvision") is not None:
    # torchvision imports torch._dynamo, which segfaults once tensorflow is loaded: load it first
    import torchvision  # noqa: F401

pytestmark = pytest.mark.slow

FRAMEWORKS = ("torch", "tf", "jax")
#: Two sets of two 299x299 images each: A smooth fields, B low-contrast fields of another seed. The sets
#: differ clearly, as real and generated sets do, so KID is large next to the kernel values it is the
#: difference of: with near-identical sets (KID ~3% of the kernel), KID amplifies the float32 rounding of
#: the features ~30x and a 1e-5 comparison would test that rounding, not the runtimes.
SET_A = synthetic_images(2, (299, 299), seed=11)
SET_B = (synthetic_images(2, (299, 299), seed=12) // 4 + 96).astype(np.uint8)
IMAGES = np.concatenate([SET_A, SET_B]).astype(np.float32)
#: Small images, so the runtime's resize fast path runs before the network (as in a real pipeline).
SMALL = synthetic_images(3, (64, 64), seed=13)

PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"


def assert_close_features(got: np.ndarray, ref: np.ndarray, tol: float, what: str) -> None:
    """Asserts max |got - ref| <= tol x std(ref), the issue's feature criterion."""
    assert got.shape == ref.shape, what
    err = float(np.abs(got.astype(np.float64) - ref).max() / ref.std())
    assert err <= tol, f"{what}: max-abs difference {err:.2e} x feature std > {tol:.0e}"


def frameworks_under_test() -> list[str]:
    return [r for r in FRAMEWORKS if r in runtimes_under_test()]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic canonical weights for both extractors; tf2015's file carries fc.bias, as the peers need."""
    d = tmp_path_factory.mktemp("synthetic_weights")
    return {
        "inception-tf2015": write_synthetic_weights(inception_tf2015(logits_bias=True), d / "tf2015.npz"),
        "inception-torchvision": write_synthetic_weights(inception_torchvision(), d / "torchvision.npz", seed=1),
    }


@pytest.fixture(scope="session")
def build(weight_files: dict[str, Path]) -> Callable[..., Extractor]:
    """Returns a cached factory: (extractor, runtime, policy, device) -> the public `fidkit.extractor`."""
    cache: dict[tuple[str, str, str | None, str], Extractor] = {}

    def get(name: str, runtime: str, policy: str | None = None, device: str = "cpu") -> Extractor:
        key = (name, runtime, policy, device)
        if key not in cache:
            require_runtime(runtime)
            with pytest.warns(FidkitWarning, match="unofficial"):
                cache[key] = extractor(name, runtime, weights=str(weight_files[name]), device=device,
                                       policy=policy)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def outputs(build: Callable[..., Extractor]) -> Callable[..., dict[str, np.ndarray]]:
    """Returns a cached function: (extractor, runtime, images key, policy, device) -> its outputs."""
    images = {"299": IMAGES, "299[:2]": IMAGES[:2], "small": SMALL}  # small: uint8, as decoded files are
    cache: dict[tuple, dict[str, np.ndarray]] = {}

    def get(name: str, runtime: str, which: str = "299", policy: str | None = None,
            device: str = "cpu") -> dict[str, np.ndarray]:
        key = (name, runtime, which, policy, device)
        if key not in cache:
            cache[key] = build(name, runtime, policy, device)(images[which])
        return cache[key]

    return get


EXTRACTORS = ["inception-tf2015", "inception-torchvision"]


# ------------------------------------------------------------------------------ runtimes agree


@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_runtime_matches_float64_reference(outputs, name: str, runtime: str) -> None:
    """Against the float64 numpy interpreter, on two images (it runs at ~1 image/s)."""
    ref = outputs(name, "numpy", "299[:2]")
    got = outputs(name, runtime)
    for key in ("features", "logits"):
        assert got[key].dtype == np.float32
        assert_close_features(got[key][:2], ref[key], tolerance("features", "vs_float64"),
                              f"{name} {runtime} vs float64 {key}")


@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("pair", list(itertools.combinations(FRAMEWORKS, 2)), ids="-".join)
def test_runtimes_agree_on_features(outputs, name: str, pair: tuple[str, str]) -> None:
    a, b = (outputs(name, rt) for rt in pair)
    for key in ("features", "logits"):
        assert_close_features(a[key], b[key].astype(np.float64), tolerance("features", "cross_runtime"),
                              f"{name} {pair[0]} vs {pair[1]} {key}")


def _scores(out: dict[str, np.ndarray]) -> dict[str, float]:
    from fidkit.frechet import frechet_distance_features
    from fidkit.inception_score import inception_score
    from fidkit.kid import kid

    fa, fb = out["features"][:2], out["features"][2:]
    return {
        "fid": frechet_distance_features(fa, fb, warn=False),
        "kid": kid(fa, fb, subsets=3, subset_size=2)[0],
        "is": inception_score(out["logits"], splits=1)[0],
    }


@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("pair", list(itertools.combinations(FRAMEWORKS, 2)), ids="-".join)
def test_runtimes_agree_on_scores(outputs, name: str, pair: tuple[str, str]) -> None:
    sa, sb = (_scores(outputs(name, rt)) for rt in pair)
    for metric in ("fid", "kid", "is"):
        assert sb[metric] > 0 and np.isfinite(sa[metric])
        rel = abs(sa[metric] - sb[metric]) / abs(sb[metric])
        tol = tolerance("scores", metric)
        assert rel <= tol, f"{name} {metric}: {pair[0]} {sa[metric]!r} vs {pair[1]} {sb[metric]!r} ({rel:.1e} > {tol:.0e})"


@pytest.mark.parametrize("name", EXTRACTORS)
def test_scores_are_not_degenerate(outputs, name: str) -> None:
    """The synthetic network separates the two image sets: the score checks above test something."""
    out = outputs(name, frameworks_under_test()[0] if frameworks_under_test() else "numpy")
    s = _scores(out)
    f = out["features"].astype(np.float64)
    assert s["fid"] > 0.1 * np.sum(f.var(axis=0)), s
    assert s["is"] > 1.05, s
    assert np.linalg.matrix_rank(f - f.mean(axis=0)) == 3


# ------------------------------------------------------------------------------------------- peers


@pytest.fixture(scope="session")
def torch_home(weight_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private TORCH_HOME whose hub cache holds the synthetic weights under the peers' file names."""
    require_runtime("torch")
    import torch

    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for name, file in (("inception-tf2015", PYTORCH_FID_FILE), ("inception-tf2015", TORCH_FIDELITY_FILE)):
        arrays = load_canonical(weight_files[name])
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, ckpt / file)
    return home


def _peer(torch_home: Path, make: Callable[[], object]) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        return make()


@pytest.fixture(scope="session")
def pytorch_fid_outputs(torch_home: Path) -> np.ndarray:
    """pytorch-fid's own InceptionV3 (pool3 block) on SMALL, loaded from its hub file name."""
    import torch
    from pytorch_fid.inception import InceptionV3

    model = _peer(torch_home, lambda: InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])).eval()
    x = torch.from_numpy(SMALL.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        return model(x)[0][:, :, 0, 0].numpy()


@pytest.fixture(scope="session")
def torch_fidelity_outputs(torch_home: Path) -> dict[str, np.ndarray]:
    """torch-fidelity's InceptionV3 extractor on SMALL (uint8), loaded from its own hub file name."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = _peer(torch_home, lambda: FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], verbose=False))
    x = torch.from_numpy(SMALL).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        feats, logits = model(x)
    return {"features": feats.numpy(), "logits": logits.numpy()}


@pytest.mark.peers
@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_equals_pytorch_fid_under_legacy_pytorch(outputs, pytorch_fid_outputs, runtime: str) -> None:
    got = outputs("inception-tf2015", runtime, "small", policy="legacy-pytorch")
    assert_close_features(got["features"], pytorch_fid_outputs.astype(np.float64),
                          tolerance("features", "peer"), f"{runtime} vs pytorch-fid")


@pytest.mark.peers
@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_equals_torch_fidelity_under_legacy_tensorflow(outputs, torch_fidelity_outputs, runtime: str) -> None:
    got = outputs("inception-tf2015", runtime, "small", policy="legacy-tensorflow")
    for key in ("features", "logits"):  # fidkit's logits are torch-fidelity's logits_unbiased
        assert_close_features(got[key], torch_fidelity_outputs[key].astype(np.float64),
                              tolerance("features", "peer"), f"{runtime} vs torch-fidelity {key}")


@pytest.mark.peers
def test_torchvision_extractor_equals_torchvision_inception_v3(outputs, weight_files) -> None:
    """torchvision's inception_v3 (transform_input on), loaded with the same file as a state dict."""
    require_runtime("torch")
    import torch
    import torchvision

    from fidkit.resize import get_policy

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          transform_input=True)
    arrays = load_canonical(weight_files["inception-torchvision"])
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    pooled: list[torch.Tensor] = []
    net.avgpool.register_forward_hook(lambda m, i, o: pooled.append(o[:, :, 0, 0]))
    x = torch.from_numpy(get_policy("torchvision").normalize(IMAGES)).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = net.eval()(x).numpy()
    got = outputs("inception-torchvision", "torch")
    tol = tolerance("features", "peer")
    assert_close_features(got["features"], pooled[0].numpy().astype(np.float64), tol, "vs torchvision pool")
    assert_close_features(got["logits"], logits.astype(np.float64), tol, "vs torchvision logits")


# --------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_gpu_matches_cpu(outputs, name: str, runtime: str) -> None:
    assert cuda_available()
    if not runtime_sees_gpu(runtime):  # e.g. tensorflow-cpu, or jax without jax[cuda]
        pytest.skip(f"CUDA is visible but this {runtime} build has no GPU support")
    cpu = outputs(name, runtime)
    gpu = outputs(name, runtime, device="cuda")
    for key in ("features", "logits"):
        assert_close_features(gpu[key], cpu[key].astype(np.float64), tolerance("features", "gpu"),
                              f"{name} {runtime} cuda vs cpu {key}")
