"""Protocols: the registry, `resolve`, the documentation table, and each protocol against its tool.

Peer checks run the tool itself on the same PNG files with the synthetic Inception weights saved under
the tool's own file name in a private $TORCH_HOME/hub/checkpoints (as tests/test_conformance.py does),
and fidkit with `resolve(...)`'s settings through `fidkit.compute_features` and the metric functions
(not through `fidkit.score` or the CLI).

Budgets. FID: the features of the tool's network and of fidkit's torch runtime differ by float32
rounding (rms ~ eps_net sqrt 2 = 7.6e-6 of the rms feature, tests/tolerances.toml [features.peer]);
FID sums squared differences over n x d = 12 x 2048 independent entries, so the relative effect is
~ 2 x 7.6e-6 x 2.3 (rms/std) / sqrt(12 x 2048) ~ 2e-7; the tools' float32 means (~2e-7, measured with
pytorch-fid's and torch-fidelity's formulas against fidkit's float64 on 6 + 6 random features) and their
tr sqrt on rank-deficient products (sqrtm, eigvals: within 1e-8 of fidkit's exact value on the same
data) add the same order. Total ~5e-7: the issue's 1e-5 holds with a factor 20 to spare, so 1e-5 is
asserted. KID and IS on the tool's own features/logits: the subsets and permutations are the tool's
(numpy's RNG, reproduced exactly); torch-fidelity and clean-fid evaluate the cubic kernel in float32,
fidkit in float64: each kernel entry carries 3 u sqrt(K/6) x 4.4 (max over entries) = 1.5e-5 relative
(K = 2048) and KID combines four means with weights 1, 1, 2: |dKID| <= 6e-5 x mean |k|. IS is float64
on both sides (torch-fidelity's double softmax): equal to 1e-12.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.errors import FidkitWarning, InputError
from fidkit.protocols import (
    PROPOSED_POLICIES,
    PROTOCOLS,
    available_protocols,
    get_protocol,
    markdown_table,
    resolve,
)
from fidkit.resize import POLICIES

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocols.md"
BUILT_IN = {"pytorch-fid", "clean-fid", "clean-fid-legacy-tensorflow", "clean-fid-legacy-pytorch",
            "torch-fidelity", "torchmetrics", "torchmetrics-tf", "ttur", "stylegan", "mimicry", "adm"}

# ------------------------------------------------------------------------------------ the registry


def test_built_in_protocols_are_registered() -> None:
    assert BUILT_IN <= set(available_protocols())
    for name in BUILT_IN:
        p = get_protocol(name)
        assert p.name == name and p.version >= 1 and p.sources, name
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.policy = "clean"  # type: ignore[misc]


def test_unknown_protocol_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown protocol 'pytorchfid'.*pytorch-fid"):
        get_protocol("pytorchfid")


def test_every_policy_is_registered_or_proposed_exactly() -> None:
    for p in PROTOCOLS.values():
        assert p.policy in POLICIES or p.policy in PROPOSED_POLICIES, p.name
    for name, policy in PROPOSED_POLICIES.items():
        assert policy.name == name


def test_docs_table_matches_the_registry() -> None:
    """docs/protocols.md is generated: regenerate with
    ``python -c "import fidkit.protocols as p; open('docs/protocols.md', 'w').write(p.markdown_table())"``."""
    assert DOC.read_text() == markdown_table()


# ------------------------------------------------------------------------------------------ resolve


def test_resolve_fixes_the_protocol_settings() -> None:
    ex, metrics = resolve("torch-fidelity")
    assert ex == {"name": "inception-tf2015", "policy": "legacy-tensorflow", "weights": None}
    assert metrics["kid"] == {"subsets": 100, "subset_size": 1000, "degree": 3, "gamma": None, "coef0": 1.0,
                              "seed": 2020}
    assert metrics["kid_inputs"] == ("fake", "real")
    assert metrics["is"] == {"splits": 10, "shuffle_seed": 2020}
    assert metrics["protocol"]["label"] == "torch-fidelity@1"
    assert "pr" in metrics["unavailable"] and metrics["mismatches"] == ()


def test_a_contradicting_flag_is_an_error_naming_it() -> None:
    with pytest.raises(InputError) as info:
        resolve("pytorch-fid", resize="clean")
    assert str(info.value) == ("--resize clean contradicts --protocol pytorch-fid (legacy-pytorch); "
                               "pass --allow-mismatch to compute anyway")
    with pytest.raises(InputError, match="--splits 5 contradicts --protocol torch-fidelity \\(10\\)"):
        resolve("torch-fidelity", is_splits=5)
    with pytest.raises(InputError, match="--seed 0 contradicts --protocol torch-fidelity \\(2020\\)"):
        resolve("torch-fidelity", seed=0)
    with pytest.raises(InputError, match="--weights inception-2015-12-05.pt contradicts"):
        resolve("pytorch-fid", weights="/somewhere/inception-2015-12-05.pt")


def test_agreeing_flags_and_unset_flags_are_accepted() -> None:
    ex, metrics = resolve("pytorch-fid", resize="legacy-pytorch", extractor="inception-tf2015",
                          weights="/w/pt_inception-2015-12-05-6726825d.pth", is_splits=None)
    assert ex["weights"] == "/w/pt_inception-2015-12-05-6726825d.pth" and metrics["mismatches"] == ()
    # clean-fid draws KID from numpy's unseeded global RNG: any seed reproduces some run of it
    assert resolve("clean-fid", seed=7)[1]["kid"]["seed"] == 7


def test_allow_mismatch_uses_the_users_value_and_says_so() -> None:
    ex, metrics = resolve("pytorch-fid", resize="clean", allow_mismatch=True)
    assert ex["policy"] == "clean"
    assert metrics["mismatches"] == ("--resize clean contradicts --protocol pytorch-fid (legacy-pytorch)",)


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(InputError, match="unknown option\\(s\\) splits"):
        resolve("pytorch-fid", splits=3)


def test_a_missing_policy_refuses_to_resolve_and_says_what_is_missing() -> None:
    absent = dataclasses.replace(get_protocol("torchmetrics"), name="no-policy", policy="no-such-policy")
    with pytest.raises(InputError, match="resize policy 'no-such-policy' is not registered in fidkit.resize"):
        resolve(absent)
    assert "policy" in absent.missing
    assert "policy" not in get_protocol("torchmetrics").missing
    assert "policy" not in get_protocol("torchmetrics-tf").missing


def test_unavailable_metrics_are_named() -> None:
    assert "VGG16" in get_protocol("stylegan").missing["pr"]
    assert "torch.randperm" in get_protocol("torchmetrics-tf").missing["kid"]


def test_fid_covariance_divisor() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    cov = np.cov(x, rowvar=False)
    np.testing.assert_allclose(get_protocol("stylegan").fid_covariance(cov, 7), np.cov(x, rowvar=False, ddof=0),
                               rtol=1e-14)
    assert get_protocol("pytorch-fid").fid_covariance(cov, 7) is cov


def test_adm_inception_score_parts() -> None:
    adm = get_protocol("adm")
    assert adm.is_splits(50_000) == 10
    with pytest.raises(InputError, match="parts of 5000 rows"):
        adm.is_splits(12_345)


# ------------------------------------------------------------------------------------------- peers

N = 6  # images per set
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
KID_SUBSET = 4  # < N, so the subsets differ and the RNG is tested
IS_SPLITS = 2
#: float32 kernel arithmetic in the tool vs float64 in fidkit (module docstring)
KID_FLOAT32_KERNEL = 6e-5


def _images() -> tuple[np.ndarray, np.ndarray]:
    """The conformance test's two kinds of image, 64 x 64 so that every tool resizes."""
    from fidkit.archs.synthetic import synthetic_images

    real = synthetic_images(N, (64, 64), seed=21)
    fake = (synthetic_images(N, (64, 64), seed=22) // 4 + 96).astype(np.uint8)
    return real, fake


@pytest.fixture(scope="module")
def peer_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The synthetic weights (canonical .npz and under both peers' hub names) and the PNG folders."""
    require_runtime("torch")
    import torch
    from PIL import Image

    from fidkit.archs.inception import inception_tf2015
    from fidkit.archs.synthetic import write_synthetic_weights
    from fidkit.weights import load_canonical

    root = tmp_path_factory.mktemp("protocols")
    npz = write_synthetic_weights(inception_tf2015(logits_bias=True), root / "tf2015.npz")
    ckpt = root / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    state = {k: torch.from_numpy(v) for k, v in load_canonical(npz).items()}
    for file in (PYTORCH_FID_FILE, TORCH_FIDELITY_FILE):
        torch.save(state, ckpt / file)
    real, fake = _images()
    dirs = {}
    for label, arr in (("real", real), ("fake", fake)):
        d = root / label
        d.mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img).save(d / f"{i:03d}.png")
        dirs[label] = d
    return {"npz": npz, "torch_home": root / "torch_home", "real": dirs["real"], "fake": dirs["fake"],
            "arrays": {"real": real, "fake": fake}}


@pytest.fixture
def torch_home(peer_env: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(peer_env["torch_home"]))
    return peer_env["torch_home"]


_FIDKIT_CACHE: dict = {}


def fidkit_side(peer_env: dict, policy) -> dict[str, np.ndarray]:
    """fidkit's features and logits of both folders under ``policy`` (a name or a `ResizePolicy`), on the
    torch runtime with the synthetic weights, through `fidkit.compute_features`."""
    import fidkit

    key = policy if isinstance(policy, str) else policy.name
    if key not in _FIDKIT_CACHE:
        with pytest.warns(FidkitWarning, match="unofficial"):
            ex = fidkit.extractor("inception-tf2015", "torch", weights=str(peer_env["npz"]), policy=policy)
        out = {}
        for side in ("real", "fake"):
            res = fidkit.compute_features(str(peer_env[side]), ex, progress=False)
            assert [Path(n).name for n in res.names] == [f"{i:03d}.png" for i in range(N)]
            out[side], out[side + "_logits"] = res.features, res.logits
        _FIDKIT_CACHE[key] = out
    return _FIDKIT_CACHE[key]


def fidkit_fid(feats: dict[str, np.ndarray], protocol: str) -> float:
    import fidkit

    p = get_protocol(protocol)
    stats = []
    for side in ("real", "fake"):
        f = feats[side].astype(np.float64)
        stats += [f.mean(axis=0), p.fid_covariance(np.cov(f, rowvar=False), len(f))]
    return fidkit.frechet_distance(*stats)


def assert_rel(got: float, want: float, tol: float, what: str) -> None:
    rel = abs(got - want) / abs(want)
    print(f"{what}: relative difference {rel:.2e} (tolerance {tol:.0e})")  # shown with pytest -rP
    assert rel <= tol, f"{what}: fidkit {got!r} vs tool {want!r} ({rel:.2e} > {tol:.0e})"


def assert_kid_close(got: float, want: float, f1: np.ndarray, f2: np.ndarray, what: str) -> None:
    """|got - want| within the float32-kernel budget, in units of the mean |kernel| of the features."""
    from fidkit.kid import polynomial_kernel

    f = np.concatenate([f1, f2]).astype(np.float64)
    scale = float(np.abs(polynomial_kernel(f, f)).mean())
    err = abs(got - want) / scale
    print(f"{what}: difference {err:.2e} x mean |k| (relative {abs(got - want) / abs(want):.2e})")
    assert err <= KID_FLOAT32_KERNEL, f"{what}: fidkit {got!r} vs tool {want!r} ({err:.2e} x mean |k|)"


def _is_kwargs(options: dict) -> dict:
    """`fidkit.inception_score` keyword arguments from resolve's IS options (shuffle_seed, or the older
    shuffle/seed pair where that is what the installed fidkit takes)."""
    import inspect

    import fidkit

    params = inspect.signature(fidkit.inception_score).parameters
    if "shuffle_seed" in params:
        return dict(options)
    seed = options["shuffle_seed"]
    return {"splits": options["splits"], "shuffle": seed is not None, "seed": 2020 if seed is None else seed}


#: the tools' scipy.linalg.sqrtm warns that the (rank-deficient, n < d) product is singular: their number
#: is still within ~1e-8 of the exact one here (module docstring)
SQRTM_SINGULAR = "ignore::scipy.linalg.LinAlgWarning"


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings(SQRTM_SINGULAR)
def test_pytorch_fid(peer_env: dict, torch_home: Path) -> None:
    from pytorch_fid.fid_score import calculate_fid_given_paths

    ex, metrics = resolve("pytorch-fid")
    peer = calculate_fid_given_paths([str(peer_env["real"]), str(peer_env["fake"])], batch_size=N,
                                     device="cpu", dims=2048, num_workers=0)
    feats = fidkit_side(peer_env, ex["policy"])
    assert metrics["fid"]["cov_ddof"] == 1
    assert_rel(fidkit_fid(feats, "pytorch-fid"), float(peer), tolerance("scores", "fid"), "pytorch-fid FID")


@pytest.mark.slow
@pytest.mark.peers
def test_torch_fidelity(peer_env: dict, torch_home: Path) -> None:
    import torch
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    import fidkit

    ex, metrics = resolve("torch-fidelity", kid_subset_size=KID_SUBSET, is_splits=IS_SPLITS, allow_mismatch=True)
    assert len(metrics["mismatches"]) == 2
    peer = torch_fidelity.calculate_metrics(
        input1=str(peer_env["fake"]), input2=str(peer_env["real"]), cuda=False, fid=True, kid=True, isc=True,
        kid_subset_size=KID_SUBSET, isc_splits=IS_SPLITS, cache=False, verbose=False, batch_size=N,
        save_cpu_ram=True)  # num_workers=0: no fork, which deadlocks once JAX has started its threads
    feats = fidkit_side(peer_env, ex["policy"])
    assert_rel(fidkit_fid(feats, "torch-fidelity"), peer["frechet_inception_distance"],
               tolerance("scores", "fid"), "torch-fidelity FID")

    # KID and IS on torch-fidelity's own features: its subsets and permutation, exactly
    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], verbose=False)
    own = {}
    for side in ("real", "fake"):
        x = torch.from_numpy(peer_env["arrays"][side]).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            f, lg = model(x)
        own[side], own[side + "_logits"] = f.numpy(), lg.numpy()
    first, second = (own[s] for s in metrics["kid_inputs"])
    kid_mean, kid_std = fidkit.kid(first, second, **metrics["kid"])
    assert_kid_close(kid_mean, peer["kernel_inception_distance_mean"], first, second, "torch-fidelity KID mean")
    assert_kid_close(kid_std, peer["kernel_inception_distance_std"], first, second, "torch-fidelity KID std")
    is_mean, is_std = fidkit.inception_score(own["fake_logits"], **_is_kwargs(metrics["is"]))
    assert_rel(is_mean, peer["inception_score_mean"], 1e-12, "torch-fidelity IS mean")
    assert_rel(is_std, peer["inception_score_std"], 1e-9, "torch-fidelity IS std")

    # ... and end to end on fidkit's own features and logits
    first, second = (feats[s] for s in metrics["kid_inputs"])
    kid_mean, _ = fidkit.kid(first, second, **metrics["kid"])
    assert_rel(kid_mean, peer["kernel_inception_distance_mean"], tolerance("scores", "kid"), "KID end to end")
    is_mean, _ = fidkit.inception_score(feats["fake_logits"], **_is_kwargs(metrics["is"]))
    assert_rel(is_mean, peer["inception_score_mean"], tolerance("scores", "is"), "IS end to end")


