"""Statistics: streaming moments against numpy on the whole array, exact merges, files, provenance."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from fidkit.errors import FidkitWarning, InputError, ProvenanceMismatchError
from fidkit.stats import Provenance, Stats, StatsAccumulator, check_compatible, fid, load

PROV = Provenance(extractor="mnist", runtime="numpy", weights_sha256="ab" * 32, weights_source="test",
                  resize_policy="mnist", input_size="28x28", fidkit_version="0.1.0")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _features(n: int, d: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + offset


@pytest.mark.parametrize("flush_rows", [1, 7, 1024])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_streaming_matches_numpy_on_whole_array(offset: float, flush_rows: int) -> None:
    x = _features(257, 6, offset=offset)
    acc = StatsAccumulator(PROV)
    acc.FLUSH_ROWS = flush_rows  # 1: a Chan merge per batch; 1024: one pooled update
    for lo, hi in [(0, 1), (1, 50), (50, 50), (50, 200), (200, 257)]:
        acc.update(x[lo:hi].astype(np.float64))
    s = acc.stats()
    assert s.n == 257
    assert s.mean.dtype == np.float64 and s.cov.dtype == np.float64
    assert _rel(s.mean, x.mean(axis=0)) < 1e-13
    assert _rel(s.cov, np.cov(x, rowvar=False)) < 1e-12
    np.testing.assert_array_equal(s.cov, s.cov.T)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8), flush_rows=st.integers(1, 60),
       seed=st.integers(0, 2**31 - 1))
def test_any_batching_gives_the_same_moments(sizes: list[int], flush_rows: int, seed: int) -> None:
    x = _features(sum(sizes) + 2, 5, seed=seed, offset=100.0)
    acc = StatsAccumulator()
    acc.FLUSH_ROWS = flush_rows
    cuts = np.cumsum([0, *sizes, 2])
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        acc.update(x[lo:hi])
    s = acc.stats()
    np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-10)


def test_from_features_float32_is_accumulated_in_float64() -> None:
    x = _features(100, 5).astype(np.float32)
    s = Stats.from_features(x)
    x64 = x.astype(np.float64)
    assert _rel(s.cov, np.cov(x64, rowvar=False)) < 1e-12


def test_merge_of_shards_equals_stats_of_whole() -> None:
    x = _features(300, 8, seed=3, offset=50.0)
    shards = [Stats.from_features(x[a:b], PROV) for a, b in [(0, 7), (7, 150), (150, 300)]]
    merged = shards[0].merge(shards[1]).merge(shards[2])
    whole = Stats.from_features(x, PROV)
    assert merged.n == whole.n == 300
    assert _rel(merged.mean, whole.mean) < 1e-12
    assert _rel(merged.cov, whole.cov) < 1e-12
    assert merged.provenance == PROV


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(2, 20), min_size=3, max_size=3), seed=st.integers(0, 2**31 - 1),
       offset=st.floats(-1e3, 1e3))
def test_merge_is_associative_and_exact(sizes: list[int], seed: int, offset: float) -> None:
    x = _features(sum(sizes), 4, seed=seed, offset=offset)
    cuts = np.cumsum([0, *sizes])
    a, b, c = (Stats.from_features(x[cuts[i]:cuts[i + 1]]) for i in range(3))
    left = a.merge(b).merge(c)
    right = a.merge(b.merge(c))
    whole = np.cov(x, rowvar=False)
    for s in (left, right):
        assert s.n == len(x)
        np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=1e-12, atol=1e-12 * (1 + abs(offset)))
        np.testing.assert_allclose(s.cov, whole, rtol=1e-10, atol=1e-12 * np.abs(whole).max())


def test_merge_refuses_other_extractor_and_unknown_n(tmp_path) -> None:
    x = _features(20, 3)
    a = Stats.from_features(x, PROV)
    b = Stats.from_features(x, dataclasses.replace(PROV, resize_policy="clean"))
    with pytest.raises(ProvenanceMismatchError, match="resize policies"):
        a.merge(b)
    np.savez(tmp_path / "ref.npz", mu=a.mean, sigma=a.cov)
    with pytest.raises(InputError, match="cannot be merged"):
        a.merge(load(tmp_path / "ref.npz"))


def test_stats_validates_and_is_immutable() -> None:
    with pytest.raises(InputError, match="covariance must have shape"):
        Stats(10, np.zeros(3), np.eye(4))
    with pytest.raises(InputError, match="NaN"):
        Stats(10, np.array([0.0, np.nan]), np.eye(2))
    with pytest.raises(InputError, match="at least 2"):
        StatsAccumulator().update(np.ones((1, 3))).stats()
    with pytest.raises(InputError, match="2-D"):
        StatsAccumulator().update(np.ones(3))
    s = Stats.from_features(_features(10, 2))
    with pytest.raises(ValueError):
        s.mean[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n = 3  # type: ignore[misc]


def test_save_load_roundtrip_keeps_provenance(tmp_path) -> None:
    s = Stats.from_features(_features(40, 5), PROV)
    path = s.save(tmp_path / "sub" / "real.npz")
    assert [p.name for p in path.parent.iterdir()] == ["real.npz"]  # no temp file left behind
    t = Stats.load(path)
    assert t.n == 40 and t.provenance == PROV
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_array_equal(t.cov, s.cov)


@pytest.mark.peers
@pytest.mark.slow
def test_fidkit_file_is_readable_by_pytorch_fid(tmp_path) -> None:
    pytest.importorskip("pytorch_fid")
    s = Stats.from_features(_features(30, 4), PROV)
    s.save(tmp_path / "s.npz")
    # a subprocess: pytorch_fid imports torchvision (-> triton), which segfaults after tensorflow
    code = ("import json, sys; from pytorch_fid.fid_score import compute_statistics_of_path as c; "
            "mu, sigma = c(sys.argv[1], None, 1, 4, 'cpu'); "
            "print(json.dumps({'mu': mu.tolist(), 'sigma': sigma.tolist()}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.npz")], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.array(res["mu"]), s.mean)
    np.testing.assert_array_equal(np.array(res["sigma"]), s.cov)


def test_load_pytorch_fid_and_clean_fid_files(tmp_path) -> None:
    x = _features(50, 4)
    mu, sigma = x.mean(axis=0), np.cov(x, rowvar=False)
    np.savez(tmp_path / "ttur.npz", mu=mu, sigma=sigma)               # pytorch-fid / TTUR
    np.savez_compressed(tmp_path / "clean.npz", mu=mu, sigma=sigma)   # clean-fid make_custom_stats
    np.savez_compressed(tmp_path / "kid.npz", feats=x)                 # clean-fid KID statistics
    for name in ("ttur.npz", "clean.npz", "kid.npz"):
        s = load(tmp_path / name)
        assert s.provenance == Provenance()
        np.testing.assert_allclose(s.mean, mu, rtol=1e-13)
        np.testing.assert_allclose(s.cov, sigma, rtol=1e-12)
    assert load(tmp_path / "ttur.npz").n is None
    assert load(tmp_path / "kid.npz").n == 50


def test_load_rejects_bad_files_naming_them(tmp_path) -> None:
    good = Stats.from_features(_features(20, 64), PROV).save(tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.npz"):
        load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(InputError, match=r"other.npz.*'mu' and 'sigma'"):
        load(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", mu=np.array([object()]), sigma=np.eye(1))
    with pytest.raises(InputError, match="pickled.npz"):
        load(tmp_path / "pickled.npz")
    with pytest.raises(InputError, match="missing.npz"):
        load(tmp_path / "missing.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.eye(2))
    with pytest.raises(InputError, match=r"shape.npz: covariance"):
        load(tmp_path / "shape.npz")
    np.savez(tmp_path / "asym.npz", mu=np.zeros(2), sigma=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InputError, match=r"asym.npz: covariance: expected a symmetric covariance"):
        load(tmp_path / "asym.npz")
    with zipfile.ZipFile(tmp_path / "nozip.npz", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match="nozip.npz"):
        load(tmp_path / "nozip.npz")


@pytest.mark.parametrize(("field", "label"), [("extractor", "extractors"),
                                              ("weights_sha256", "weights"),
                                              ("resize_policy", "resize policies"),
                                              ("input_size", "input sizes")])
def test_check_compatible_names_the_differing_field(field: str, label: str) -> None:
    x = _features(20, 3)
    a = Stats.from_features(x, PROV)
    b = Stats.from_features(x, dataclasses.replace(PROV, **{field: "other"}))
    with pytest.raises(ProvenanceMismatchError, match=label):
        check_compatible(a, b)
    with pytest.warns(FidkitWarning, match=label):
        check_compatible(a, b, allow_mismatch=True)


def test_check_compatible_runtime_may_differ_unknown_warns() -> None:
    x = _features(20, 3)
    a = Stats.from_features(x, PROV)
    check_compatible(a, Stats.from_features(x, dataclasses.replace(PROV, runtime="torch")))
    with pytest.warns(FidkitWarning, match="provenance unknown"):
        check_compatible(a, Stats.from_features(x))
    with pytest.raises(InputError, match="feature dimensions"):
        check_compatible(a, Stats.from_features(_features(20, 4), PROV))


def test_fid_checks_provenance_then_matches_scipy() -> None:
    a = Stats.from_features(_features(60, 4, seed=1), PROV)
    b = Stats.from_features(_features(60, 4, seed=2, offset=0.5), PROV)
    covmean = scipy.linalg.sqrtm(a.cov @ b.cov).real
    expected = np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov + b.cov - 2 * covmean)
    with pytest.warns(FidkitWarning, match="60 samples"):
        assert fid(a, b) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ProvenanceMismatchError):
        fid(a, Stats(b.n, b.mean, b.cov, dataclasses.replace(PROV, extractor="inception-tf2015")))


@pytest.mark.parametrize("d", [1, 5, 256, 300, 513])
def test_mirror_upper_equals_the_triangle_and_its_transpose(d: int) -> None:
    from fidkit.stats import _mirror_upper

    m = np.random.default_rng(d).normal(size=(d, d))
    expected = np.triu(m) + np.triu(m, 1).T
    got = _mirror_upper(m, block=128)
    assert np.array_equal(got, expected) and np.array_equal(got, got.T)


@pytest.mark.parametrize("name", ["b", "b.npz", "b.NPZ", "b.npz.tmp", "dir.npz/b"])
def test_save_appends_npz_exactly_as_numpy_and_returns_the_path(tmp_path, name: str) -> None:
    s = Stats.from_features(_features(30, 3), PROV)
    for root in ("numpy", "fidkit"):
        (tmp_path / root / "dir.npz").mkdir(parents=True)
    np.savez(tmp_path / "numpy" / name, mu=s.mean)
    written = s.save(tmp_path / "fidkit" / name)
    assert written == tmp_path / "fidkit" / next(
        str(p.relative_to(tmp_path / "numpy")) for p in (tmp_path / "numpy").rglob("*") if p.is_file())
    assert written.is_file() and Stats.load(written).n == 30


def test_a_file_fidkit_wrote_is_read_whatever_its_name(tmp_path) -> None:
    s = Stats.from_features(_features(30, 3), PROV)
    path = s.save(tmp_path / "b")
    path.rename(tmp_path / "b")  # `fidkit stats B -o b` from an older fidkit
    t = load(tmp_path / "b")
    assert t.n == 30 and t.provenance == PROV
    np.testing.assert_array_equal(t.cov, s.cov)


def test_describe_n_says_unknown_for_peer_files(tmp_path) -> None:
    s = Stats.from_features(_features(30, 3), PROV)
    np.savez(tmp_path / "peer.npz", mu=s.mean, sigma=s.cov)
    peer = load(tmp_path / "peer.npz")
    assert (s.describe_n, peer.describe_n) == ("30", "unknown")
    assert "n=unknown" in repr(peer) and "None" not in repr(peer)


def test_statistics_under_other_names_and_pickles_are_refused_saying_what_was_found(tmp_path) -> None:
    s = Stats.from_features(_features(30, 3))
    np.savez(tmp_path / "ref.npz", mean=s.mean, cov=s.cov)
    with pytest.raises(InputError, match=r"ref.npz: not a statistics file: found arrays \['cov', 'mean'\], "
                                         r"expected 'mu' and 'sigma'; if 'mean' and 'cov' are"):
        load(tmp_path / "ref.npz")
    np.save(tmp_path / "ref.npy", {"mu": s.mean, "sigma": s.cov}, allow_pickle=True)
    with pytest.raises(InputError, match=r"ref.npy: a pickled Python object .*never unpickles.*python -c"):
        load(tmp_path / "ref.npy")
    np.save(tmp_path / "img.npy", np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"img.npy: not a statistics file or a features file: found image array"):
        load(tmp_path / "img.npy")


def _float16_file(tmp_path, cov: np.ndarray, name: str = "half.npz"):
    np.savez(tmp_path / name, mu=np.zeros(len(cov), np.float16), sigma=cov.astype(np.float16))
    return tmp_path / name


def test_float16_statistics_are_accepted_with_a_warning_naming_the_file(tmp_path) -> None:
    x = _features(20, 48, seed=8)  # n < d: a rank-deficient covariance, which float16 makes slightly indefinite
    exact = Stats.from_features(x)
    peer = Stats.from_features(_features(100, 48, seed=9))
    other = Stats(None, peer.mean, peer.cov)  # n unknown: no small-sample warning
    path = _float16_file(tmp_path, exact.cov)
    rounded = Stats(None, exact.mean, exact.cov.astype(np.float16).astype(np.float64))
    with pytest.raises(InputError, match="not positive semi-definite"), \
            pytest.warns(FidkitWarning, match="provenance unknown"):  # the float16 values, taken as exact
        fid(rounded, other)
    with pytest.warns(FidkitWarning, match=r"half.npz: covariance: stored as float16 .* can move √FID against "
                                           r"these statistics by up to") as rec:
        half = load(path)
    bound = float(str(rec[0].message).split("by up to ")[1].split(" ")[0])
    assert half.cov.dtype == np.float64
    with pytest.warns(FidkitWarning, match="provenance unknown"):
        got = fid(half, other)
    with pytest.warns(FidkitWarning, match="provenance unknown"):
        want = fid(Stats(None, np.zeros(48), exact.cov), other)
    assert abs(np.sqrt(got) - np.sqrt(want)) <= bound


def test_float16_does_not_excuse_a_matrix_that_is_not_psd(tmp_path) -> None:
    path = _float16_file(tmp_path, np.array([[1.0, 2.0], [2.0, 1.0]]), "bad.npz")
    with pytest.raises(InputError, match=r"bad.npz: covariance: not positive semi-definite even allowing for "
                                         r"float16 storage"):
        load(path)


def test_accumulator_names_the_input() -> None:
    """Issue 12.8: 'a covariance needs at least 2 feature rows' did not say which input had one image."""
    from fidkit.stats import StatsAccumulator

    acc = StatsAccumulator(label="fake").update(np.zeros((1, 3)))
    with pytest.raises(InputError, match=r"^fake: 1 image; a mean and covariance \(FID\) need at least 2"):
        acc.stats()
    with pytest.raises(InputError, match=r"^real: no images"):
        StatsAccumulator().stats(label="real")
    with pytest.raises(InputError, match=r"^fake: 1 image"):
        Stats.from_features(np.zeros((1, 3)), label="fake")


def test_protocol_round_trips_and_old_files_without_it_load_as_unknown(tmp_path) -> None:
    from fidkit.stats import FORMAT

    s = Stats.from_features(_features(12, 3), dataclasses.replace(PROV, protocol="torch-fidelity@1"))
    assert Stats.load(s.save(tmp_path / "new.npz")).provenance.protocol == "torch-fidelity@1"
    # a file written before the field existed: its provenance JSON has no "protocol"
    old = json.loads(PROV.to_json())
    del old["protocol"]
    np.savez(tmp_path / "old.npz", format=np.array(FORMAT), mu=s.mean, sigma=s.cov, n=np.array(12),
             provenance=np.array(json.dumps(old)))
    loaded = Stats.load(tmp_path / "old.npz").provenance
    assert loaded.protocol == "unknown" and dataclasses.replace(loaded, protocol=PROV.protocol) == PROV
    assert Provenance().protocol == "unknown"


def test_check_provenance_warns_when_two_named_protocols_differ() -> None:
    import warnings

    from fidkit.stats import NO_PROTOCOL, check_provenance

    a = dataclasses.replace(PROV, protocol="torch-fidelity@1")
    with pytest.warns(FidkitWarning, match=r"different protocols \(torch-fidelity@1 vs torchmetrics-tf@1\)"):
        check_provenance(a, dataclasses.replace(PROV, protocol="torchmetrics-tf@1"))
    with warnings.catch_warnings():  # the same protocol, or none / unknown on one side: nothing to say
        warnings.simplefilter("error")
        for other in ("torch-fidelity@1", NO_PROTOCOL, "unknown"):
            check_provenance(a, dataclasses.replace(PROV, protocol=other))
