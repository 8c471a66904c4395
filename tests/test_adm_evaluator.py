"""The ``adm`` protocol against a re-implementation of ADM's evaluator (openai/guided-diffusion
``evaluations/evaluator.py``), written here from its stated algorithm, on injected features and logits.

ADM's evaluator is a TensorFlow 1 script, not a package, so it cannot run in the tests; its algorithms are
re-implemented in numpy below (float64 where it computes in float32, noted per function):

* FID: ``FIDStatistics.frechet_distance`` (TTUR's): ``scipy.linalg.sqrtm(sigma1 @ sigma2)``; when that is
  not finite, ``eps = 1e-6`` is added to both diagonals and the square root taken again; a complex result
  is accepted when its diagonal's imaginary part is within 1e-3 of 0, and its real part kept. Statistics:
  ``np.mean`` and ``np.cov(rowvar=False)`` (divisor n - 1), or ``mu``/``sigma`` read from the reference
  batch. sFID: the same function on the spatial statistics (``mu_s``/``sigma_s``).
* IS: ``compute_inception_score(split_size=5000)``: softmax of pool3 @ W (no bias), consecutive parts of
  5,000 rows in input order (the last one shorter when N is not a multiple), per part exp of the mean KL
  to the part's marginal, and the **mean** over parts (no std).
* Precision/recall: ``ManifoldEstimator(nhood_sizes=(3,), clamp_to_percentile=None)`` and
  ``compute_prec_recall(ref, sample)``: radii are the 4th smallest **squared** distance of each row
  (``np.partition`` with kth 0..3, the point itself first), distances ``max(|u|^2 - 2 u.v + |v|^2, 0)``
  computed by ``DistanceBlock`` in float16 (float32 only when the float16 result is not finite); a point
  is inside a ball when its squared distance is ``<=`` the squared radius; precision = the fraction of
  samples inside some reference ball, recall = the fraction of reference points inside some sample ball.
  No percentile clamp (``clamp_to_percentile=None``, the constructor default the evaluator keeps).

fidkit's numbers under the ``adm`` record (its covariance divisor, IS split size, PR k and ``<=`` rule),
through ``fidkit.score(protocol="adm")``, equal these on the same features: FID/sFID to 1e-9 relative
(scipy's sqrtm and fidkit's exact trace agree to ~1e-10 on these well-conditioned covariances), IS to
1e-12, PR exactly (ties at a radius included: the protocol counts them inside, as ADM; fidkit's default
``<`` does not). Where they differ, the tests show it: a shorter last IS part (ADM keeps it; fidkit refuses,
naming the multiple to pass) and ADM's float16 distances, whose effect is measured on pool3-like features
(``test_float16_distances_flip_some_decisions``: the protocol's PR note is about this).

The ADM README's published sample scores (e.g. its ImageNet 256x256 sample batch) are not reproduced here:
they need the real Inception graph (``classify_image_graph_def.pb``) and OpenAI's reference and sample batches
(``VIRTUAL_imagenet256_labeled.npz`` and a sample ``.npz``, gigabytes), none of which can be downloaded in
the tests; the protocol's notes say so.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg

import fidkit
from fidkit.errors import InputError
from fidkit.features import FeatureResult
from fidkit.frechet import frechet_distance
from fidkit.inception_score import inception_score
from fidkit.prdc import precision_recall
from fidkit.protocols import get_protocol
from fidkit.stats import Stats

ADM = get_protocol("adm")


# ------------------------------------------------------------------------ ADM's algorithms, re-implemented


def adm_statistics(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Evaluator.compute_statistics``: the mean and the n - 1 covariance."""
    return np.mean(acts, axis=0), np.cov(acts, rowvar=False)


def adm_frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                eps: float = 1e-6, force_offset: bool = False) -> tuple[float, bool]:
    """``FIDStatistics.frechet_distance``; also returns whether the eps offset was used (``force_offset``
    takes that branch as if the first square root had not been finite)."""
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's "matrix is singular" notes on rank-deficient products
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        offset_used = force_offset or not np.isfinite(covmean).all()
        if offset_used:
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)), offset_used


def adm_inception_score(logits: np.ndarray, split_size: int = 5000) -> float:
    """``Evaluator.compute_inception_score`` on given logits (its softmax input is pool3 @ W)."""
    z = logits - logits.max(axis=1, keepdims=True)
    preds = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores))


