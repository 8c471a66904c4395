"""Protocols: the registry, `resolve`, the documentation table, and each protocol against its tool.

Peer checks run the tool itself on the same PNG files with the synthetic Inception weights saved under
the tool's own file name in a private $TORCH_HOME/hub/checkpoints (as tests/test_conformance.py does),
and fidkit through ``--protocol NAME`` only: ``fidkit features`` then ``fidkit fid``/``score`` on the
command line, and `fidkit.score(protocol=...)` on the folders or on the tool's own features (no
hand-assembled settings). Every protocol is also run on both routes on synthetic features against the
numbers assembled by hand from its record.

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
                              "seed": 2020, "rng": "numpy"}
    assert metrics["kid_inputs"] == ("fake", "real")
    assert metrics["is"] == {"splits": 10, "shuffle_seed": 2020, "rng": "numpy", "parts": "floor", "ddof": 0}
    assert metrics["seed"] == 2020
    assert metrics["protocol"]["label"] == "torch-fidelity@1"
    assert "pr" not in metrics["unavailable"] and metrics["mismatches"] == ()
    assert metrics["pr"] == {"k": 3, "radius_inclusive": True, "extractor": "vgg16-torchvision"}


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
    assert "pr" not in get_protocol("stylegan").missing and get_protocol("stylegan").pr.extractor == "vgg16-nvidia"
    assert "always resizes with antialias" in get_protocol("torchmetrics-tf").missing["kid"]
    assert "kid" not in get_protocol("torchmetrics").missing and "is" not in get_protocol("torchmetrics").missing


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
    return {"npz": npz, "torch_home": root / "torch_home", "real": dirs["real"], "fake": dirs["fake"], "root": root,
            "arrays": {"real": real, "fake": fake}}


@pytest.fixture
def torch_home(peer_env: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(peer_env["torch_home"]))
    return peer_env["torch_home"]


_FIDKIT_CACHE: dict = {}
#: the synthetic weights under the file name each protocol loads (clean-fid's NVIDIA TorchScript cannot be
#: rebuilt from them: its stand-in is pytorch-fid's file, a mismatch the test allows and checks is recorded)
PROTOCOL_WEIGHTS = {"pytorch-fid": PYTORCH_FID_FILE, "clean-fid-legacy-pytorch": PYTORCH_FID_FILE,
                    "clean-fid": PYTORCH_FID_FILE, "torch-fidelity": TORCH_FIDELITY_FILE,
                    "torchmetrics": TORCH_FIDELITY_FILE, "torchmetrics-tf": TORCH_FIDELITY_FILE}


def run_cli(*argv) -> dict:
    """Returns the --json output of ``fidkit argv`` run in-process (exit status 0 asserted)."""
    import contextlib
    import io
    import json

    from fidkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv] + ["--json"])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def protocol_features(peer_env: dict, protocol: str) -> dict[str, Path]:
    """Both folders' features files written by ``fidkit features --protocol`` (torch runtime, the synthetic
    weights under the protocol's file name): the extraction the protocol fixes, on the command line."""
    if protocol not in _FIDKIT_CACHE:
        weights = peer_env["torch_home"] / "hub" / "checkpoints" / PROTOCOL_WEIGHTS[protocol]
        files = {}
        for side in ("real", "fake"):
            argv = ["features", peer_env[side], "-o", peer_env["root"] / f"{protocol}-{side}.npz", "--protocol", protocol,
                    "--weights", weights, "--runtime", "torch", "--no-progress"]
            if PROTOCOL_WEIGHTS[protocol] not in get_protocol(protocol).weights:
                argv.append("--allow-mismatch")
            out = run_cli(*argv)
            assert out["provenance"]["protocol"] == get_protocol(protocol).label
            assert out["provenance"]["resize_policy"] == get_protocol(protocol).policy
            files[side] = Path(out["output"])
        _FIDKIT_CACHE[protocol] = files
    return _FIDKIT_CACHE[protocol]


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


