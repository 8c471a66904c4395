"""sFID (`fidkit.sfid`): the 2015 Inception's spatial features on every runtime, and the metric.

Synthetic Inception weights (seeded, BatchNorm calibrated), few 299x299 images. The spatial output is
checked against an independent route: the numpy interpreter's own intermediate node
``Mixed_6d.branch1x1.relu`` (N, 192, 17, 17), sliced and flattened here in NumPy the way the ADM
evaluator reshapes ``mixed_6/conv:0[..., :7]`` (NHWC). sFID is checked against the Fréchet distance
computed directly from those features by the Gram route: Tr sqrt(S1 S2) is the nuclear norm of
A B^T (A, B the centred features / sqrt(n - 1)), which never forms a 2023 x 2023 matrix.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, runtimes_under_test, tolerance

import fidkit
from fidkit.archs.inception import SPATIAL_CHANNELS, SPATIAL_DIM, SPATIAL_NODE, inception_tf2015
from fidkit.archs.spec import Graph
from fidkit.archs.synthetic import synthetic_images, write_synthetic_weights
from fidkit.backends.numpy.network import run_graph
from fidkit.cli import main
from fidkit.errors import FidkitWarning, InputError
from fidkit.extraction import Extractor, extractor
from fidkit.sfid import SPATIAL_DESCRIPTION, spatial_stats
from fidkit.stats import Stats
from fidkit.weights import load_canonical
from fidkit.weights.files import TF2015_SCOPES

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")]

FRAMEWORKS = ("torch", "tf", "jax")
SET_A = synthetic_images(2, (299, 299), seed=11)
SET_B = (synthetic_images(2, (299, 299), seed=12) // 4 + 96).astype(np.uint8)
IMAGES = np.concatenate([SET_A, SET_B])


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_weights(inception_tf2015(logits_bias=True), tmp_path_factory.mktemp("w") / "tf2015.npz")


@pytest.fixture(scope="module")
def build(weights: Path):
    cache: dict[str, Extractor] = {}

    def get(runtime: str) -> Extractor:
        if runtime not in cache:
            require_runtime(runtime)
            with pytest.warns(FidkitWarning, match="unofficial"):
                cache[runtime] = extractor("inception-tf2015", runtime, weights=str(weights))
        return cache[runtime]

    return get


@pytest.fixture(scope="module")
def spatial(build):
    cache: dict[str, np.ndarray] = {}

    def get(runtime: str) -> np.ndarray:
        if runtime not in cache:
            images = IMAGES[:2] if runtime == "numpy" else IMAGES  # float64 runs at ~1 image/s
            cache[runtime] = build(runtime)(images)["spatial"]
        return cache[runtime]

    return get


def max_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / ref.std())


def reference_spatial(ex: Extractor, weights: Path, images: np.ndarray) -> np.ndarray:
    """The numpy interpreter's Mixed_6d.branch1x1.relu (NCHW), first 7 channels, flattened in NHWC order."""
    graph = inception_tf2015(logits_bias=True)
    node = Graph(graph.name, graph.nodes, {"mixed_6_conv": SPATIAL_NODE})
    params = {k: v.astype(np.float64) for k, v in load_canonical(weights).items()}
    x = ex.preprocess(images, name="images")  # the numpy runtime's network input (normalised NHWC)
    act = run_graph(node, params, np.asarray(x))["mixed_6_conv"]
    assert act.shape == (len(images), 192, 17, 17)
    return act[:, :7].transpose(0, 2, 3, 1).reshape(len(images), -1)


def frechet_gram(fa: np.ndarray, fb: np.ndarray) -> float:
    """||mu_a - mu_b||² + Tr Sa + Tr Sb - 2 ||A B^T||_* from the feature rows (float64)."""
    fa, fb = fa.astype(np.float64), fb.astype(np.float64)
    a = (fa - fa.mean(0)) / np.sqrt(len(fa) - 1)
    b = (fb - fb.mean(0)) / np.sqrt(len(fb) - 1)
    diff = fa.mean(0) - fb.mean(0)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * nuclear)


