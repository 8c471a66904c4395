"""``fidkit explain``: every field's branch (same, differs, unknown), the three verdicts and exit statuses, registry
provenance for published files, JSON, and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fidkit import explain as X
from fidkit.cli import main
from fidkit.errors import InputError
from fidkit.registry import get_spec
from fidkit.stats import UNKNOWN, Provenance, Stats

REPO = Path(__file__).resolve().parents[1]
SHA_A, SHA_B = "a" * 64, "b" * 64
BASE = Provenance(extractor="inception-tf2015", runtime="torch", weights_sha256=SHA_A,
                  weights_source="pt_inception-2015-12-05-6726825d.pth", resize_policy="legacy-tensorflow",
                  input_size="299x299", fidkit_version="1.0", description="CIFAR-10 train", protocol="none")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")


def _stats(prov: Provenance = BASE, n: int | None = 100, d: int = 6, seed: int = 0) -> Stats:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    return Stats(n, rng.standard_normal(d), a @ a.T, prov)


def _row(res: X.Explanation, field: str) -> X.Row:
    (row,) = [r for r in res.rows if r.field == field]
    return row


def test_identical_provenance_is_comparable() -> None:
    res = X.explain_stats(_stats(), _stats(seed=1))
    assert res.verdict == "comparable" and res.exit_code == 0 and res.reasons == []
    assert all(r.state == "same" for r in res.rows if r.effect == "blocks")
    assert "what the differences do:" not in res.lines()
    assert res.lines()[-1].startswith("verdict: comparable")


@pytest.mark.parametrize("field, change", [
    ("extractor", {"extractor": "mnist"}),
    ("resize_policy", {"resize_policy": "clean"}),
    ("input_size", {"input_size": "224x224"}),
    ("weights", {"weights_sha256": SHA_B}),
])
def test_each_blocking_difference_makes_them_not_comparable(field: str, change: dict) -> None:
    res = X.explain_stats(_stats(), _stats(replace(BASE, **change)))
    row = _row(res, field)
    assert row.state == "differs" and row.effect == "blocks"
    assert res.verdict == "not comparable" and res.exit_code == 1 and res.reasons == [row.label]
    text = "\n".join(res.lines())
    assert f"- {row.label} differs (not comparable): {X.EFFECTS[field][2]}" in text
    assert text.endswith(f"verdict: not comparable ({row.label} differs)")


def test_feature_dimension_differs() -> None:
    res = X.explain_stats(_stats(d=6), _stats(d=4))
    assert _row(res, "dim").state == "differs" and res.verdict == "not comparable"


def test_two_blocking_differences_are_both_named() -> None:
    res = X.explain_stats(_stats(), _stats(replace(BASE, resize_policy="clean", input_size="64x64")))
    assert res.reasons == ["resize policy", "network input size"]
    assert res.lines()[-1].endswith("(resize policy, network input size differ)")


@pytest.mark.parametrize("field, change", [("extractor", {"extractor": UNKNOWN}),
                                           ("resize_policy", {"resize_policy": UNKNOWN})])
def test_an_unknown_blocking_field_gives_unknown(field: str, change: dict) -> None:
    res = X.explain_stats(_stats(), _stats(replace(BASE, **change)))
    assert _row(res, field).state == "unknown"
    assert res.verdict == "unknown" and res.exit_code == 1 and X.EFFECTS[field][0] in res.reasons
    assert "cannot show them comparable" in res.lines()[-1]


def test_a_difference_wins_over_an_unknown() -> None:
    res = X.explain_stats(_stats(), _stats(replace(BASE, extractor=UNKNOWN, resize_policy="clean")))
    assert res.verdict == "not comparable" and res.reasons == ["resize policy"]


def test_weights_by_digest_by_name_and_by_the_extractors_files() -> None:
    no_digest = replace(BASE, weights_sha256=UNKNOWN)
    # same digest
    assert _row(X.explain_stats(_stats(), _stats()), "weights").state == "same"
    # one digest unknown, same file name
    row = _row(X.explain_stats(_stats(), _stats(no_digest)), "weights")
    assert row.state == "same" and "by name" in row.note
    # one digest unknown, another of the extractor's own files (the same network)
    files = get_spec("inception-tf2015").weights
    other = replace(no_digest, weights_source=files[-1])
    assert files[-1] != BASE.weights_source
    row = _row(X.explain_stats(_stats(), _stats(other)), "weights")
    assert row.state == "same" and "inception-tf2015's one network" in row.note
    # one digest unknown, a file that is not the extractor's
    row = _row(X.explain_stats(_stats(), _stats(replace(no_digest, weights_source="mine.pth"))), "weights")
    assert row.state == "differs"
    # the same file names but different extractors: not taken for one network
    res = X.explain_stats(_stats(replace(BASE, extractor="mnist")), _stats(other))
    assert _row(res, "weights").state == "differs"
    # an extractor fidkit does not know (no accepted files): two names are two files
    custom = replace(no_digest, extractor="my-own-net")
    row = _row(X.explain_stats(_stats(custom), _stats(replace(custom, weights_source="b.pth"))), "weights")
    assert row.state == "differs"
    # neither digest nor name
    row = _row(X.explain_stats(_stats(), _stats(replace(no_digest, weights_source=UNKNOWN))), "weights")
    assert row.state == "unknown" and row.a.startswith(SHA_A[:12]) and row.b == UNKNOWN


def test_protocol_and_sample_count_move_the_score_but_do_not_block() -> None:
    a = _stats(replace(BASE, protocol="ttur@1"), n=50_000)
    b = _stats(replace(BASE, protocol="clean-fid-legacy-tensorflow@1"), n=10_000)
    res = X.explain_stats(a, b)
    assert res.verdict == "comparable" and res.exit_code == 0
    assert (_row(res, "protocol").state, _row(res, "protocol").effect) == ("differs", "moves")
    assert (_row(res, "n").state, _row(res, "n").effect) == ("differs", "moves")
    text = "\n".join(res.lines())
    assert "- protocol differs (moves the score)" in text and "- sample count differs (moves the score)" in text
    res = X.explain_stats(a, _stats(n=None))
    assert _row(res, "n").state == "unknown" and res.verdict == "comparable"
    assert any(line.startswith("- sample count is not recorded in a file (moves the score)") for line in res.lines())


def test_protocol_field_absent_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Provenance objects without a ``protocol`` attribute (older provenance types) are read as unknown."""

    class Old:
        def __init__(self, p: Provenance) -> None:
            self.__dict__.update({k: getattr(p, k) for k in ("extractor", "runtime", "weights_sha256",
                                                            "weights_source", "resize_policy", "input_size",
                                                            "fidkit_version", "description")})

    a, b = _stats(), _stats()
    object.__setattr__(b, "provenance", Old(b.provenance))
    assert _row(X.explain_stats(a, b), "protocol").b == UNKNOWN