def _sq_distances(u: np.ndarray, v: np.ndarray, half: bool = False) -> np.ndarray:
    """``_batch_pairwise_distances``: squared distances by the norm expansion, clamped at 0. ``half``
    models ``DistanceBlock``'s float16 path: inputs cast to float16, the norms and products rounded to
    float16 (TensorFlow's half kernels accumulate in float32 and round their outputs), then combined in
    float16."""
    if not half:
        nu, nv = (u * u).sum(1)[:, None], (v * v).sum(1)[None, :]
        return np.maximum(nu - 2 * (u @ v.T) + nv, 0.0)
    u16, v16 = u.astype(np.float16).astype(np.float64), v.astype(np.float16).astype(np.float64)
    nu = (u16 * u16).sum(1).astype(np.float16)[:, None]
    nv = (v16 * v16).sum(1).astype(np.float16)[None, :]
    uv = (u16 @ v16.T).astype(np.float16)
    d = (nu - np.float16(2) * uv) + nv
    return np.maximum(d, np.float16(0)).astype(np.float64)


def adm_manifold_radii(features: np.ndarray, k: int = 3, row_batch_size: int = 10000,
                       col_batch_size: int = 10000, half: bool = False) -> np.ndarray:
    """``ManifoldEstimator.manifold_radii`` with ``nhood_sizes=(k,)``: per row, the k-th entry of the
    partitioned squared distances to all rows (entry 0 is the row itself), in row x column batches."""
    n = len(features)
    radii = np.zeros(n)
    for b1 in range(0, n, row_batch_size):
        e1 = min(b1 + row_batch_size, n)
        block = np.zeros((e1 - b1, n))
        for b2 in range(0, n, col_batch_size):
            e2 = min(b2 + col_batch_size, n)
            block[:, b2:e2] = _sq_distances(features[b1:e1], features[b2:e2], half)
        radii[b1:e1] = np.partition(block, np.arange(k + 1), axis=1)[:, k]
    return radii


def adm_precision_recall(ref: np.ndarray, sample: np.ndarray, k: int = 3, row_batch_size: int = 10000,
                         col_batch_size: int = 10000, half: bool = False) -> tuple[float, float]:
    """``Evaluator.compute_prec_recall``: radii of both sets, then ``evaluate_pr`` in batches."""
    r1 = adm_manifold_radii(ref, k, row_batch_size, col_batch_size, half)
    r2 = adm_manifold_radii(sample, k, row_batch_size, col_batch_size, half)
    ref_in = np.zeros(len(ref), bool)
    sample_in = np.zeros(len(sample), bool)
    for b1 in range(0, len(ref), row_batch_size):
        for b2 in range(0, len(sample), col_batch_size):
            d = _sq_distances(ref[b1:b1 + row_batch_size], sample[b2:b2 + col_batch_size], half)
            ref_in[b1:b1 + row_batch_size] |= (d <= r2[None, b2:b2 + col_batch_size]).any(axis=1)
            sample_in[b2:b2 + col_batch_size] |= (d <= r1[b1:b1 + row_batch_size, None]).any(axis=0)
    return float(sample_in.mean()), float(ref_in.mean())


# ------------------------------------------------------------------------------------------ data