#: the tools' scipy.linalg.sqrtm warns that the (rank-deficient, n < d) product is singular: their number
#: is still within ~1e-8 of the exact one here (module docstring)
SQRTM_SINGULAR = "ignore::scipy.linalg.LinAlgWarning"


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings(SQRTM_SINGULAR)
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_pytorch_fid(peer_env: dict, torch_home: Path) -> None:
    """The API on the image folders and the command line (features, then fid), each with --protocol only."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    import fidkit

    peer = float(calculate_fid_given_paths([str(peer_env["real"]), str(peer_env["fake"])], batch_size=N,
                                           device="cpu", dims=2048, num_workers=0))
    weights = torch_home / "hub" / "checkpoints" / PYTORCH_FID_FILE
    api = fidkit.score(str(peer_env["real"]), str(peer_env["fake"]), protocol="pytorch-fid", weights=str(weights),
                       runtime="torch", bootstrap=0)
    assert [m for m in ("fid", "kid", "is", "pr", "dc") if m in api] == ["fid"]  # pytorch-fid computes FID only
    assert api["provenance"]["protocol"] == "pytorch-fid@1" and api["provenance"]["resize_policy"] == "legacy-pytorch"
    assert_rel(api["fid"], peer, tolerance("scores", "fid"), "pytorch-fid FID (fidkit.score)")
    files = protocol_features(peer_env, "pytorch-fid")
    cli = run_cli("fid", files["real"], files["fake"], "--protocol", "pytorch-fid")
    assert cli["settings"]["protocol"]["label"] == "pytorch-fid@1"
    assert_rel(cli["fid"], peer, tolerance("scores", "fid"), "pytorch-fid FID (fidkit fid)")
    # statistics under the protocol, on both routes: the label is saved, loaded, and scored against
    stats = fidkit.compute_stats(str(peer_env["real"]), protocol="pytorch-fid", weights=str(weights),
                                 runtime="torch", progress=False)
    assert stats.provenance.protocol == "pytorch-fid@1" and stats.provenance.resize_policy == "legacy-pytorch"
    saved = fidkit.load_stats(stats.save(peer_env["root"] / "pytorch-fid-real-stats.npz"))
    assert saved.provenance == stats.provenance
    again = run_cli("fid", peer_env["root"] / "pytorch-fid-real-stats.npz", files["fake"], "--protocol", "pytorch-fid")
    assert_rel(again["fid"], cli["fid"], 1e-9, "FID from the saved statistics")
    with pytest.raises(InputError, match="--resize clean contradicts --protocol pytorch-fid"):
        fidkit.compute_stats(str(peer_env["real"]), protocol="pytorch-fid", resize="clean")


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_torch_fidelity(peer_env: dict, torch_home: Path) -> None:
    import torch
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    import fidkit

    peer = torch_fidelity.calculate_metrics(
        input1=str(peer_env["fake"]), input2=str(peer_env["real"]), cuda=False, fid=True, kid=True, isc=True,
        kid_subset_size=KID_SUBSET, isc_splits=IS_SPLITS, cache=False, verbose=False, batch_size=N,
        save_cpu_ram=True)  # num_workers=0: no fork, which deadlocks once JAX has started its threads
    # end to end on the command line: features under the protocol, then every metric it reproduces, with
    # the two sizes these 6 images need instead of torch-fidelity's defaults (allowed, and recorded)
    files = protocol_features(peer_env, "torch-fidelity")
    cli = run_cli("score", files["real"], files["fake"], "--protocol", "torch-fidelity", "--subset-size", KID_SUBSET,
                  "--splits", IS_SPLITS, "--allow-mismatch", "--bootstrap", 0)
    assert cli["settings"]["protocol"]["mismatches"] == [
        f"--splits {IS_SPLITS} contradicts --protocol torch-fidelity (10)",
        f"--subset-size {KID_SUBSET} contradicts --protocol torch-fidelity (1000)"]
    assert [m for m in ("fid", "kid", "is", "pr", "dc") if m in cli] == ["fid", "kid", "is"]
    assert_rel(cli["fid"], peer["frechet_inception_distance"], tolerance("scores", "fid"), "torch-fidelity FID")
    assert_rel(cli["kid"]["mean"], peer["kernel_inception_distance_mean"], tolerance("scores", "kid"),
               "KID end to end")
    assert_rel(cli["is"]["mean"], peer["inception_score_mean"], tolerance("scores", "is"), "IS end to end")

    # KID and IS through fidkit.score(protocol=) on torch-fidelity's own features: its subsets and
    # permutation (fake drawn first, RandomState(2020)), exactly
    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], verbose=False)
    own = {}
    for side in ("real", "fake"):
        x = torch.from_numpy(peer_env["arrays"][side]).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            f, lg = model(x)
        own[side], own[side + "_logits"] = f.numpy(), lg.numpy()
    fake = fidkit.FeatureResult(own["fake"], own["fake_logits"], [str(i) for i in range(N)])
    api = fidkit.score(own["real"], fake, ("kid", "is"), protocol="torch-fidelity", kid_subset_size=KID_SUBSET,
                       is_splits=IS_SPLITS, allow_mismatch=True, bootstrap=0)
    assert api["settings"]["kid"]["first_draw"] == "fake" and api["settings"]["kid"]["seed"] == 2020
    assert_kid_close(api["kid"]["mean"], peer["kernel_inception_distance_mean"], own["fake"], own["real"],
                     "torch-fidelity KID mean")
    assert_kid_close(api["kid"]["std"], peer["kernel_inception_distance_std"], own["fake"], own["real"],
                     "torch-fidelity KID std")
    assert_rel(api["is"]["mean"], peer["inception_score_mean"], 1e-12, "torch-fidelity IS mean")
    assert_rel(api["is"]["std"], peer["inception_score_std"], 1e-9, "torch-fidelity IS std")


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
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
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
    model = cf.build_feature_extractor(mode, device=torch.device("cpu"), use_dataparallel=False)
    own = {side: cf.get_folder_features(str(peer_env[side]), model, num_workers=0, batch_size=N,
                                        device=torch.device("cpu"), mode=mode, verbose=False)
           for side in ("real", "fake")}
    # compare_folders' statistics and formula
    mu1, s1 = np.mean(own["real"], axis=0), np.cov(own["real"], rowvar=False)
    mu2, s2 = np.mean(own["fake"], axis=0), np.cov(own["fake"], rowvar=False)
    peer_fid = float(cf.frechet_distance(mu1, s1, mu2, s2))
    np.random.seed(0)
    # compute_kid(fdir1=real, fdir2=fake) -> kernel_distance(real, fake): fdir2 is drawn first
    peer_kid = cf.kernel_distance(own["real"], own["fake"], num_subsets=100, max_subset_size=KID_SUBSET)
    files = protocol_features(peer_env, protocol)  # clean-fid's NVIDIA file: stood in for, a mismatch
    cli = run_cli("fid", files["real"], files["fake"], "--protocol", protocol)
    assert_rel(cli["fid"], peer_fid, tolerance("scores", "fid"), f"{protocol} FID")
    # KID through fidkit.score(protocol=) on clean-fid's own features, seed 0 as np.random.seed(0) above
    api = fidkit.score(own["real"], own["fake"], "kid", protocol=protocol, kid_subset_size=KID_SUBSET, seed=0,
                       allow_mismatch=True, bootstrap=0)
    assert api["settings"]["kid"]["first_draw"] == "fake"
    assert_kid_close(api["kid"]["mean"], peer_kid, own["fake"], own["real"], f"{protocol} KID on clean-fid's features")


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
@pytest.mark.parametrize("protocol,antialias", [("torchmetrics", True), ("torchmetrics-tf", False)])
def test_torchmetrics_fid(peer_env: dict, torch_home: Path, protocol: str, antialias: bool) -> None:
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, antialias=antialias)
    for side, real in (("real", True), ("fake", False)):
        metric.update(torch.from_numpy(peer_env["arrays"][side]).permute(0, 3, 1, 2).contiguous(), real=real)
    peer = float(metric.compute())
    files = protocol_features(peer_env, protocol)
    cli = run_cli("fid", files["real"], files["fake"], "--protocol", protocol)
    assert_rel(cli["fid"], peer, tolerance("scores", "fid"), f"{protocol} FID")


@pytest.mark.peers
@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_torchmetrics_kid_and_is_through_the_protocol(tmp_path: Path) -> None:
    """torchmetrics draws KID subsets and the IS permutation with torch.randperm on torch's global generator:
    --protocol torchmetrics reproduces its numbers right after torch.manual_seed(seed) (seed 0 unless
    given), on the same float64 features and logits (a feature module that returns its input)."""
    require_runtime("torch")
    import torch
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    import fidkit

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    rng = np.random.default_rng(3)
    real, fake = rng.normal(1.0, 0.5, size=(9, 16)), rng.normal(1.2, 0.6, size=(30, 16))
    logits = rng.normal(size=(30, 10)) * 3
    for seed in (0, 11):  # new metric objects each time: torchmetrics caches what compute() returned
        kid = KernelInceptionDistance(feature=Identity(), subset_size=5)  # its default 100 subsets
        kid.update(torch.from_numpy(real), real=True)
        kid.update(torch.from_numpy(fake), real=False)
        isc = InceptionScore(feature=Identity())  # its default 10 splits
        isc.update(torch.from_numpy(logits))
        torch.manual_seed(seed)
        tm_kid, tm_kid_std = (float(v) for v in kid.compute())
        torch.manual_seed(seed)
        tm_is, tm_is_std = (float(v) for v in isc.compute())
        out = fidkit.score(real, fidkit.FeatureResult(fake, logits, [str(i) for i in range(30)]), ("kid", "is"),
                           protocol="torchmetrics", kid_subset_size=5, allow_mismatch=True, bootstrap=0,
                           seed=None if seed == 0 else seed)
        assert_rel(out["kid"]["mean"], tm_kid, 1e-12, "torchmetrics KID mean")
        assert_rel(out["kid"]["std"], tm_kid_std, 1e-9, "torchmetrics KID std")
        assert_rel(out["is"]["mean"], tm_is, 1e-12, "torchmetrics IS mean")
        assert_rel(out["is"]["std"], tm_is_std, 1e-9, "torchmetrics IS std (ddof 1)")
        assert out["settings"]["kid"]["rng"] == "torch" and out["settings"]["is"]["parts"] == "chunk"
    # the same on the command line, from features files
    path = fidkit.FeatureResult(fake, logits, [str(i) for i in range(30)]).save(tmp_path / "fake.npz")
    np.save(tmp_path / "real.npy", real)
    cli = run_cli("score", tmp_path / "real.npy", path, "--protocol", "torchmetrics", "--subset-size", 5,
                  "--allow-mismatch", "--bootstrap", 0, "--seed", 11)
    assert cli["kid"] == out["kid"] and cli["is"] == out["is"]


def test_peer_packages_named_in_sources_are_the_ones_checked() -> None:
    """The protocols verified by a test name its file (this one, or e.g. tests/test_adm_evaluator.py for a
    re-implemented tool), which exists; the others say they were not run."""
    import re

    for p in PROTOCOLS.values():
        named = re.findall(r"tests/(test_\w+\.py)", p.verified)
        assert named or "not run" in p.verified, p.name
        assert all((Path(__file__).parent / f).is_file() for f in named), (p.name, named)


# -------------------------------------------------- every protocol on the API and the command line

N_REAL, N_FAKE, DIM = 1200, 5000, 8  # KID's subsets of 1000 fit; ADM's IS parts of 5000 fit


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Features (and fake logits) as arrays and as fidkit features files, without provenance."""
    from fidkit.features import FeatureResult

    rng = np.random.default_rng(15)
    real = rng.normal(size=(N_REAL, DIM)) @ rng.normal(size=(DIM, DIM))
    fake = rng.normal(0.2, 1.1, size=(N_FAKE, DIM)) @ rng.normal(size=(DIM, DIM))
    logits = rng.normal(size=(N_FAKE, 12)) * 3
    root = tmp_path_factory.mktemp("protocol_features")
    res = {"real": FeatureResult(real, None, [str(i) for i in range(N_REAL)]),
           "fake": FeatureResult(fake, logits, [str(i) for i in range(N_FAKE)])}
    return {**res, "real_file": res["real"].save(root / "real.npz"), "fake_file": res["fake"].save(root / "fake.npz")}