# ------------------------------------------------------------------------------- the tensor


def test_spatial_is_mixed_6_conv_first_7_channels() -> None:
    """mixed_6 is the third 17x17 block (Mixed_6d) in the weights converter's scope table, and the
    graph's spatial output reads its 1x1 branch's ReLU, 7 channels: 17 x 17 x 7 = 2023."""
    assert TF2015_SCOPES["mixed_6/conv"] + ".relu" == SPATIAL_NODE
    graph = inception_tf2015()
    nodes = {n.name: n for n in graph.nodes}
    out = nodes[graph.outputs["spatial"]]
    assert out.op == "flatten_hwc" and out.inputs == (SPATIAL_NODE,) and out.attrs["channels"] == SPATIAL_CHANNELS == 7
    assert SPATIAL_DIM == 2023
    assert fidkit.registry.get_spec("inception-tf2015").extra["outputs"] == {"spatial": 2023}


def test_numpy_spatial_equals_the_intermediate_node(build, spatial, weights) -> None:
    ref = reference_spatial(build("numpy"), weights, IMAGES[:2])
    got = spatial("numpy")
    assert got.shape == (2, 2023)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.std())
    assert ref.std() > 0.1 and (ref > 0).mean() > 0.5  # a live ReLU output, not zeros


@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_runtime_matches_float64_reference(spatial, runtime: str) -> None:
    got = spatial(runtime)
    assert got.dtype == np.float32 and got.shape == (4, 2023)
    err = max_err(got[:2], spatial("numpy"))
    assert err <= tolerance("features", "spatial"), f"{runtime} vs float64: {err:.2e}"


@pytest.mark.parametrize("pair", list(itertools.combinations(FRAMEWORKS, 2)), ids="-".join)
def test_runtimes_agree(spatial, pair: tuple[str, str]) -> None:
    a, b = (spatial(rt) for rt in pair)
    assert max_err(a, b.astype(np.float64)) <= tolerance("features", "spatial")
    sa, sb = (frechet_gram(x[:2], x[2:]) for x in (a, b))
    assert sb > 100  # the two sets differ clearly, so the relative check tests the runtimes
    assert abs(sa - sb) / sb <= tolerance("scores", "sfid"), (sa, sb)


# -------------------------------------------------------------------------------- the metric


def _fast() -> str:
    return next((r for r in FRAMEWORKS if r in runtimes_under_test()), "numpy")


def test_score_sfid_equals_direct_computation(build, spatial) -> None:
    ex = build(_fast())
    res = fidkit.score(IMAGES[:2], IMAGES[2:], "fid,sfid", ex, bootstrap=0)
    feats = ex(IMAGES)  # the same batches as score's pipeline (one per input) may round differently
    tol = tolerance("scores", "sfid")
    assert res["sfid"] == pytest.approx(frechet_gram(feats["spatial"][:2], feats["spatial"][2:]), rel=tol)
    assert res["fid"] == pytest.approx(frechet_gram(feats["features"][:2], feats["features"][2:]), rel=tol)
    assert res["sfid"] != pytest.approx(res["fid"], rel=0.01)


def test_spatial_stats_saved_with_provenance_and_usable(build, spatial, tmp_path) -> None:
    ex = build(_fast())
    st = spatial_stats(IMAGES[:2], ex)
    assert st.dim == 2023 and st.n == 2
    back = Stats.load(st.save(tmp_path / "real_spatial.npz"))
    assert back.provenance.description == SPATIAL_DESCRIPTION and back.provenance.extractor == "inception-tf2015"
    np.testing.assert_array_equal(back.mean, st.mean)
    np.testing.assert_allclose(back.mean, spatial(_fast())[:2].mean(0), rtol=0,
                               atol=tolerance("features", "spatial") * back.mean.std())
    pool = Stats.from_features(np.random.default_rng(0).standard_normal((3, 2048)))
    stored = fidkit.score(pool, IMAGES[2:], "sfid", ex, bootstrap=0, spatial={"real": back})
    f = spatial(_fast())
    assert stored["sfid"] == pytest.approx(frechet_gram(f[:2], f[2:]), rel=tolerance("scores", "sfid"))
    with pytest.raises(InputError, match="real: sFID needs spatial statistics"):
        fidkit.score(pool, IMAGES[2:], "sfid", ex, bootstrap=0)