def pool3_like(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, correlated features like pool3 (averages of ReLUs: mean ~0.4, a few large)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(100).standard_normal((d, d)) / np.sqrt(d)  # the same "network" for all sets
    return np.abs(rng.standard_normal((n, d)) @ mix + shift) * 0.5


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _adm_score(real: np.ndarray, fake: np.ndarray, metrics: str, **kwargs) -> dict:
    """``fidkit.score(real, fake, metrics, protocol="adm")`` on bare feature arrays (no bootstrap)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown provenance of bare arrays; small-sample FID bias
        return fidkit.score(FeatureResult(real, None, [str(i) for i in range(len(real))]),
                            FeatureResult(fake, None, [str(i) for i in range(len(fake))]), metrics,
                            protocol="adm", bootstrap=0, **kwargs)


# ------------------------------------------------------------------------------------------ FID, sFID


def test_record_settings() -> None:
    """What the tests below take from the protocol record."""
    assert ADM.fid_cov_ddof == 1 and ADM.pr is not None and ADM.pr.k == 3 and ADM.pr.radius_inclusive
    assert ADM.pr.extractor is None and ADM.sfid and "pr" not in ADM.missing and "sfid" not in ADM.missing
    assert ADM.inception_score is not None and ADM.inception_score.split_size == 5000
    assert ADM.inception_score.std_ddof is None and ADM.logits_bias is False


@pytest.mark.parametrize("n,d", [(400, 32), (600, 64)])
def test_fid_equals_adm(n: int, d: int) -> None:
    real, fake = pool3_like(n, d, 1), pool3_like(n + 50, d, 2, shift=0.2)
    theirs, offset = adm_frechet(*adm_statistics(fake), *adm_statistics(real))
    assert not offset
    sr, sf = Stats.from_features(real), Stats.from_features(fake)
    ours = frechet_distance(sf.mean, ADM.fid_covariance(sf.cov, sf.n), sr.mean, ADM.fid_covariance(sr.cov, sr.n))
    assert theirs > 0.01 and _rel(ours, theirs) < 1e-9


@pytest.mark.parametrize("n1,n2,d", [(20, 25, 48), (10, 12, 200)])
def test_fid_rank_deficient_covariances(n1: int, n2: int, d: int) -> None:
    """Fewer samples than dimensions: scipy's sqrtm of the singular product is still finite (scipy 1.17), so
    ADM takes no offset and agrees with fidkit's exact value to ~1e-7 relative (measured 2e-8 ... 6e-8);
    when scipy's root is not finite ADM adds eps = 1e-6 to both diagonals. On singular covariances that
    moves FID far more than eps: the product's zero eigenvalues become ~eps x ||S||, whose square roots are
    ~1e-3. Bound: the product moves by <= eps (||S1|| + ||S2||) + eps^2 in norm, each of the d square roots
    of its eigenvalues by <= the square root of that, and FID has -2 x their sum. The forced branch stays
    within the bound and is far from eps-sized (measured 3.3e-3 for d = 48, 5.4e-3 for d = 200)."""
    real, fake = pool3_like(n1, d, 3), pool3_like(n2, d, 4, shift=0.1)
    (mr, cr), (mf, cf) = adm_statistics(real), adm_statistics(fake)
    ours = frechet_distance(mf, cf, mr, cr)
    theirs, offset = adm_frechet(mf, cf, mr, cr)
    assert not offset and _rel(ours, theirs) < 1e-6
    shifted, offset = adm_frechet(mf, cf, mr, cr, force_offset=True)
    eps = 1e-6
    bound = 2 * d * np.sqrt(eps * (np.linalg.norm(cf, 2) + np.linalg.norm(cr, 2)) + eps**2)
    assert offset and 10 * d * eps < abs(shifted - ours) <= bound  # not eps-sized: ~sqrt(eps)


def test_sfid_is_the_same_function_on_spatial_statistics() -> None:
    """sFID: ADM's frechet_distance of mu_s/sigma_s against fidkit.sfid on the same statistics (as read
    from a reference batch: mean and n - 1 covariance)."""
    from fidkit.sfid import sfid

    real, fake = pool3_like(500, 40, 5), pool3_like(450, 40, 6, shift=0.3)
    theirs, _ = adm_frechet(*adm_statistics(fake), *adm_statistics(real))
    assert _rel(sfid(Stats.from_features(real), Stats.from_features(fake)), theirs) < 1e-9
    # through score under the protocol: the spatial statistics given for the two feature inputs
    pool_r, pool_f = pool3_like(60, 8, 16), pool3_like(60, 8, 17)
    out = _adm_score(pool_r, pool_f, "fid,sfid",
                     spatial={"real": Stats.from_features(real), "fake": Stats.from_features(fake)})
    assert _rel(out["sfid"], theirs) < 1e-9
    assert _rel(out["fid"], adm_frechet(*adm_statistics(pool_f), *adm_statistics(pool_r))[0]) < 1e-9


# ------------------------------------------------------------------------------------------------ IS


def _logits(n: int, k: int = 50, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 2 + np.where(rng.random((n, k)) < 0.05, 4.0, 0.0)


def test_inception_score_equals_adm() -> None:
    logits = _logits(10_000)
    cfg = ADM.inception_score
    mean, _ = inception_score(logits, ADM.is_splits(len(logits)), shuffle_seed=None, parts="floor")
    theirs = adm_inception_score(logits, cfg.split_size)
    assert ADM.is_splits(len(logits)) == 2 and theirs > 1.5
    assert _rel(mean, theirs) < 1e-12


def test_shorter_last_part_is_refused_naming_the_multiple() -> None:
    """12,000 rows: ADM averages parts of 5,000, 5,000 and 2,000; fidkit's equal parts cannot, and says so."""
    logits = _logits(12_000)
    parts = [adm_inception_score(logits[i:i + 5000]) for i in (0, 5000, 10_000)]
    assert adm_inception_score(logits) == pytest.approx(np.mean(parts), rel=1e-14)
    with pytest.raises(InputError, match="multiple of 5000"):
        ADM.is_splits(len(logits))