def _independent(name: str, real: np.ndarray, fake: np.ndarray, logits: np.ndarray) -> dict:
    """The protocol's numbers assembled by hand from its record, not through resolve or score."""
    import fidkit
    from fidkit.kid import kid
    from fidkit.protocols import DEFAULT_FREE_SEED

    p = get_protocol(name)
    out = {}
    stats = []
    for f in (real, fake):
        cov = np.cov(f, rowvar=False, ddof=p.fid_cov_ddof)  # the tool's divisor, computed directly
        stats += [f.mean(axis=0), cov]
    out["fid"] = fidkit.frechet_distance(*stats)
    if p.kid is not None and "kid" not in p.missing:
        c = p.kid
        m = {"fixed": c.subset_size, "capped": min(len(real), len(fake), c.subset_size),
             "n_over_subsets": min(c.subset_size, min(len(real), len(fake)) // c.subsets)}[c.subset_size_rule]
        first, second = (real, fake) if c.first_draw == "real" else (fake, real)
        seed = c.seed if c.seed is not None else DEFAULT_FREE_SEED
        out["kid"] = kid(first, second, c.subsets, m, c.degree, c.gamma, c.coef0, seed,
                         rng="torch" if c.rng == "torch-global" else "numpy")[0]
    if p.inception_score is not None and "is" not in p.missing:
        c = p.inception_score
        seed = c.seed if c.seed is not None else DEFAULT_FREE_SEED
        shuffle = seed if c.order != "given" else None
        out["is"] = fidkit.inception_score(logits, p.is_splits(len(logits)), shuffle_seed=shuffle,
                                           rng="torch" if c.order == "torch-randperm" else "numpy",
                                           parts="chunk" if c.parts == "chunk" else "floor",
                                           ddof=c.std_ddof or 0)[0]
    if p.pr is not None and p.pr.extractor is None and "pr" not in p.missing:  # PR on the protocol's features
        from scipy.spatial.distance import cdist as d

        within = np.less_equal if p.pr.radius_inclusive else np.less
        k = p.pr.k
        r_real, r_fake = (np.partition(d(x, x), k, axis=1)[:, k] for x in (real, fake))
        out["pr"] = float(within(d(fake, real), r_real[None, :]).any(1).mean())
        out["recall"] = float(within(d(real, fake), r_fake[None, :]).any(1).mean())
    return out


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
@pytest.mark.parametrize("name", sorted(BUILT_IN | {"fd-dinov2", "clip-fid"}))
def test_every_protocol_is_selectable_on_the_api_and_the_cli(name: str, feature_files: dict, capsys) -> None:
    import json

    import fidkit
    from fidkit.cli import main

    p = get_protocol(name)
    argv = ["score", str(feature_files["real_file"]), str(feature_files["fake_file"]), "--protocol", name,
            "--bootstrap", "0", "--json"]
    if "extractor" in p.missing or "policy" in p.missing:  # said clearly, on both routes
        with pytest.raises(InputError, match="is not registered"):
            fidkit.score(feature_files["real"], feature_files["fake"], protocol=name, bootstrap=0)
        assert main(argv) == 2 and "is not registered" in capsys.readouterr().err
        return
    api = fidkit.score(feature_files["real"], feature_files["fake"], protocol=name, bootstrap=0)
    assert api["settings"]["protocol"]["label"] == p.label and api["settings"]["protocol"]["mismatches"] == []
    want = _independent(name, feature_files["real"].features, feature_files["fake"].features,
                        feature_files["fake"].logits)
    assert sorted(m for m in ("fid", "kid", "is", "pr", "dc") if m in api) == sorted(m for m in want if m != "recall")
    assert api["fid"] == pytest.approx(want["fid"], rel=1e-12)
    if "kid" in want:
        assert api["kid"]["mean"] == pytest.approx(want["kid"], rel=1e-12, abs=1e-15)
    if "is" in want:
        assert api["is"]["mean"] == pytest.approx(want["is"], rel=1e-12)
    if "pr" in want:  # the brute-force count with the protocol's tie rule
        assert (api["pr"]["precision"], api["pr"]["recall"]) == (want["pr"], want["recall"])
    # the command line: the same numbers (KID's subsets through the CLI: test_allow_mismatch_... below)
    assert main([*argv, "--metrics", ",".join(m for m in want if m not in ("kid", "recall"))]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["settings"]["protocol"]["label"] == p.label
    for m in (m for m in want if m not in ("kid", "recall")):
        value = cli[m] if m == "fid" else cli[m]["precision"] if m == "pr" else cli[m]["mean"]
        assert value == pytest.approx(want[m], rel=1e-12, abs=1e-15), m
    assert main([*argv[:-1], "--metrics", "fid"]) == 0  # the text output names the protocol
    assert f"protocol {p.label}" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_contradicting_flags_are_one_line_errors_on_both_routes(feature_files: dict, capsys) -> None:
    import fidkit
    from fidkit.cli import main

    real, fake = str(feature_files["real_file"]), str(feature_files["fake_file"])
    message = "--seed 3 contradicts --protocol torch-fidelity (2020); pass --allow-mismatch to compute anyway"
    with pytest.raises(InputError) as info:
        fidkit.score(real, fake, protocol="torch-fidelity", seed=3, bootstrap=0)
    assert str(info.value) == message
    assert main(["score", real, fake, "--protocol", "torch-fidelity", "--seed", "3"]) == 2
    assert capsys.readouterr().err == f"fidkit: {message}\n"
    assert main(["kid", real, fake, "--protocol", "torch-fidelity", "--subsets", "7"]) == 2
    assert "--subsets 7 contradicts --protocol torch-fidelity (100)" in capsys.readouterr().err
    assert main(["fid", real, fake, "--protocol", "pytorch-fid", "--resize", "clean"]) == 2
    assert "--resize clean contradicts --protocol pytorch-fid (legacy-pytorch)" in capsys.readouterr().err
    # a metric the protocol does not reproduce, named: an error saying why
    assert main(["kid", real, fake, "--protocol", "pytorch-fid"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not reproduce KID: the tool computes FID only" in err
    with pytest.raises(InputError, match="does not reproduce density/coverage: torch-fidelity computes no "):
        fidkit.score(real, fake, "dc", protocol="torch-fidelity")
    # PR in the protocol's own VGG16 feature space needs images (a second pass), said in one line
    with pytest.raises(InputError, match="real: --protocol torch-fidelity computes precision/recall on "
                                         "vgg16-torchvision features, from images, and real is features"):
        fidkit.score(real, fake, "pr", protocol="torch-fidelity")
    # a statistics or features file from another extractor than the protocol's
    other = fidkit.FeatureResult(feature_files["fake"].features, None, feature_files["fake"].names,
                                 fidkit.Provenance(extractor="mnist", resize_policy="mnist"))
    with pytest.raises(InputError, match="fake was computed with extractor mnist, and --protocol pytorch-fid "
                                         "uses inception-tf2015"):
        fidkit.score(real, other, "fid", protocol="pytorch-fid")
    # an option the protocol leaves free is allowed: clean-fid draws KID from an unseeded global RNG
    free = fidkit.score(real, fake, "kid", protocol="clean-fid", seed=5, bootstrap=0)
    assert free["settings"]["kid"]["seed"] == 5 and free["settings"]["protocol"]["mismatches"] == []


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_allow_mismatch_computes_with_the_users_value_and_says_so(feature_files: dict, capsys) -> None:
    import json

    import fidkit
    from fidkit.cli import main
    from fidkit.kid import kid

    real, fake = feature_files["real"], feature_files["fake"]
    out = fidkit.score(real, fake, ("kid", "pr"), protocol="torch-fidelity", kid_subset_size=50,
                       allow_mismatch=True, bootstrap=0)
    mismatch = "--subset-size 50 contradicts --protocol torch-fidelity (1000)"
    assert out["settings"]["protocol"]["mismatches"] == [mismatch]
    assert f"mismatch: {mismatch}" in out["notes"]
    assert any(n.startswith("precision/recall: not torch-fidelity's number") for n in out["notes"])
    # torch-fidelity's draws (fake first, RandomState(2020)) with the user's subset size
    assert out["kid"]["mean"] == pytest.approx(kid(fake.features, real.features, 100, 50, seed=2020)[0], rel=1e-12)
    argv = ["score", str(feature_files["real_file"]), str(feature_files["fake_file"]), "--metrics", "kid,pr", "--protocol",
            "torch-fidelity", "--subset-size", "50", "--allow-mismatch", "--bootstrap", "0"]
    assert main([*argv, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["kid"] == out["kid"] and cli["settings"]["protocol"]["mismatches"] == [mismatch]
    assert main(argv) == 0
    assert f"note: mismatch: {mismatch}" in capsys.readouterr().out


def test_stylegan_divides_the_covariance_by_n_and_needs_n(feature_files: dict, tmp_path) -> None:
    import warnings

    import fidkit

    real, fake = feature_files["real"].features, feature_files["fake"].features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        got = fidkit.score(real, fake, "fid", protocol="stylegan", bootstrap=0)["fid"]
        direct = fidkit.frechet_distance(real.mean(0), np.cov(real, rowvar=False, ddof=0), fake.mean(0),
                                         np.cov(fake, rowvar=False, ddof=0))
        assert got == pytest.approx(direct, rel=1e-12)
        assert got != pytest.approx(fidkit.score(real, fake, "fid", bootstrap=0)["fid"], rel=1e-6)
        no_n = tmp_path / "no_n.npz"
        np.savez(no_n, mu=real.mean(0), sigma=np.cov(real, rowvar=False))  # pytorch-fid's layout: no n
        with pytest.raises(InputError, match="real: a statistics file without its sample count; --protocol "
                                             "stylegan divides the covariance by n"):
            fidkit.score(no_n, fake, "fid", protocol="stylegan", bootstrap=0)


def test_fidkit_protocols_lists_the_registry(capsys) -> None:
    import json

    from fidkit.cli import main

    assert main(["protocols", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(available_protocols())
    for name, row in rows.items():
        p = get_protocol(name)
        assert row["label"] == p.label and row["missing"] == p.missing
        assert row["metrics"] == [m for m in ("fid", "kid", "is", "pr", "dc") if m not in p.missing]
    assert main(["protocols"]) == 0
    assert "torch-fidelity" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
@pytest.mark.parametrize("name", ["torchmetrics", "torch-fidelity", "adm"])
def test_fidkit_is_under_a_protocol(name: str, feature_files: dict, capsys) -> None:
    """``fidkit is --protocol``: the protocol's splits (ADM: parts of 5000), order and std, as the API."""
    import json

    import fidkit
    from fidkit.cli import main

    fake = feature_files["fake"]
    want = _independent(name, feature_files["real"].features, fake.features, fake.logits)["is"]
    api = fidkit.score(fake.features, fake, "is", protocol=name, bootstrap=0)
    assert main(["is", str(feature_files["fake_file"]), "--protocol", name, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["is"] == api["is"] and cli["is"]["mean"] == pytest.approx(want, rel=1e-12)
    assert cli["settings"]["protocol"]["label"] == get_protocol(name).label
    assert main(["is", str(feature_files["fake_file"]), "--protocol", "pytorch-fid"]) == 2
    assert "--protocol pytorch-fid does not reproduce IS" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_stats_protocol_on_features_and_statistics(tmp_path: Path, capsys) -> None:
    """``fidkit stats FILE --protocol NAME`` on features or statistics: the protocol is recorded when the
    file's extractor and resize policy are the protocol's (and no other protocol is recorded), refused in
    one line otherwise (or recorded with --allow-mismatch); a registered published file is read with its
    registry provenance (TTUR's: protocol ttur@1)."""
    from fidkit.cli import main
    from fidkit.features import FeatureResult
    from fidkit.stats import Provenance, Stats

    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 6))
    tf1 = Provenance(extractor="inception-tf2015", resize_policy="legacy-tensorflow")
    feats = FeatureResult(x, None, [str(i) for i in range(40)], tf1).save(tmp_path / "feats.npz")
    bare = FeatureResult(x, None, [str(i) for i in range(40)]).save(tmp_path / "bare.npz")

    def run(*argv: str) -> tuple[int, str]:
        code = main(["stats", *argv])
        return code, capsys.readouterr().err.strip()

    assert run(str(feats), "-o", str(tmp_path / "a.npz"), "--protocol", "ttur")[0] == 0
    st = Stats.load(tmp_path / "a.npz")
    assert st.provenance.protocol == "ttur@1" and st.provenance.extractor == "inception-tf2015"
    np.testing.assert_allclose(st.mean, x.mean(0), rtol=1e-12)
    for src, name, why in ((feats, "clean-fid", "resize policy is legacy-tensorflow, and --protocol clean-fid uses "
                                                "clean"),
                           (bare, "ttur", "extractor is not recorded")):
        code, err = run(str(src), "-o", str(tmp_path / "b.npz"), "--protocol", name)
        lines = [line for line in err.splitlines() if line.startswith("fidkit: ")]
        assert code == 2 and len(lines) == 1 and why in lines[0] and "--allow-mismatch" in lines[0], err
        assert not (tmp_path / "b.npz").exists()
    assert run(str(bare), "-o", str(tmp_path / "c.npz"), "--protocol", "ttur", "--allow-mismatch")[0] == 0
    assert Stats.load(tmp_path / "c.npz").provenance.protocol == "ttur@1"
    ttur = tmp_path / "fid_stats_cifar10_train.npz"  # a registered name: matched by name and shape
    np.savez(ttur, mu=np.zeros(2048, np.float32), sigma=np.eye(2048, dtype=np.float32))
    assert run(str(ttur), "-o", str(tmp_path / "d.npz"), "--protocol", "ttur")[0] == 0
    assert Stats.load(tmp_path / "d.npz").provenance.description.startswith("CIFAR-10")
    code, err = run(str(ttur), "-o", str(tmp_path / "e.npz"), "--protocol", "torch-fidelity")
    assert code == 2 and "computed under protocol ttur@1" in err
