"""The image -> features pipeline: order, streaming stats, decode overlapping the network, files, score()."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fidkit.archs.mnist import mnist_v1
from fidkit.backends.numpy.network import network
from fidkit.errors import FidkitWarning, InputError, ProvenanceMismatchError
from fidkit.extraction import Extractor, assemble, builtin_convention
from fidkit.features import FeatureResult, load_features
from fidkit.inputs import classify
from fidkit.pipeline import PREFETCH, _prefetch, compute_features, compute_stats
from fidkit.registry import get_spec
from fidkit.resize import get_policy
from fidkit.scoring import score
from fidkit.stats import Stats


class ArraySource:
    """A minimal source over an in-memory NHWC array, with hooks to observe the decode thread."""

    description = "test array"
    layout = "NHWC"
    value_range = (0.0, 255.0)

    def __init__(self, images: np.ndarray, on_batch=None, fail_at: int | None = None) -> None:
        self.images = images
        self.names = [f"img{i:03d}" for i in range(len(images))]
        self.skipped: list[str] = []
        self.on_batch = on_batch
        self.fail_at = fail_at
        self.produced = 0

    def __len__(self) -> int:
        return len(self.images)

    def iter_batches(self, batch_size, workers=None):
        for k, lo in enumerate(range(0, len(self.images), batch_size)):
            if k == self.fail_at:
                raise InputError(f"{self.names[lo]}: cannot decode (truncated PNG)")
            if self.on_batch is not None:
                self.on_batch(k)
            self.produced += 1
            yield self.images[lo:lo + batch_size].astype(np.float32), self.names[lo:lo + batch_size]


@pytest.fixture(scope="module")
def mnist_numpy(tmp_path_factory) -> Extractor:
    """The mnist graph on the numpy runtime with seeded synthetic weights."""
    graph = mnist_v1()
    rng = np.random.default_rng(7)
    params = {k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.standard_normal(s) * 0.1)
              .astype(np.float32) for k, s in graph.param_shapes().items()}
    path = tmp_path_factory.mktemp("w") / "w.npz"
    np.savez(path, **params)
    spec = get_spec("mnist")
    policy = get_policy("mnist")
    forward = network(spec=spec, weights=SimpleNamespace(path=path), device="cpu")
    return assemble(spec, "numpy", "cpu", policy, builtin_convention(spec, policy, forward.layout), forward,
                    weights_sha256="f" * 64, weights_source="w.npz")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 28, 28, 3)).astype(np.float32)


def test_features_in_input_order_equal_one_big_batch(mnist_numpy) -> None:
    x = _images(23)
    res = compute_features(ArraySource(x), mnist_numpy, batch_size=5, progress=False)
    whole = mnist_numpy(x)
    # equal up to BLAS blocking, which depends on the batch size
    np.testing.assert_allclose(res.features, whole["features"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res.logits, whole["logits"], rtol=1e-12, atol=1e-13)
    assert res.names == [f"img{i:03d}" for i in range(23)]
    assert res.provenance.extractor == "mnist" and res.provenance.runtime == "numpy"
    assert res.provenance.weights_sha256 == "f" * 64 and res.provenance.input_size == "28x28"


def test_streaming_stats_equal_stats_of_all_features(mnist_numpy) -> None:
    x = _images(30, seed=1)
    s = compute_stats(ArraySource(x), mnist_numpy, batch_size=7, progress=False)
    ref = mnist_numpy(x)["features"].astype(np.float64)
    assert s.n == 30
    np.testing.assert_allclose(s.mean, ref.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(ref, rowvar=False), rtol=1e-10, atol=1e-12)
    assert s.provenance.resize_policy == "mnist"


def test_decode_runs_ahead_of_the_network(mnist_numpy) -> None:
    second_decoded = threading.Event()

    def on_batch(k: int) -> None:
        if k == 1:
            second_decoded.set()

    seen = []

    def forward(images):
        if not seen:  # while batch 0 is in the network, batch 1 must be decoding already
            seen.append(second_decoded.wait(timeout=10))
        return mnist_numpy.network(images)

    ex = Extractor(mnist_numpy.spec, "numpy", "cpu", mnist_numpy.policy, mnist_numpy.convention,
                   mnist_numpy.preprocess, forward, weights_sha256="f" * 64)
    compute_features(ArraySource(_images(12), on_batch=on_batch), ex, batch_size=4, progress=False)
    assert seen == [True]


def test_prefetch_is_bounded_and_stops_with_its_consumer() -> None:
    produced = []

    def gen():
        for i in range(1000):
            produced.append(i)
            yield i

    it = _prefetch(gen())
    first = next(it)
    time.sleep(0.2)
    assert first == 0 and len(produced) <= PREFETCH + 2  # queue + one in hand + one being put
    it.close()
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n  # the decode thread stopped when the consumer went away
    assert not any(t.name == "fidkit-decode" and t.is_alive() for t in threading.enumerate())


def test_decode_errors_reach_the_caller(mnist_numpy) -> None:
    with pytest.raises(InputError, match="img004: cannot decode"):
        compute_features(ArraySource(_images(12), fail_at=1), mnist_numpy, batch_size=4, progress=False)
    with pytest.raises(InputError, match="batch size"):
        compute_stats(ArraySource(_images(4)), mnist_numpy, batch_size=0, progress=False)


def test_features_file_roundtrip_and_classify(tmp_path, mnist_numpy) -> None:
    res = compute_features(ArraySource(_images(6)), mnist_numpy, batch_size=4, progress=False)
    path = res.save(tmp_path / "f.npz")
    back = load_features(path)
    np.testing.assert_array_equal(back.features, res.features)
    np.testing.assert_array_equal(back.logits, res.logits)
    assert back.names == res.names and back.provenance == res.provenance
    np.save(tmp_path / "f.npy", res.features)
    np.testing.assert_array_equal(load_features(tmp_path / "f.npy").features, res.features)
    np.savez(tmp_path / "cf.npz", feats=res.features)  # clean-fid's KID statistics
    res.stats().save(tmp_path / "s.npz")
    np.save(tmp_path / "img.npy", _images(2))
    (tmp_path / "dir").mkdir()
    assert [classify(tmp_path / n) for n in ("f.npz", "f.npy", "cf.npz", "s.npz", "img.npy", "dir")] == \
        ["features", "features", "features", "stats", "images", "images"]
    assert classify(res.features) == "features" and classify(_images(2)) == "images"
    with pytest.raises(InputError, match="not a features file"):
        load_features(tmp_path / "s.npz")


def test_score_with_features_matches_the_metric_functions(mnist_numpy) -> None:
    frechet = pytest.importorskip("fidkit.frechet")
    kid_mod = pytest.importorskip("fidkit.kid")
    is_mod = pytest.importorskip("fidkit.inception_score")
    prdc_mod = pytest.importorskip("fidkit.prdc")
    real = compute_features(ArraySource(_images(20, 1)), mnist_numpy, batch_size=10, progress=False)
    fake = compute_features(ArraySource(_images(20, 2) * 0.5), mnist_numpy, batch_size=10, progress=False)
    with pytest.warns(FidkitWarning, match=r"FID from real \(20 samples\) and fake \(20 samples\).* 128 "):
        out = score(real, fake, metrics=("fid", "kid", "is", "pr", "dc"), kid_subset_size=10, is_splits=2,
                    bootstrap=5, seed=3)
    sr, sf = real.stats(), fake.stats()
    assert out["fid"] == pytest.approx(frechet.frechet_distance(sr.mean, sr.cov, sf.mean, sf.cov), rel=1e-12)
    kid_mean, _ = kid_mod.kid(real.features, fake.features, subset_size=10, seed=3)
    assert out["kid"]["mean"] == pytest.approx(kid_mean, rel=1e-12)
    is_mean, _ = is_mod.inception_score(fake.logits, splits=2)
    assert out["is"]["mean"] == pytest.approx(is_mean, rel=1e-12)
    assert (out["pr"]["precision"], out["pr"]["recall"]) == tuple(prdc_mod.precision_recall(
        real.features, fake.features, k=3))
    assert (out["dc"]["density"], out["dc"]["coverage"]) == tuple(prdc_mod.density_coverage(
        real.features, fake.features, k=5))
    assert out["n_real"] == out["n_fake"] == 20
    assert out["provenance"]["extractor"] == "mnist"
    bootstrap = pytest.importorskip("fidkit.bootstrap")
    with pytest.warns(FidkitWarning):
        ci = bootstrap.bootstrap_fid(real.features, fake.features, n_boot=5, seed=3)
    assert out["intervals"]["fid"]["low"] == ci.low and out["intervals"]["fid"]["high"] == ci.high
    assert out["intervals"]["fid"]["value"] == pytest.approx(out["fid"], rel=1e-9)


def test_score_checks_provenance_and_what_each_metric_needs(mnist_numpy) -> None:
    pytest.importorskip("fidkit.frechet")
    real = compute_features(ArraySource(_images(10, 1)), mnist_numpy, batch_size=10, progress=False)
    stats_only = real.stats()
    with pytest.raises(InputError, match="kid needs features"):
        score(stats_only, real, metrics=("kid",))
    other = Stats(stats_only.n, stats_only.mean, stats_only.cov,
                  type(stats_only.provenance)(**{**vars(stats_only.provenance), "resize_policy": "clean"}))
    with pytest.raises(ProvenanceMismatchError, match="resize policies"):
        score(other, real, metrics=("fid",))
    with pytest.warns(FidkitWarning, match="provenance unknown"), pytest.warns(FidkitWarning, match="samples"):
        score(real.features, FeatureResult(real.features, None, []), metrics=("fid",))


def test_score_opens_both_image_inputs_before_decoding_either(tmp_path, mnist_numpy) -> None:
    """An empty fake folder, or fake images whose range contradicts the declared one, fail before the real
    images are decoded (both sources read through one spy: nothing may have been produced)."""
    real = ArraySource(_images(4))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images found"):
        score(real, tmp_path / "empty", metrics=("fid",), extractor=mnist_numpy)
    wrong = np.full((4, 28, 28, 3), -0.5, dtype=np.float32)
    with pytest.raises(InputError, match=r"array: min -0.50.*\[0, 1\] was declared"):
        score(real, wrong, metrics=("fid",), extractor=mnist_numpy, value_range=(0, 1))
    assert real.produced == 0


def test_folder_source_names_and_features_in_sorted_order(tmp_path, mnist_numpy) -> None:
    from PIL import Image

    x = _images(7, seed=4).round().astype(np.uint8)
    for i in (3, 0, 6, 1, 5, 2, 4):  # written out of order: the folder is read sorted
        Image.fromarray(x[i]).save(tmp_path / f"{i:02d}.png")
    res = compute_features(tmp_path, mnist_numpy, batch_size=3, workers=2, progress=False)
    assert res.names[0].endswith("00.png") and [n[-6:] for n in res.names] == [f"{i:02d}.png" for i in range(7)]
    np.testing.assert_allclose(res.features, mnist_numpy(x.astype(np.float32))["features"], rtol=1e-12,
                               atol=1e-13)


class _Interrupted(Exception):
    pass


def test_checkpointed_stats_resume_bit_identical(tmp_path, mnist_numpy, monkeypatch, capsys) -> None:
    """Interrupted after 5 batches of 4 with a checkpoint every 6 images and the accumulator flushing
    every 8 rows (so the saved state holds merged moments and pooled rows), resumed: the same bits as an
    uninterrupted run without checkpoints; another job (batch size) and a generator are refused."""
    from fidkit.stats import StatsAccumulator

    monkeypatch.setattr(StatsAccumulator, "FLUSH_ROWS", 8)
    x = _images(37, seed=4)
    plain = compute_stats(x, mnist_numpy, batch_size=4, progress=False)
    calls = {"n": 0}
    inner = mnist_numpy.outputs

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise _Interrupted
        return inner(*args, **kwargs)

    monkeypatch.setattr(mnist_numpy, "outputs", failing)
    with pytest.raises(_Interrupted):
        compute_stats(x, mnist_numpy, batch_size=4, progress=False, checkpoint=tmp_path, checkpoint_every=6)
    monkeypatch.setattr(mnist_numpy, "outputs", inner)
    with np.load(tmp_path / "array.stats.rank0-of-1.npz") as z:
        saved = {k: z[k] for k in z.files}
    assert int(saved["acc_n"]) == 20 and int(saved["acc_n_merged"]) == 16 and len(saved["acc_pending"]) == 4
    capsys.readouterr()
    resumed = compute_stats(x, mnist_numpy, batch_size=4, progress=False, checkpoint=tmp_path,
                            checkpoint_every=6)
    # a resumed run says so, in one line: the file and how far it got
    assert capsys.readouterr().err == (f"fidkit: resumed from {tmp_path / 'array.stats.rank0-of-1.npz'}: "
                                       f"{int(saved['acc_n'])} of 37 images done\n")
    assert resumed.n == plain.n == 37
    np.testing.assert_array_equal(resumed.mean, plain.mean)
    np.testing.assert_array_equal(resumed.cov, plain.cov)
    with pytest.raises(InputError, match=r"belongs to another job \(batch_size 4 vs 5\)"):
        compute_stats(x, mnist_numpy, batch_size=5, progress=False, checkpoint=tmp_path)
    with pytest.raises(InputError, match="folders, zips and image arrays only"):
        compute_stats(lambda n: np.zeros((n, 28, 28), np.uint8), mnist_numpy, num=4, progress=False,
                      checkpoint=tmp_path / "g")