class _StandInTorchScript:
    """Stands in for NVIDIA's inception-2015-12-05.pt inside clean-fid's InceptionV3W: ``layers`` is
    pytorch-fid's FID Inception (the same 2015 graph) without its own resize and normalisation, loaded
    from the synthetic weights; clean-fid's own code still resizes and applies (x - 128) / 128."""

    def __init__(self) -> None:
        from pytorch_fid.inception import InceptionV3

        net = InceptionV3([3], resize_input=False, normalize_input=False).eval()
        self.layers = type("Layers", (), {"forward": staticmethod(lambda x: net(x)[0])})()

    def __call__(self, *args, **kwargs):
        raise NotImplementedError("NVIDIA's in-network resize (legacy_tensorflow) is not reproduced")


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings(SQRTM_SINGULAR)
@pytest.mark.parametrize("protocol,mode", [("clean-fid", "clean"), ("clean-fid-legacy-pytorch", "legacy_pytorch")])
def test_clean_fid(peer_env: dict, torch_home: Path, monkeypatch: pytest.MonkeyPatch, protocol: str,
                   mode: str) -> None:
    import torch
    from cleanfid import features as cf_features
    from cleanfid import fid as cf
    from cleanfid.inception_torchscript import InceptionV3W

    import fidkit

    class StandIn(InceptionV3W):
        def __init__(self, path, download=True, resize_inside=False):
            torch.nn.Module.__init__(self)
            self.base = _StandInTorchScript()
            self.layers = self.base.layers
            self.resize_inside = resize_inside

    monkeypatch.setattr(cf_features, "InceptionV3W", StandIn)
    ex, metrics = resolve(protocol, kid_subset_size=KID_SUBSET, seed=0, allow_mismatch=True)
    model = cf.build_feature_extractor(mode, device=torch.device("cpu"), use_dataparallel=False)
    own = {side: cf.get_folder_features(str(peer_env[side]), model, num_workers=0, batch_size=N,
                                        device=torch.device("cpu"), mode=mode, verbose=False)
           for side in ("real", "fake")}
    # compare_folders' statistics and formula
    mu1, s1 = np.mean(own["real"], axis=0), np.cov(own["real"], rowvar=False)
    mu2, s2 = np.mean(own["fake"], axis=0), np.cov(own["fake"], rowvar=False)
    peer_fid = float(cf.frechet_distance(mu1, s1, mu2, s2))
    np.random.seed(metrics["kid"]["seed"])
    # compute_kid(fdir1=real, fdir2=fake) -> kernel_distance(real, fake): fdir2 is drawn first
    peer_kid = cf.kernel_distance(own["real"], own["fake"], num_subsets=metrics["kid"]["subsets"],
                                  max_subset_size=KID_SUBSET)
    feats = fidkit_side(peer_env, ex["policy"])
    assert_rel(fidkit_fid(feats, protocol), peer_fid, tolerance("scores", "fid"), f"{protocol} FID")
    first, second = (own[s] for s in metrics["kid_inputs"])
    kid_mean, _ = fidkit.kid(first, second, **metrics["kid"])
    assert_kid_close(kid_mean, peer_kid, first, second, f"{protocol} KID on clean-fid's features")


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize("protocol,antialias", [("torchmetrics", True), ("torchmetrics-tf", False)])
def test_torchmetrics_fid(peer_env: dict, torch_home: Path, protocol: str, antialias: bool) -> None:
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    ex, _ = resolve(protocol)
    policy = ex["policy"]
    metric = FrechetInceptionDistance(feature=2048, antialias=antialias)
    for side, real in (("real", True), ("fake", False)):
        metric.update(torch.from_numpy(peer_env["arrays"][side]).permute(0, 3, 1, 2).contiguous(), real=real)
    peer = float(metric.compute())
    feats = fidkit_side(peer_env, policy)
    assert_rel(fidkit_fid(feats, protocol), peer, tolerance("scores", "fid"), f"{protocol} FID")