def test_informational_fields_are_listed_but_never_decide() -> None:
    b = _stats(replace(BASE, description="CIFAR-10 test", runtime="jax", fidkit_version="2.0"))
    res = X.explain_stats(_stats(), b)
    assert res.verdict == "comparable"
    for field in ("description", "runtime", "fidkit_version"):
        assert (_row(res, field).state, _row(res, field).effect) == ("differs", "none")
    assert "what the differences do:" not in res.lines()


def test_quoted_noise_floor_is_the_shipped_one() -> None:
    """The MNIST real-vs-real FID quoted for the sample count is reference_stats/noise_floor.json's."""
    fid = np.array(json.loads((REPO / "reference_stats" / "noise_floor.json").read_text())["fid"])
    assert f"FID {fid.mean():.3f} ± {fid.std(ddof=1):.3f}" in X.EFFECTS["n"][2]
    assert f"| FID | {fid.mean():.3f} ± {fid.std(ddof=1):.3f}" in (REPO / "reference_stats" / "README.md").read_text()


def _published(tmp_path: Path, name: str, compressed: bool = False) -> Path:
    s = _stats(d=6, n=None)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / name, mu=s.mean, sigma=s.cov)
    return tmp_path / name


def test_published_files_get_the_registry_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fidkit import refstats
    from fidkit.refstats import load

    # 6-d files stand in for the registered 2048-d ones (shape matching is by the entry's dim)
    monkeypatch.setattr(refstats, "REFSTATS", {k: replace(e, dim=6) for k, e in refstats.REFSTATS.items()})

    ttur = load(_published(tmp_path, "fid_stats_cifar10_train.npz"))
    clean = load(_published(tmp_path, "cifar10_clean_train_32.npz", compressed=True))
    legacy = load(_published(tmp_path, "cifar10_legacy_tensorflow_train_32.npz", compressed=True))
    own = load(_stats(d=6).save(tmp_path / "own.npz"))
    res = X.explain_stats(own, ttur)  # fidkit's legacy-tensorflow statistics and TTUR's: one network, one policy
    assert res.verdict == "comparable", res.lines()
    assert _row(res, "protocol").b == "ttur@1" and _row(res, "weights").state == "same"
    res = X.explain_stats(ttur, clean)
    assert res.verdict == "not comparable" and res.reasons == ["resize policy"]
    assert X.explain_stats(ttur, legacy).verdict == "comparable"
    unregistered = load(_published(tmp_path, "mine.npz"))  # mu/sigma of another tool: nothing recorded
    res = X.explain_stats(ttur, unregistered)
    assert res.verdict == "unknown" and "extractor" in res.reasons


def test_cli_exit_statuses_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _stats().save(tmp_path / "a.npz")
    b = _stats(seed=2).save(tmp_path / "b.npz")
    c = _stats(replace(BASE, resize_policy="clean")).save(tmp_path / "c.npz")
    assert main(["explain", str(a), str(b)]) == 0
    assert "verdict: comparable" in capsys.readouterr().out
    assert main(["explain", str(a), str(c), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "not comparable" and out["exit_status"] == 1 and out["reasons"] == ["resize policy"]
    assert {r["field"] for r in out["rows"]} == set(X.EFFECTS)
    np.savez(tmp_path / "other.npz", mu=np.zeros(6), sigma=np.eye(6))
    assert main(["explain", str(a), str(tmp_path / "other.npz")]) == 1
    capsys.readouterr()
    assert main(["explain", str(a), str(tmp_path / "missing.npz")]) == 2
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8, 3), np.uint8))
    assert main(["explain", str(tmp_path / "images.npy"), str(a)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "missing.npz: no such file" in err[0] and "images.npy" in err[1]
    with pytest.raises(InputError):
        X.explain(tmp_path / "missing.npz", a)


def test_a_features_file_shows_its_recorded_provenance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file written by `fidkit features` records its provenance; explain reads it as `fidkit fid` does."""
    from fidkit.features import FeatureResult

    feats = np.random.default_rng(3).standard_normal((20, 6))
    FeatureResult(feats, None, [str(i) for i in range(20)], BASE).save(tmp_path / "f.npz")
    _stats(n=20).save(tmp_path / "a.npz")
    res = X.explain(tmp_path / "a.npz", tmp_path / "f.npz")
    assert _row(res, "extractor").b == "inception-tf2015" and _row(res, "resize_policy").b == "legacy-tensorflow"
    assert res.verdict == "comparable"
    assert main(["explain", str(tmp_path / "a.npz"), str(tmp_path / "f.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "comparable"
