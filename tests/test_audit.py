"""`fidkit audit`: every protocol on one pair, sharing the decode and the network passes.

Every number is checked against a computation assembled independently from the protocol record
(`fidkit.extractor` with the protocol's resize policy and the same weights, `numpy.cov` with the
protocol's divisor, `fidkit.frechet_distance`, `fidkit.kid` / `fidkit.inception_score` with
`fidkit.protocols.resolve`'s options), the default row against `fidkit.score`, the FID∞ points
against `fidkit.fid_infinity`, and the figure against the JSON it was drawn from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

import fidkit
from fidkit.audit import (
    DEFAULT_ROW,
    audit,
    figure_data,
    infinity_points,
    plot,
    protocol_fid,
    table_rows,
)
from fidkit.cli import main
from fidkit.errors import FidkitWarning, InputError
from fidkit.protocols import available_protocols, get_protocol, resolve

N_MNIST = 300  # images per side of the MNIST audit
N_INCEPTION = 16  # images per side of the Inception audit (~5 images/s through Inception on 2 cores)


def INCEPTION_PROTOCOLS() -> list[str]:  # noqa: N802 (read like a constant, computed when the registry is full)
    """The registered protocols on the 2015 Inception graph, whose synthetic weights the tests have."""
    return [n for n in available_protocols() if get_protocol(n).extractor == "inception-tf2015"]
RTOL = tolerance("audit", "same_features")


def _mnist_pair() -> tuple[np.ndarray, np.ndarray]:
    """Real: MNIST test digits; fake: other digits with additive noise (a plausible weak generator)."""
    x, _ = fidkit.load_mnist()
    rng = np.random.default_rng(0)
    fake = np.clip(x[5000:5000 + N_MNIST] + rng.normal(0.0, 40.0, (N_MNIST, 28, 28)), 0, 255).astype(np.uint8)
    return x[:N_MNIST], fake


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere but the bundled MNIST file, and no downloads."""
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    return tmp_path


# ------------------------------------------------------------------------------- MNIST, offline


@pytest.fixture(scope="module")
def mnist_audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import time

    root = tmp_path_factory.mktemp("audit_mnist")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIDKIT_HOME", str(root / "home"))
    mp.setenv("TORCH_HOME", str(root / "torch"))
    mp.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    mp.setenv("FIDKIT_OFFLINE", "1")
    real, fake = _mnist_pair()
    try:
        start = time.perf_counter()
        result = audit(real, fake, out=root / "out", sample_sizes=[50, 100, 200, N_MNIST])
        seconds = time.perf_counter() - start
    finally:
        mp.undo()
    return {"result": result, "seconds": seconds, "out": root / "out", "real": real, "fake": fake}


def test_mnist_audit_runs_offline_in_under_a_minute(mnist_audit: dict) -> None:
    result = mnist_audit["result"]
    assert mnist_audit["seconds"] < 60
    rows = {r.protocol: r for r in result.rows}
    assert rows[DEFAULT_ROW].status == "ok"
    # every registered protocol is listed; those needing Inception weights are skipped, saying which file
    for name in available_protocols():
        row = rows[get_protocol(name).label]
        assert row.status == "skipped" and row.reason, name
        if "policy" not in get_protocol(name).missing:
            assert any(w in row.reason for w in get_protocol(name).weights), row.reason
            assert "not found locally" in row.reason
    assert [p["policy"] for p in result.passes] == ["mnist"]
    assert result.decoded == {"real": N_MNIST, "fake": N_MNIST}
    assert sorted(Path(f).name for f in result.files) == ["audit.csv", "audit.json", "audit.md", "audit.png",
                                                          "audit.svg"]