# --------------------------------------------------------------------------------------- precision/recall


@pytest.mark.parametrize("batches", [(10000, 10000), (64, 100)])
def test_precision_recall_equals_adm(batches: tuple[int, int]) -> None:
    ref, sample = pool3_like(300, 48, 8), pool3_like(280, 48, 9, shift=0.15)
    theirs = adm_precision_recall(ref, sample, ADM.pr.k, *batches)
    ours = precision_recall(ref, sample, k=ADM.pr.k)
    assert 0.05 < theirs[0] < 0.95 and 0.05 < theirs[1] < 0.95, theirs  # not saturated
    assert (ours.precision, ours.recall) == theirs
    out = _adm_score(ref, sample, "pr")["pr"]
    assert (out["precision"], out["recall"]) == theirs


def test_ties_at_the_radius_follow_the_protocol() -> None:
    """A sample at exactly a reference radius: ADM's ``<=`` counts it, and so does fidkit under the ``adm``
    protocol (``radius_inclusive``); fidkit's default ``<`` (the prdc package's) does not."""
    ref = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0], [13.0]])
    sample = np.array([[6.0], [20.0], [21.0], [22.0], [23.0]])  # |6 - 3| = 3 = radius of 3.0 (k = 3)
    theirs = adm_precision_recall(ref, sample)
    assert theirs[0] == 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert precision_recall(ref, sample, k=3).precision == 0.0
    out = _adm_score(ref, sample, "pr")
    assert (out["pr"]["precision"], out["pr"]["recall"]) == theirs
    assert out["settings"]["pr"] == {"k": 3, "radius_inclusive": True, "extractor": "unknown"}


def test_float16_distances_flip_some_decisions() -> None:
    """ADM's float16 distances (modelled in `_sq_distances`) against exact ones, on pool3-like features of
    2048 dimensions: the norms (~ hundreds) cancel in |u|^2 - 2 u.v + |v|^2, so float16's 3 significant
    digits leave an error of a few units on squared distances of that size, and some samples near a radius
    change side. Measured here rather than assumed: the fraction flipped is printed (pytest -rP) and
    bounded, and fidkit's float64 values equal the exact re-implementation."""
    ref, sample = pool3_like(400, 2048, 10), pool3_like(400, 2048, 11, shift=0.05)
    exact = adm_precision_recall(ref, sample)
    half = adm_precision_recall(ref, sample, half=True)
    ours = precision_recall(ref, sample, k=3)
    assert (ours.precision, ours.recall) == exact
    print(f"ADM float16 vs exact: precision {half[0]:.4f} vs {exact[0]:.4f}, recall {half[1]:.4f} vs "
          f"{exact[1]:.4f}")
    assert abs(half[0] - exact[0]) < 0.1 and abs(half[1] - exact[1]) < 0.1


# -------------------------------------------------------------------------------- through fidkit.score