@pytest.mark.peers
def test_torchmetrics_kid_and_is_draws_are_torch_randperm() -> None:
    """What fidkit.kid / fidkit.inception_score lack to reproduce torchmetrics: its draws are
    torch.randperm on torch's global generator. Drawn that way and fed to fidkit's estimators, the
    numbers are torchmetrics' own (float64 features on both sides)."""
    require_runtime("torch")
    import torch
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    import fidkit
    from fidkit.kid import mmd2_unbiased

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    rng = np.random.default_rng(3)
    real, fake = rng.normal(1.0, 0.5, size=(9, 16)), rng.normal(1.2, 0.6, size=(7, 16))
    kid = KernelInceptionDistance(feature=Identity(), subsets=20, subset_size=5)
    kid.update(torch.from_numpy(real), real=True)
    kid.update(torch.from_numpy(fake), real=False)
    torch.manual_seed(11)
    tm_mean, tm_std = (float(v) for v in kid.compute())
    torch.manual_seed(11)
    values = []
    for _ in range(20):
        r = torch.randperm(len(real))[:5].numpy()
        f = torch.randperm(len(fake))[:5].numpy()
        values.append(mmd2_unbiased(real[r], fake[f]))
    assert_rel(float(np.mean(values)), tm_mean, 1e-12, "torchmetrics KID mean")
    assert_rel(float(np.std(values)), tm_std, 1e-9, "torchmetrics KID std")
    # fidkit's own numpy draws give another number: the protocol lists KID as unavailable
    assert fidkit.kid(real, fake, subsets=20, subset_size=5, seed=11)[0] != pytest.approx(tm_mean, rel=1e-9)

    logits = rng.normal(size=(8, 10)) * 3
    isc = InceptionScore(feature=Identity(), splits=IS_SPLITS)
    isc.update(torch.from_numpy(logits))
    torch.manual_seed(5)
    tm_is, tm_is_std = (float(v) for v in isc.compute())
    torch.manual_seed(5)
    perm = torch.randperm(len(logits)).numpy()
    mean, std = fidkit.inception_score(logits[perm], **_is_kwargs({"splits": IS_SPLITS, "shuffle_seed": None}))
    # 8 rows in 2 parts: Tensor.chunk's parts are fidkit's; torchmetrics' std has ddof 1
    assert_rel(mean, tm_is, 1e-12, "torchmetrics IS mean")
    assert_rel(std * math.sqrt(IS_SPLITS / (IS_SPLITS - 1)), tm_is_std, 1e-9, "torchmetrics IS std (ddof 1)")


def test_peer_packages_named_in_sources_are_the_ones_checked() -> None:
    """The protocols verified in this file name this file; the others say they were not run."""
    for p in PROTOCOLS.values():
        assert ("tests/test_protocols.py" in p.verified) or ("not run" in p.verified), p.name