def test_default_row_is_fidkit_score(mnist_audit: dict) -> None:
    """The default row equals `fidkit.score` with its defaults on the same arrays."""
    row = next(r for r in mnist_audit["result"].rows if r.protocol == DEFAULT_ROW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        ref = fidkit.score(mnist_audit["real"], mnist_audit["fake"], metrics="fid,kid,is,pr")
    assert row.fid == pytest.approx(ref["fid"], rel=1e-12)
    assert (row.fid_low, row.fid_high) == pytest.approx((ref["intervals"]["fid"]["low"],
                                                         ref["intervals"]["fid"]["high"]), rel=1e-12)
    assert row.kid_mean == pytest.approx(ref["kid"]["mean"], rel=1e-12)
    # every subset is the whole sample (300 of 300): no spread to report, on both routes
    assert row.kid_std is None and ref["kid"]["std"] is None
    assert (row.is_mean, row.is_std) == pytest.approx((ref["is"]["mean"], ref["is"]["std"]), rel=1e-12)
    assert (row.precision, row.recall) == (ref["pr"]["precision"], ref["pr"]["recall"])
    assert row.n_real == row.n_fake == N_MNIST


def test_infinity_points_are_fid_infinity(mnist_audit: dict) -> None:
    """FID against 1/N: the sub-samples and fit of `fidkit.fid_infinity` (same seed, same sizes)."""
    result = mnist_audit["result"]
    fit = result.infinity[f"{DEFAULT_ROW} ({result.settings['runtimes'][0]})"]
    ex = fidkit.extractor("mnist", result.settings["runtimes"][0])
    fr = ex.features(mnist_audit["real"])
    ff = ex.features(mnist_audit["fake"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        ref = fidkit.fid_infinity(fr, ff, sizes=fit["sizes"], seed=0)
    assert fit["sizes"] == list(ref.sizes) == [50, 100, 200, N_MNIST]
    np.testing.assert_allclose(fit["fids"], ref.scores, rtol=RTOL)
    assert fit["fid_infinity"] == pytest.approx(ref.value, rel=RTOL, abs=RTOL * max(ref.scores))
    assert fit["slope"] == pytest.approx(ref.slope, rel=RTOL)


def test_outputs_agree_with_each_other(mnist_audit: dict) -> None:
    out = mnist_audit["out"]
    data = json.loads((out / "audit.json").read_text())
    assert data == json.loads(json.dumps(mnist_audit["result"].to_dict()))
    md = (out / "audit.md").read_text()
    for row in table_rows(data)[1:]:
        assert "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" in md
    import csv

    with open(out / "audit.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert [r["protocol"] for r in records] == [r["protocol"] for r in data["rows"]]
    for rec, row in zip(records, data["rows"], strict=True):
        for key in ("fid", "fid_low", "fid_high", "kid_mean", "is_mean"):
            assert (float(rec[key]) if rec[key] else None) == row[key]
    for row in data["rows"]:
        if row["status"] == "skipped":
            assert row["reason"] in md


# -------------------------------------------------------------------------------------- the figure


def _svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return ["".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("text")]


def test_figure_opens_and_shows_the_json_numbers(mnist_audit: dict) -> None:
    from PIL import Image

    out = mnist_audit["out"]
    data = json.loads((out / "audit.json").read_text())
    with Image.open(out / "audit.png") as im:
        im.verify()
    with Image.open(out / "audit.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 10  # something is drawn
    texts = _svg_texts(out / "audit.svg")
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    for r in ok:
        assert r["key"] in texts  # each row's label
        assert f"{r['fid']:.4g}" in texts  # and its FID, as annotated
    for key in data["infinity"]:
        assert key in texts  # the legend of the 1/N panel


def _rows_top_down(ax) -> list[str]:
    """The y tick labels of ``ax`` from the top of the panel down (the table's order)."""
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True), reverse=True)
    return [text for _, text in ticks]


def test_plotted_data_are_the_json_values(mnist_audit: dict) -> None:
    """The figure is drawn from the JSON: the artists hold the JSON's FIDs, intervals and 1/N points."""
    data = json.loads((mnist_audit["out"] / "audit.json").read_text())
    fd = figure_data(data)
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert fd["labels"] == [r["key"] for r in ok] and fd["fid"] == [r["fid"] for r in ok]
    assert [g["extractor"] for g in fd["groups"]] == ["mnist"]
    fig = plot(data)
    try:
        ax, ax2 = fig.axes
        assert _rows_top_down(ax) == [r["key"] for r in ok]
        point = next(line for line in ax.lines if len(line.get_xdata()) == len(ok) and line.get_marker() == "o")
        np.testing.assert_array_equal(point.get_xdata(), [r["fid"] for r in ok])
        segments = next(c for c in ax.collections if len(c.get_segments()) == len(ok)).get_segments()
        np.testing.assert_allclose(sorted(s[:, 0].min() for s in segments), sorted(r["fid_low"] for r in ok),
                                   rtol=1e-12)
        np.testing.assert_allclose(sorted(s[:, 0].max() for s in segments), sorted(r["fid_high"] for r in ok),
                                   rtol=1e-12)
        fit = next(iter(data["infinity"].values()))
        pts = next(line for line in ax2.lines if line.get_gid() == "points-0-0")
        np.testing.assert_allclose(pts.get_xdata(), 1.0 / np.asarray(fit["sizes"]), rtol=1e-15)
        np.testing.assert_array_equal(pts.get_ydata(), fit["fids"])
        fit_line = next(line for line in ax2.lines if line.get_gid() == "fit-0-0")
        assert fit_line.get_ydata()[0] == pytest.approx(fit["fid_infinity"], rel=1e-12)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_figure_has_one_panel_per_feature_space(inception_audit: dict) -> None:
    """MNIST and Inception FIDs are on different scales: each network gets its own axis, with its rows."""
    data = inception_audit["result"].to_dict()
    fd = figure_data(data)
    assert [g["extractor"] for g in fd["groups"]] == ["mnist", "inception-tf2015"]
    fig = plot(data)
    try:
        assert len(fig.axes) == 2
        for ax, g in zip(fig.axes, fd["groups"], strict=True):
            assert _rows_top_down(ax) == g["labels"]
            point = next(line for line in ax.lines if line.get_marker() == "o")
            np.testing.assert_array_equal(point.get_xdata(), g["fid"])
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_missing_matplotlib_is_one_clear_error(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    real, fake = _mnist_pair()
    with pytest.raises(InputError, match="needs matplotlib: pip install 'fidkit\\[audit\\]'"):
        audit(real[:20], fake[:20], protocols="pytorch-fid", out=offline / "o", bootstrap=0)
    assert not (offline / "o").exists()  # refused before any work
    res = audit(real[:20], fake[:20], protocols="pytorch-fid", out=offline / "o", bootstrap=0, figure=False)
    assert sorted(Path(f).name for f in res.files) == ["audit.csv", "audit.json", "audit.md"]


def test_importing_fidkit_and_the_audit_imports_no_matplotlib() -> None:
    code = ("import sys, fidkit, fidkit.audit, fidkit.cli; fidkit.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ the FID conventions


def test_protocol_fid_divisors_against_numpy_cov() -> None:
    rng = np.random.default_rng(3)
    for n_a, n_b, d in ((9, 7, 5), (4, 6, 10)):  # the covariance route and the n×n route
        a, b = rng.normal(size=(n_a, d)), rng.normal(0.3, 1.2, size=(n_b, d))
        for ddof in (0, 1):
            want = fidkit.frechet_distance(a.mean(0), np.cov(a, rowvar=False, ddof=ddof), b.mean(0),
                                           np.cov(b, rowvar=False, ddof=ddof))
            assert protocol_fid(a, b, ddof) == pytest.approx(want, rel=1e-12)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    pts = infinity_points(a, b, [10, 20, 40], ddof=1, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        ref = fidkit.fid_infinity(a, b, sizes=[10, 20, 40], seed=5)
    np.testing.assert_allclose(pts["fids"], ref.scores, rtol=1e-10)


# ------------------------------------------------------------------ Inception protocols, synthetic weights


@pytest.fixture(scope="module")
def inception_audit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The audit of two PNG folders under every protocol with the tests' synthetic Inception weights,
    counting decodes and network calls."""
    require_runtime("torch")
    from PIL import Image

    import fidkit.extraction
    import fidkit.images
    from fidkit.archs.inception import inception_tf2015
    from fidkit.archs.synthetic import synthetic_images, write_synthetic_weights

    root = tmp_path_factory.mktemp("audit_inception")
    npz = write_synthetic_weights(inception_tf2015(logits_bias=True), root / "tf2015.npz")
    real = synthetic_images(N_INCEPTION, (64, 64), seed=21)
    fake = (synthetic_images(N_INCEPTION, (64, 64), seed=22) // 4 + 96).astype(np.uint8)
    dirs = {}
    for label, arr in (("real", real), ("fake", fake)):
        d = root / label
        d.mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img).save(d / f"{i:03d}.png")
        dirs[label] = d
    decoded: list[str] = []
    calls: list[tuple[str, str, str, int]] = []
    mp = pytest.MonkeyPatch()
    real_decode, real_outputs = fidkit.images._decode, fidkit.extraction.Extractor.outputs

    def counting_decode(data, name, value_range):
        decoded.append(str(name))
        return real_decode(data, name, value_range)

    def counting_outputs(self, images, **kwargs):
        calls.append((self.name, self.runtime, self.policy.name, len(images)))
        return real_outputs(self, images, **kwargs)

    mp.setattr(fidkit.images, "_decode", counting_decode)
    mp.setattr(fidkit.extraction.Extractor, "outputs", counting_outputs)
    mp.setenv("FIDKIT_HOME", str(root / "home"))
    mp.setenv("FIDKIT_OFFLINE", "1")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "weights .* match no official file", FidkitWarning)
            result = audit(str(dirs["real"]), str(dirs["fake"]), runtimes="torch",
                           weights={"inception-tf2015": str(npz)}, bootstrap=10, batch_size=64)
    finally:
        mp.undo()
    return {"result": result, "decoded": decoded, "calls": calls, "npz": npz, "dirs": dirs}


def test_each_input_is_decoded_once(inception_audit: dict) -> None:
    names = inception_audit["decoded"]
    assert len(names) == 2 * N_INCEPTION and len(set(names)) == len(names)


def test_one_network_pass_per_extractor_weights_runtime_policy(inception_audit: dict) -> None:
    result, calls = inception_audit["result"], inception_audit["calls"]
    computed = [r for r in result.rows if r.status == "ok"]
    expected = {(r.extractor, r.runtime, r.policy) for r in computed}
    # every protocol on the 2015 Inception runs on the synthetic weights; the others (DINOv2, CLIP) lack theirs
    assert sorted(r.protocol for r in computed) == sorted([DEFAULT_ROW, *(get_protocol(n).label
                                                                          for n in INCEPTION_PROTOCOLS())])
    for r in result.rows:
        if r.status != "ok":
            assert "not found locally" in r.reason and r.extractor != "inception-tf2015", r
    assert len(expected) < len(computed)  # protocols share passes
    # one call per input (batch_size >= N) per distinct key: each input through each network once
    assert sorted(calls) == sorted((e, rt, pol, N_INCEPTION) for e, rt, pol in expected for _ in range(2))
    assert len(result.passes) == len(expected)
    assert sorted(sum((p["rows"] for p in result.passes), [])) == sorted(r.key for r in computed)


_FEATURES: dict = {}


def _features(env: dict, policy: str) -> dict[str, np.ndarray]:
    """The features and logits of both folders under ``policy``, computed without the audit."""
    if policy not in _FEATURES:
        with pytest.warns(FidkitWarning, match="match no official file"):
            ex = fidkit.extractor("inception-tf2015", "torch", weights=str(env["npz"]), policy=policy)
        out = {}
        for side in ("real", "fake"):
            res = fidkit.compute_features(str(env["dirs"][side]), ex, progress=False, batch_size=64)
            out[side], out[side + "_logits"] = res.features, res.logits
        _FEATURES[policy] = out
    return _FEATURES[policy]


def test_each_protocol_row_is_the_protocol_computed_by_hand(inception_audit: dict) -> None:
    """Each row's FID, KID and IS equal the computation assembled from the protocol record."""
    for row in inception_audit["result"].rows:
        if row.protocol == DEFAULT_ROW:
            continue
        p = get_protocol(row.protocol.split("@")[0])
        if p.extractor != "inception-tf2015":  # no weights for it here: skipped, as the next test checks
            continue
        assert row.status == "ok" and row.policy == p.policy and row.extractor == p.extractor
        f = _features(inception_audit, p.policy)
        xr, xf = f["real"].astype(np.float64), f["fake"].astype(np.float64)
        want = fidkit.frechet_distance(xr.mean(0), np.cov(xr, rowvar=False, ddof=p.fid_cov_ddof), xf.mean(0),
                                       np.cov(xf, rowvar=False, ddof=p.fid_cov_ddof))
        assert row.fid == pytest.approx(want, rel=RTOL), p.name
        assert row.fid_low <= row.fid <= row.fid_high
        _, opts = resolve(p)
        if "kid" in p.missing or p.kid is None:
            assert row.kid_mean is None and "kid" in row.skipped_metrics
        elif row.kid_mean is not None:
            a, b = (xr, xf) if opts["kid_inputs"] == ("real", "fake") else (xf, xr)
            k = {**opts["kid"], "subset_size": min(opts["kid"]["subset_size"], N_INCEPTION)}
            assert p.kid.subset_size_rule == "capped"
            assert row.kid_mean == pytest.approx(fidkit.kid(a, b, **k)[0], rel=1e-12), p.name
        else:  # subsets the tool would refuse at 16 images
            assert "the tool refuses" in row.skipped_metrics["kid"] or "too few" in row.skipped_metrics["kid"]
        if "is" in p.missing or p.inception_score is None:
            assert row.is_mean is None
        elif p.inception_score.split_size:
            assert "parts of 5000" in row.skipped_metrics["is"]
        else:
            want_is = fidkit.inception_score(f["fake_logits"], **opts["is"])
            assert row.is_mean == pytest.approx(want_is[0], rel=1e-12), p.name
        pr = opts.get("pr")
        if pr is None:
            assert row.precision is None
        elif pr.get("extractor"):  # StyleGAN's / torch-fidelity's VGG16: not on these features
            assert row.precision is None and pr["extractor"] in row.skipped_metrics["pr"], p.name
        else:  # ADM: k-NN radii on pool3, a point on a radius counted inside (<=)
            d = ((xf[:, None] - xr[None]) ** 2).sum(-1)
            rr = np.sort(((xr[:, None] - xr[None]) ** 2).sum(-1), axis=1)[:, pr["k"]]
            want_precision = float(np.mean((d <= rr[None] if pr["radius_inclusive"] else d < rr[None]).any(1)))
            assert row.precision == pytest.approx(want_precision, abs=0), p.name


@pytest.mark.skipif("protocol" not in __import__("inspect").signature(fidkit.score).parameters,
                    reason="fidkit.score has no protocol= yet")
def test_protocol_rows_equal_score_with_the_protocol(inception_audit: dict, tmp_path: Path) -> None:
    """Each row is `fidkit.score(..., protocol=name)` on the same files, given the synthetic weights under
    the protocol's own file name (a torch state dict, as the tool loads it)."""
    import torch

    from fidkit.weights import load_canonical

    state = {k: torch.from_numpy(v) for k, v in load_canonical(inception_audit["npz"]).items()}
    rows = {r.protocol: r for r in inception_audit["result"].rows}
    for name, metrics in (("pytorch-fid", "fid"), ("torch-fidelity", "fid,is")):
        p = get_protocol(name)
        path = tmp_path / p.weights[0]
        torch.save(state, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FidkitWarning)  # unofficial weights; few samples
            ref = fidkit.score(str(inception_audit["dirs"]["real"]), str(inception_audit["dirs"]["fake"]),
                               metrics=metrics, protocol=name, weights=str(path), runtime="torch", bootstrap=0,
                               batch_size=64)
        row = rows[p.label]
        assert row.fid == pytest.approx(ref["fid"], rel=RTOL), name
        if "is" in metrics:
            assert row.is_mean == pytest.approx(ref["is"]["mean"], rel=1e-12), name


def test_rows_say_what_differs_from_the_default(inception_audit: dict) -> None:
    rows = {r.protocol: r for r in inception_audit["result"].rows}
    assert rows[DEFAULT_ROW].differs == "—"
    assert "fid covariance: / n" in rows["stylegan@1"].differs
    assert "resize: legacy-pytorch" in rows["pytorch-fid@1"].differs
    assert "fid covariance" not in rows["pytorch-fid@1"].differs
    assert "protocol stylegan@1" in rows["stylegan@1"].provenance


def test_every_runtime_gets_its_rows_and_passes(offline: Path) -> None:
    """--runtimes: each row on each runtime, one pass per runtime; the runtimes agree on the numbers."""
    from fidkit.registry import choose_runtime, get_spec

    first = choose_runtime(get_spec("mnist"), None)
    second = "numpy" if first != "numpy" else "torch"
    require_runtime(second)
    real, fake = _mnist_pair()
    res = audit(real[:60], fake[:60], protocols="none", runtimes=f"{first},{second}", bootstrap=0)
    assert [(r.protocol, r.runtime) for r in res.rows] == [(DEFAULT_ROW, first), (DEFAULT_ROW, second)]
    assert [(p["runtime"], p["policy"]) for p in res.passes] == [(first, "mnist"), (second, "mnist")]
    a, b = res.rows
    assert b.fid == pytest.approx(a.fid, rel=tolerance("scores", "fid"))
    assert b.is_mean == pytest.approx(a.is_mean, rel=tolerance("scores", "is"))


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_audit_writes_and_prints(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real, fake = _mnist_pair()
    np.save(offline / "real.npy", real[:60])
    np.save(offline / "fake.npy", fake[:60])
    code = main(["audit", str(offline / "real.npy"), str(offline / "fake.npy"), "--protocols",
                 "pytorch-fid,stylegan", "--out", str(offline / "out"), "--bootstrap", "5", "--no-progress",
                 "--no-figure"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("protocol") and "fidkit-default" in out
    assert "skipped pytorch-fid@1" in out and "skipped stylegan@1" in out
    data = json.loads((offline / "out" / "audit.json").read_text())
    assert [r["protocol"] for r in data["rows"]] == [DEFAULT_ROW, "pytorch-fid@1", "stylegan@1"]
    assert main(["audit", str(offline / "real.npy"), str(offline / "fake.npy"), "--protocols", "ttur",
                 "--bootstrap", "0", "--json", "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"][0]["fid"] == data["rows"][0]["fid"] and payload["rows"][0]["fid_low"] is None


@pytest.mark.parametrize("argv, needle", [
    (["--protocols", "pytorchfid"], "--protocols: unknown protocol 'pytorchfid'"),
    (["--runtimes", "cuda"], "--runtimes: unknown runtime 'cuda'"),
    (["--runtime", "torch"], "--runtime: `fidkit audit` runs every protocol's own setting; choose with --runtimes"),
    (["--resize", "clean"], "--resize: `fidkit audit` runs every protocol's own setting"),
    (["--sample-sizes", "10,5000"], "--sample-sizes 10,5000: expected at least 2 distinct sizes between 2 and the 60"),
    (["--checkpoint", "ck"], "--checkpoint: `fidkit audit` keeps its decoded images"),
    (["--weights", "w.npz"], "--weights w.npz: the chosen protocols run "),
    (["--weights", "inception-tf2015=w.npz"], "--weights inception-tf2015=w.npz: no such file"),
    (["--protocols", "ttur", "--weights", "pt_inception-2015-12-05-6726825d.pth"],
     "--weights inception-tf2015=pt_inception-2015-12-05-6726825d.pth: no such file"),
])
def test_cli_audit_bad_options_are_one_line(offline: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            needle: str) -> None:
    real, fake = _mnist_pair()
    np.save(offline / "real.npy", real[:60])
    np.save(offline / "fake.npy", fake[:60])
    assert main(["audit", str(offline / "real.npy"), str(offline / "fake.npy"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fidkit: ") and needle in err and len(err.splitlines()) == 1


def test_cli_audit_refuses_protocol_singular(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--protocol (the other commands' option, inherited with their input options) names --protocols."""
    from fidkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    if not any("--protocol" in a.option_strings for a in sub.choices["audit"]._actions):
        pytest.skip("the shared input options have no --protocol yet")
    real, fake = _mnist_pair()
    np.save(offline / "real.npy", real[:60])
    np.save(offline / "fake.npy", fake[:60])
    assert main(["audit", str(offline / "real.npy"), str(offline / "fake.npy"), "--protocol", "ttur"]) == 2
    err = capsys.readouterr().err
    assert err == ("fidkit: --protocol: `fidkit audit` runs every protocol's own setting; choose with "
                   "--protocols\n")


def test_cli_audit_refuses_features(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(offline / "feats.npy", np.zeros((10, 128), np.float32))
    assert main(["audit", str(offline / "feats.npy"), str(offline / "feats.npy")]) == 2
    err = capsys.readouterr().err
    assert "real: `fidkit audit` needs images" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- docs/reproducibility.md

_NUMBER = r"[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?"


def _skeleton_and_numbers(text: str) -> tuple[str, list[str]]:
    import re

    text = re.sub(r"fidkit \d+\.\d+\.\d+\S*", "fidkit VERSION", text)
    text = re.sub(r"digest [0-9a-f]{16}", "digest DIGEST", text)
    return re.sub(_NUMBER, "#", text), re.findall(_NUMBER, text)


def _last_digit(number: str) -> float:
    """Returns one unit in the last printed digit of ``number`` ("307.7" -> 0.1, "1.5e-05" -> 1e-6)."""
    mantissa, _, exponent = number.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


@pytest.mark.slow
def test_reproducibility_doc_matches_a_fresh_run() -> None:
    """Every measured number of docs/reproducibility.md is what scripts/make_reproducibility_table.py
    computes now, to one unit in the last printed digit (the runtimes' float32 kernels differ by ~1e-5
    relative, so a printed digit can round the other way); the text around them is identical."""
    require_runtime("torch")
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_reproducibility_table",
                                                  root / "scripts" / "make_reproducibility_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    doc = (root / "docs" / "reproducibility.md").read_text(encoding="utf-8")
    block = doc[doc.index(script.BEGIN):doc.index(script.END) + len(script.END)]
    fresh = script.markdown(script.measure(script.N))
    skel_doc, nums_doc = _skeleton_and_numbers(block)
    skel_fresh, nums_fresh = _skeleton_and_numbers(fresh)
    assert skel_doc == skel_fresh, "regenerate: python scripts/make_reproducibility_table.py --write"
    for a, b in zip(nums_doc, nums_fresh, strict=True):
        assert abs(float(a) - float(b)) <= 1.0001 * max(_last_digit(a), _last_digit(b)), (a, b)