def test_score_under_the_adm_protocol() -> None:
    """``fidkit.score(..., protocol="adm")`` on injected features and logits, its default metrics: FID, IS
    and PR as ADM's (sFID needs spatial statistics, which bare features lack: left out)."""
    real, fake = pool3_like(300, 24, 12), pool3_like(10_000, 24, 13, shift=0.2)
    logits = _logits(10_000, seed=14)
    r = FeatureResult(real, _logits(300, seed=15), [str(i) for i in range(300)])
    f = FeatureResult(fake, logits, [str(i) for i in range(10_000)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown provenance of bare arrays; small-sample FID bias
        out = fidkit.score(r, f, protocol="adm", bootstrap=0)
    assert [m for m in ("fid", "sfid", "kid", "is", "pr", "dc") if m in out] == ["fid", "is", "pr"]
    assert _rel(out["fid"], adm_frechet(*adm_statistics(fake), *adm_statistics(real))[0]) < 1e-9
    assert _rel(out["is"]["mean"], adm_inception_score(logits)) < 1e-12
    assert (out["pr"]["precision"], out["pr"]["recall"]) == adm_precision_recall(real, fake)


# ------------------------------------------------------------------ reference batches as statistics input


def write_adm_batch(path, pool: np.ndarray, spatial: np.ndarray, n_images: int = 4) -> None:
    """A file in the layout of ADM's reference batches (VIRTUAL_*.npz): ``arr_0`` uint8 images, ``mu``/
    ``sigma`` of pool3, ``mu_s``/``sigma_s`` of the spatial features (np.mean, np.cov as the evaluator)."""
    (mu, sigma), (mu_s, sigma_s) = adm_statistics(pool), adm_statistics(spatial)
    images = np.random.default_rng(0).integers(0, 256, (n_images, 8, 8, 3), dtype=np.uint8)
    np.savez(path, arr_0=images, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)


@pytest.fixture(scope="module")
def adm_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small reference batch (16-d pool, 12-d spatial), and fake features (5000 rows: one IS part) with
    logits and their spatial statistics, as files."""
    root = tmp_path_factory.mktemp("adm_batch")
    ref_pool, ref_spatial = pool3_like(400, 16, 20), pool3_like(400, 12, 21)
    fake_pool, fake_spatial = pool3_like(5000, 16, 22, shift=0.2), pool3_like(700, 12, 23, shift=0.1)
    logits = _logits(5000, k=10, seed=24)
    write_adm_batch(root / "VIRTUAL_test.npz", ref_pool, ref_spatial)
    fake = FeatureResult(fake_pool, logits, [str(i) for i in range(5000)]).save(root / "fake.npz")
    spatial = Stats.from_features(fake_spatial).save(root / "fake_spatial.npz")
    want = {"fid": adm_frechet(*adm_statistics(fake_pool), *adm_statistics(ref_pool))[0],
            "sfid": adm_frechet(*adm_statistics(fake_spatial), *adm_statistics(ref_spatial))[0],
            "is": adm_inception_score(logits)}
    return {"batch": root / "VIRTUAL_test.npz", "fake": fake, "fake_spatial": spatial, "want": want}


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_reference_batch_gives_fid_and_sfid(adm_inputs: dict, capsys) -> None:
    """``fidkit score VIRTUAL_x.npz fake --protocol adm``: the batch's mu/sigma for FID and its mu_s/sigma_s
    for sFID without --spatial-real; the default metrics are those these inputs give (FID, sFID, IS; PR
    needs the reference features, noted), equal to ADM's on the same statistics, on the API and the CLI."""
    import json

    from fidkit.cli import main

    batch, fake, want = str(adm_inputs["batch"]), str(adm_inputs["fake"]), adm_inputs["want"]
    out = fidkit.score(batch, fake, protocol="adm", bootstrap=0,
                       spatial={"fake": Stats.load(adm_inputs["fake_spatial"])})
    assert [m for m in ("fid", "sfid", "kid", "is", "pr", "dc") if m in out] == ["fid", "sfid", "is"]
    assert any(n.startswith("precision/recall: not computed") for n in out["notes"])
    assert main(["score", batch, fake, "--protocol", "adm", "--spatial-fake", str(adm_inputs["fake_spatial"]),
                 "--bootstrap", "0", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for r in (out, cli):
        assert _rel(r["fid"], want["fid"]) < 1e-9 and _rel(r["sfid"], want["sfid"]) < 1e-9
        assert _rel(r["is"]["mean"], want["is"]) < 1e-12
    # --spatial-real accepts the batch itself (here with the batch's pool statistics saved apart as real)
    pool_only = adm_inputs["batch"].with_name("pool.npz")
    np.savez(pool_only, mu=np.load(batch)["mu"], sigma=np.load(batch)["sigma"])
    assert main(["score", str(pool_only), fake, "--protocol", "adm", "--metrics", "fid,sfid", "--spatial-real",
                 batch, "--spatial-fake", str(adm_inputs["fake_spatial"]), "--bootstrap", "0", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert _rel(cli["sfid"], want["sfid"]) < 1e-9 and _rel(cli["fid"], want["fid"]) < 1e-9


def test_published_statistics_carry_their_registry_provenance(tmp_path) -> None:
    """A statistics input named as a registered published file (TTUR's CIFAR-10, no published digest:
    matched by name and shape) is read with the registry's provenance on score's route: against features
    of another extractor it is a provenance mismatch naming it, not the warning an unknown file gives."""
    from fidkit.errors import ProvenanceMismatchError
    from fidkit.scoring import load_published
    from fidkit.stats import Provenance

    path = tmp_path / "fid_stats_cifar10_train.npz"
    np.savez(path, mu=np.zeros(2048, np.float32), sigma=np.eye(2048, dtype=np.float32))
    st = load_published(path)
    assert st.provenance.extractor == "inception-tf2015" and st.provenance.protocol == "ttur@1"
    assert "CIFAR-10" in st.provenance.description
    fake = FeatureResult(np.random.default_rng(1).normal(size=(30, 2048)), None, [str(i) for i in range(30)],
                         Provenance(extractor="mnist", resize_policy="mnist"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ProvenanceMismatchError, match="inception-tf2015"):
            fidkit.score(str(path), fake, "fid", bootstrap=0)
