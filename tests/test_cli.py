"""The command line, in-process through main(argv) and once as a real process."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

from fidkit.archs.mnist import mnist_v1
from fidkit.cli import main
from fidkit.stats import Provenance, Stats, load

PROV = Provenance(extractor="mnist", runtime="numpy", weights_sha256="ab" * 32, weights_source="test",
                  resize_policy="mnist", input_size="28x28", fidkit_version="0.1.0")


def _features(n: int, d: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale


def _fid_scipy(a: Stats, b: Stats) -> float:
    covmean = scipy.linalg.sqrtm(a.cov @ b.cov).real
    return float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov + b.cov - 2 * covmean))


@pytest.fixture
def stats_files(tmp_path):
    a = Stats.from_features(_features(40, 5, 1), PROV)
    b = Stats.from_features(_features(40, 5, 2, 1.5), PROV)
    return a, b, a.save(tmp_path / "a.npz"), b.save(tmp_path / "b.npz")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fid_of_two_stats_files(capsys, stats_files) -> None:
    a, b, pa, pb = stats_files
    code, out, err = _run(capsys, "fid", pa, pb, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["fid"] == pytest.approx(_fid_scipy(a, b), rel=1e-9)
    assert res["provenance"]["extractor"] == "mnist"
    code, out, _ = _run(capsys, "fid", pa, pb)
    assert code == 0 and out.startswith("FID") and "resize policy mnist" in out
    assert "no effect" not in _run(capsys, "fid", pa, pb)[2]
    code, out, err = _run(capsys, "fid", pa, pb, "--resize", "clean", "--extractor", "inception-tf2015")
    assert code == 0 and "resize policy mnist" in out
    assert "--extractor inception-tf2015, --resize clean: no effect, no input is images" in err


def test_peer_files_warn_about_unknown_provenance(capsys, tmp_path, stats_files) -> None:
    a, b, pa, _ = stats_files
    np.savez(tmp_path / "ttur.npz", mu=b.mean, sigma=b.cov)
    code, out, err = _run(capsys, "fid", pa, tmp_path / "ttur.npz", "--json")
    assert code == 0
    assert "fidkit: warning: provenance unknown" in err
    assert json.loads(out)["fid"] == pytest.approx(_fid_scipy(a, b), rel=1e-9)


def test_mismatched_provenance_is_a_one_line_error(capsys, tmp_path, stats_files) -> None:
    a, b, pa, _ = stats_files
    other = Stats(b.n, b.mean, b.cov, dataclasses.replace(PROV, resize_policy="clean")).save(tmp_path / "c.npz")
    code, out, err = _run(capsys, "fid", pa, other)
    assert code == 2 and out == ""
    assert err.startswith("fidkit: ") and "resize policies (mnist vs clean)" in err
    assert "--allow-mismatch" in err and "Traceback" not in err and err.count("\n") == 1
    code, out, err = _run(capsys, "fid", pa, other, "--allow-mismatch", "--json")
    assert code == 0 and "fidkit: warning:" in err and "fid" in json.loads(out)


def test_user_errors_exit_2_without_traceback(capsys, tmp_path, stats_files) -> None:
    _, _, pa, _ = stats_files
    (tmp_path / "broken.npz").write_bytes(pa.read_bytes()[:100])
    for argv, needle in [(("fid", pa, tmp_path / "broken.npz"), "broken.npz"),
                         (("fid", pa, tmp_path / "nothing"), "nothing: no such file"),
                         (("kid", pa, pa), "kid needs features")]:
        code, out, err = _run(capsys, *argv)
        assert code == 2, err
        assert err.startswith("fidkit: ") and needle in err and "Traceback" not in err
    np.save(tmp_path / "img.npy", np.zeros((4, 8, 8, 3), np.uint8))
    code, _, err = _run(capsys, "pr", pa, tmp_path / "img.npy")
    assert code == 2 and "real: pr needs features" in err
    assert "fidkit: extractor" not in err  # refused before any network was built
    code, _, err = _run(capsys, "fid", pa)  # a usage error: one line too
    assert code == 2 and err == "fidkit: fid: the following arguments are required: B; see 'fidkit fid --help'\n"
    code, _, err = _run(capsys, "score", pa, pa, "--batch-size", "0")
    assert code == 2 and "positive integer" in err


def test_stats_from_features_file_and_back(capsys, tmp_path) -> None:
    x = _features(30, 6, 3)
    np.save(tmp_path / "f.npy", x)
    code, out, err = _run(capsys, "stats", tmp_path / "f.npy", "-o", tmp_path / "s.npz", "--json")
    assert code == 0, err
    s = load(tmp_path / "s.npz")
    assert json.loads(out)["n"] == 30 == s.n
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-12)


def test_kid_and_pr_on_feature_files(capsys, tmp_path) -> None:
    kid_mod = pytest.importorskip("fidkit.kid")
    prdc_mod = pytest.importorskip("fidkit.prdc")
    x, y = _features(30, 4, 1), _features(30, 4, 2, 1.2)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", features=y)
    code, out, err = _run(capsys, "kid", tmp_path / "x.npy", tmp_path / "y.npz", "--subset-size", "10",
                          "--json")
    assert code == 0, err
    assert json.loads(out)["kid"]["mean"] == pytest.approx(kid_mod.kid(x, y, subset_size=10)[0], rel=1e-12)
    code, out, err = _run(capsys, "pr", tmp_path / "x.npy", tmp_path / "y.npz", "--json")
    assert code == 0, err
    p, r = _pair(prdc_mod.precision_recall(x, y, k=3))
    assert json.loads(out)["pr"] == {"precision": p, "recall": r}


def _pair(res):
    if isinstance(res, dict):
        return res["precision"], res["recall"]
    if hasattr(res, "precision"):
        return res.precision, res.recall
    return tuple(res)


def test_extractors_lists_the_registry(capsys) -> None:
    code, out, _ = _run(capsys, "extractors", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["mnist"]["feature_dim"] == 128 and rows["mnist"]["policy"] == "mnist"
    assert "inception-tf2015" in rows


@pytest.fixture
def mnist_weights(tmp_path):
    graph = mnist_v1()
    rng = np.random.default_rng(7)
    params = {k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.standard_normal(s) * 0.1)
              .astype(np.float32) for k, s in graph.param_shapes().items()}
    np.savez(tmp_path / "w.npz", **params)
    return tmp_path / "w.npz"


@pytest.mark.slow
def test_images_through_the_numpy_runtime(capsys, tmp_path, mnist_weights) -> None:
    pytest.importorskip("fidkit.images")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (12, 28, 28, 3), dtype=np.uint8))
    np.save(tmp_path / "fake.npy", rng.integers(0, 128, (12, 28, 28, 3), dtype=np.uint8))
    opts = ["--runtime", "numpy", "--weights", mnist_weights, "--batch-size", "5", "--no-progress"]
    code, out, err = _run(capsys, "stats", tmp_path / "real.npy", "-o", tmp_path / "real_stats.npz", *opts)
    assert code == 0, err
    assert "resize policy mnist (the extractor's canonical policy)" in err
    code, out, err = _run(capsys, "features", tmp_path / "fake.npy", "-o", tmp_path / "fake_f.npz", *opts)
    assert code == 0, err
    code, out, err = _run(capsys, "fid", tmp_path / "real.npy", tmp_path / "fake.npy", "--json", *opts)
    assert code == 0, err
    direct = json.loads(out)["fid"]
    code, out, err = _run(capsys, "fid", tmp_path / "real_stats.npz", tmp_path / "fake_f.npz", "--json")
    assert code == 0, err
    assert json.loads(out)["fid"] == pytest.approx(direct, rel=1e-9)
    s = load(tmp_path / "real_stats.npz")
    assert s.n == 12 and s.provenance.runtime == "numpy" and s.provenance.resize_policy == "mnist"
    tanh = rng.uniform(-1, 1, (12, 28, 28, 3)).astype(np.float32)
    np.save(tmp_path / "tanh.npy", tanh)
    code, out, err = _run(capsys, "stats", tmp_path / "tanh.npy", "-o", tmp_path / "t.npz", "--range", "0,1",
                          *opts)
    assert code == 2 and "-1" in err and "Traceback" not in err
    code, out, err = _run(capsys, "stats", tmp_path / "tanh.npy", "-o", tmp_path / "t.npz", "--range", "-1,1",
                          *opts)
    assert code == 0, err
    np.save(tmp_path / "scaled.npy", (tanh.astype(np.float64) + 1) * 127.5)
    code, out, err = _run(capsys, "stats", tmp_path / "scaled.npy", "-o", tmp_path / "u.npz", "--range", "0,255",
                          *opts)
    assert code == 0, err
    np.testing.assert_allclose(load(tmp_path / "t.npz").mean, load(tmp_path / "u.npz").mean, rtol=1e-5, atol=1e-6)


def test_layout_flag_settles_ambiguous_arrays(capsys, tmp_path, mnist_weights) -> None:
    nchw = np.random.default_rng(1).integers(0, 256, (6, 3, 28, 3), dtype=np.uint8)  # 3 channels or 3 wide?
    np.save(tmp_path / "nchw.npy", nchw)
    np.save(tmp_path / "nhwc.npy", nchw.transpose(0, 2, 3, 1))
    opts = ["--runtime", "numpy", "--weights", mnist_weights, "--no-progress"]
    code, _, err = _run(capsys, "stats", tmp_path / "nchw.npy", "-o", tmp_path / "a.npz", *opts)
    assert code == 2 and "layout" in err
    code, _, err = _run(capsys, "stats", tmp_path / "nchw.npy", "-o", tmp_path / "a.npz", "--layout", "NCHW", *opts)
    assert code == 0, err
    code, _, err = _run(capsys, "stats", tmp_path / "nhwc.npy", "-o", tmp_path / "b.npz", "--layout", "NHWC", *opts)
    assert code == 0, err
    np.testing.assert_array_equal(load(tmp_path / "a.npz").mean, load(tmp_path / "b.npz").mean)


def test_real_process_prints_json_and_exit_codes(tmp_path, stats_files) -> None:
    _, _, pa, pb = stats_files
    ok = subprocess.run([sys.executable, "-m", "fidkit", "fid", str(pa), str(pb), "--json"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["fid"] > 0
    bad = subprocess.run([sys.executable, "-m", "fidkit", "fid", str(pa), str(tmp_path / "missing.npz")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("fidkit: ") and "Traceback" not in bad.stderr


def test_score_prints_every_metric_with_intervals(capsys, tmp_path) -> None:
    x, y = _features(30, 4, 1), _features(30, 4, 2, 1.2)
    logits = np.random.default_rng(5).standard_normal((30, 10))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", features=y, logits=logits)
    argv = ["score", tmp_path / "x.npy", tmp_path / "y.npz", "--bootstrap", "5", "--splits", "3",
            "--subset-size", "10"]
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert set(res) >= {"fid", "kid", "is", "pr", "dc", "intervals", "n_real", "n_fake"}
    assert res["intervals"]["fid"]["low"] <= res["intervals"]["fid"]["high"]
    assert res["kid_subset_size"] == 10 and res["n_fake"] == 30
    assert "fidkit: warning: provenance unknown" in err
    code, out, err = _run(capsys, *argv)
    assert code == 0
    for label in ("FID", "KID", "IS", "precision", "recall", "density", "coverage", "95% CI"):
        assert label in out


def test_user_extractor_errors_are_one_line(capsys, tmp_path, mnist_weights, monkeypatch) -> None:
    """A user's --extractor module:build raising while built, or its model raising while extracting:
    one line naming --extractor and what it raised, exit 2 (as --generator)."""
    (tmp_path / "bad_ex.py").write_text(
        "def build():\n    raise RuntimeError('no such checkpoint')\n\n"
        "def build_broken():\n    from fidkit.extraction import extractor\n"
        f"    ex = extractor('mnist', 'numpy', weights={str(mnist_weights)!r})\n"
        "    def boom(*a, **k):\n        raise ValueError('shape mismatch in layer 3')\n"
        "    ex.outputs = boom\n    return ex\n")
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3), dtype=np.uint8))
    code, out, err = _run(capsys, "stats", "x.npy", "-o", "s.npz", "--extractor", "bad_ex:build", "--no-progress")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--extractor bad_ex:build: raised RuntimeError: no such checkpoint" in err
    code, out, err = _run(capsys, "stats", "x.npy", "-o", "s.npz", "--extractor", "bad_ex:build_broken",
                          "--no-progress")
    assert code == 2 and "Traceback" not in err, err
    assert "--extractor bad_ex:build_broken: raised ValueError" in err and "shape mismatch in layer 3" in err


def test_statistics_only_names_the_metrics_fix(capsys, stats_files) -> None:
    """score of two statistics files: the error names --metrics fid (CLI and API), and --metrics fid works."""
    from fidkit.errors import InputError
    from fidkit.scoring import score

    a, b, pa, pb = stats_files
    code, out, err = _run(capsys, "score", pa, pb)
    assert code == 2 and "kid" in err and "--metrics fid" in err and "Traceback" not in err, err
    with pytest.raises(InputError, match="--metrics fid"):
        score(str(pa), str(pb))
    code, out, err = _run(capsys, "score", pa, pb, "--metrics", "fid", "--json")
    assert code == 0, err
    assert json.loads(out)["fid"] == pytest.approx(_fid_scipy(a, b), rel=1e-9)


def test_mismatches_known_before_extraction_fail_before_it(capsys, tmp_path, mnist_weights, monkeypatch) -> None:
    """A statistics/features file's resize policy against --resize, sFID from an extractor without spatial
    features, KID --subset-size beyond a known count: each fails with exit 2 before any image is extracted."""
    from fidkit.extraction import Extractor

    rng = np.random.default_rng(0)
    for name in ("x", "y"):
        np.save(tmp_path / f"{name}.npy", rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8))
    opts = ["--runtime", "numpy", "--weights", mnist_weights, "--no-progress"]
    assert _run(capsys, "stats", tmp_path / "x.npy", "-o", tmp_path / "s.npz", *opts)[0] == 0
    assert _run(capsys, "features", tmp_path / "x.npy", "-o", tmp_path / "f.npz", *opts)[0] == 0

    def extracted(*a, **k):
        raise AssertionError("extraction ran before the check")

    (tmp_path / "nologits.py").write_text(
        "def build():\n    from fidkit.extraction import extractor\n"
        f"    ex = extractor('mnist', 'numpy', weights={str(mnist_weights)!r})\n"
        "    ex.logits_dim = None\n    return ex\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Extractor, "outputs", extracted)
    y = tmp_path / "y.npy"
    code, out, err = _run(capsys, "score", tmp_path / "x.npy", y, "--metrics", "is", "--extractor", "nologits:build",
                          "--no-progress")
    assert code == 2 and "IS needs classifier logits" in err and "Traceback" not in err, err
    for argv, words in (
            (["fid", tmp_path / "s.npz", y, "--resize", "clean"], "resize policies (mnist vs clean)"),
            (["fid", tmp_path / "f.npz", y, "--resize", "clean"], "resize policies (mnist vs clean)"),
            (["score", tmp_path / "x.npy", y, "--metrics", "sfid"], "spatial features"),
            (["score", tmp_path / "f.npz", y, "--metrics", "kid", "--subset-size", "7"], "--subset-size 6 or fewer"),
            (["score", tmp_path / "x.npy", y, "--metrics", "kid", "--subset-size", "7"], "--subset-size 6 or fewer")):
        code, out, err = _run(capsys, *argv, *opts)
        assert code == 2 and words in err and "Traceback" not in err, (argv, err)


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_notes_concern_only_computed_metrics(capsys, tmp_path) -> None:
    """--protocol torch-fidelity --metrics is: no KID note (KID was not computed); with kid, its note is there."""
    from fidkit.features import FeatureResult

    prov = Provenance(extractor="inception-tf2015", resize_policy="legacy-tensorflow")
    rng = np.random.default_rng(0)
    for side in ("real", "fake"):
        FeatureResult(rng.standard_normal((30, 8)), rng.standard_normal((30, 1008)), [str(i) for i in range(30)],
                      prov).save(tmp_path / f"{side}.npz")
    base = ["score", tmp_path / "real.npz", tmp_path / "fake.npz", "--protocol", "torch-fidelity", "--json",
            "--bootstrap", "0"]
    code, out, err = _run(capsys, *base, "--metrics", "is")
    assert code == 0, err
    res = json.loads(out)
    assert "is" in res and "kid" not in res
    assert res["notes"] and all(not n.startswith("KID") for n in res["notes"]), res["notes"]
    code, out, err = _run(capsys, *base, "--metrics", "kid,is", "--allow-mismatch", "--subset-size", "10")
    assert code == 0, err
    assert any(n.startswith("KID") for n in json.loads(out)["notes"])


def test_json_errors_are_json_on_stdout(capsys, stats_files, tmp_path) -> None:
    """Under --json every failing subcommand prints {"error", "exit_status": 2} on stdout, the line on stderr."""
    _, _, pa, pb = stats_files
    missing = tmp_path / "missing.npz"
    for argv in (["score", pa, pb], ["fid", pa, missing], ["kid", pa, pb], ["explain", pa, missing]):
        code, out, err = _run(capsys, *argv, "--json")
        assert code == 2, (argv, err)
        res = json.loads(out)
        assert res["exit_status"] == 2 and res["error"] and f"fidkit: {res['error']}" in err, (argv, out, err)


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")
def test_no_progress_bars_when_stderr_is_not_a_terminal(capsys, tmp_path, mnist_weights) -> None:
    """stderr redirected (here captured: not a TTY): no \\r progress bars, on the CLI and the API."""
    from fidkit.pipeline import compute_stats

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (6, 28, 28, 3), dtype=np.uint8))
    code, out, err = _run(capsys, "stats", tmp_path / "x.npy", "-o", tmp_path / "s.npz", "--runtime", "numpy",
                          "--weights", mnist_weights, "--batch-size", "2")
    assert code == 0, err
    assert "\r" not in err and "img/s" not in err, err
    from fidkit.extraction import extractor

    ex = extractor("mnist", "numpy", weights=str(mnist_weights))
    compute_stats(str(tmp_path / "x.npy"), ex, progress=True, batch_size=2)
    err = capsys.readouterr().err
    assert "\r" not in err and "img/s" not in err, err


def test_output_suffix_other_than_npz_is_refused_before_work(capsys, tmp_path) -> None:
    """-o out.txt: one line naming -o, exit 2, nothing written; -o out (no suffix) writes out.npz."""
    from fidkit.features import FeatureResult

    FeatureResult(_features(12, 4, 0), None, [str(i) for i in range(12)], PROV).save(tmp_path / "f.npz")
    np.save(tmp_path / "x.npy", np.zeros((3, 28, 28, 3), np.uint8))
    for cmd, src in (("stats", "f.npz"), ("features", "x.npy")):
        code, out, err = _run(capsys, cmd, tmp_path / src, "-o", tmp_path / "out.txt")
        assert code == 2 and err.startswith(f"fidkit: -o {tmp_path / 'out.txt'}:") and "out.npz" in err, err
        assert err.count("\n") == 1 and not list(tmp_path.glob("out*")), err
    code, out, err = _run(capsys, "stats", tmp_path / "f.npz", "-o", tmp_path / "out")
    assert code == 0, err
    assert load(tmp_path / "out.npz").n == 12