def test_sfid_needs_the_2015_inception() -> None:
    with pytest.raises(InputError, match="--extractor inception-tf2015"):
        fidkit.score(IMAGES[:2, :28, :28], IMAGES[2:, :28, :28], "sfid", "mnist", runtime="numpy", bootstrap=0)


def test_generator_with_sfid(build) -> None:
    ex = build(_fast())

    def gen(seeds: np.ndarray) -> np.ndarray:  # image i from seed i alone
        return np.stack([synthetic_images(1, (299, 299), seed=int(s) + 100)[0] for s in seeds])

    res = fidkit.score(IMAGES[:2], generator=gen, num=2, seeds=(0,), batch_size=1, metrics="sfid", extractor=ex,
                       bootstrap=0)
    ref = frechet_gram(ex(IMAGES[:2])["spatial"], ex(gen(np.arange(2)))["spatial"])
    assert res["per_seed"][0]["sfid"] == pytest.approx(ref, rel=tolerance("scores", "sfid"))
    assert res["summary"]["sfid"]["min"] == res["per_seed"][0]["sfid"]


def test_cli_spatial_stats_and_metrics_fid_sfid(build, weights, tmp_path, capsys) -> None:
    """`fidkit stats --spatial` saves sFID's statistics; `fidkit score --metrics fid,sfid` reads them
    with --spatial-real beside real's pool statistics."""
    rt = _fast()
    real, fake = tmp_path / "real.npy", tmp_path / "fake.npy"
    np.save(real, IMAGES[:2])
    np.save(fake, IMAGES[2:])
    ex = ["--extractor", "inception-tf2015", "--weights", str(weights), "--runtime", rt, "--no-progress"]
    assert main(["stats", str(real), "-o", str(tmp_path / "pool.npz"), *ex]) == 0
    assert main(["stats", str(real), "-o", str(tmp_path / "spatial.npz"), "--spatial", *ex]) == 0
    capsys.readouterr()
    saved = Stats.load(tmp_path / "spatial.npz")
    assert saved.dim == 2023 and saved.provenance.description == SPATIAL_DESCRIPTION
    assert main(["score", str(tmp_path / "pool.npz"), str(fake), "--metrics", "fid,sfid", "--spatial-real",
                 str(tmp_path / "spatial.npz"), "--bootstrap", "0", *ex]) == 0
    lines = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    f = build(rt)(IMAGES)
    assert float(lines["sFID"]) == pytest.approx(frechet_gram(f["spatial"][:2], f["spatial"][2:]), rel=1e-5)
    assert float(lines["FID"]) == pytest.approx(frechet_gram(f["features"][:2], f["features"][2:]), rel=1e-5)
    assert main(["stats", str(tmp_path / "pool.npz"), "-o", str(tmp_path / "x.npz"), "--spatial", *ex]) == 2
    assert "--spatial needs images" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("runtime", FRAMEWORKS)
def test_gpu_matches_cpu(weights, spatial, runtime: str) -> None:
    from conftest import runtime_sees_gpu

    require_runtime(runtime)
    if not runtime_sees_gpu(runtime):  # e.g. tensorflow-cpu, or jax without jax[cuda]
        pytest.skip(f"CUDA is visible but this {runtime} build has no GPU support")
    with pytest.warns(FidkitWarning, match="unofficial"):
        gpu = extractor("inception-tf2015", runtime, weights=str(weights), device="cuda")
    assert max_err(gpu(IMAGES)["spatial"], spatial(runtime).astype(np.float64)) <= tolerance("features", "gpu")
