"""Generator evaluation (`fidkit.generators`, ``fidkit.score(real, generator=...)``, ``fidkit score --generator``).

The generator is MNIST test digits (the shipped split) with per-image seeded noise, scored with the
shipped MNIST extractor on the numpy runtime (exact float64, so "equal" is equality to rounding). The
independent route: the same images materialized with the documented seed rule and scored as an array
by `fidkit.score`, which has its own, older pipeline.
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from conftest import require_runtime, tolerance

import fidkit
from fidkit.cli import main
from fidkit.errors import InputError
from fidkit.generators import image_seeds, noise, parse_seeds, summarize
from fidkit.mnist_data import load_mnist

#: few images, so FID's small-sample warning is expected here
pytestmark = pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")

DIGITS = load_mnist("test")[0]
REAL = DIGITS[:40]
#: REAL on [0, 1], for the reference route (one value_range for both of its inputs)
REAL01 = REAL.astype(np.float64) / 255.0
NUM = 24


def digit_generator(seeds: np.ndarray) -> np.ndarray:
    """n float images on [0, 1] (N, 28, 28, 1): a digit picked by each seed, plus that seed's noise."""
    seeds = np.asarray(seeds)
    base = DIGITS[1000 + seeds % 500].astype(np.float64) / 255.0
    return np.clip(base + 0.15 * noise(seeds, (28, 28), np.float64), 0.0, 1.0)[..., None]


OPTIONS = {"extractor": "mnist", "runtime": "numpy", "value_range": (0, 1), "kid_subset_size": 10,
           "kid_subsets": 5, "bootstrap": 0}


def _close(a: float, b: float) -> None:
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_seed_rule_and_noise_do_not_depend_on_batching() -> None:
    np.testing.assert_array_equal(image_seeds(2, 5), [10, 11, 12, 13, 14])
    whole = noise(np.arange(6), (3,))
    np.testing.assert_array_equal(np.concatenate([noise(np.arange(4), (3,)), noise(np.arange(4, 6), (3,))]),
                                  whole)
    assert parse_seeds("0,1,2") == (0, 1, 2) and parse_seeds(3) == (3,) and parse_seeds([4, 5]) == (4, 5)
    for bad in ("0,0", "a", "-1", "", 1.5):
        with pytest.raises(InputError, match="--seeds"):
            parse_seeds(bad)


def test_summary_is_mean_std_min_over_seeds() -> None:
    per = [{"fid": 3.0, "kid": {"mean": 0.1}}, {"fid": 5.0, "kid": {"mean": 0.3}}, {"fid": 4.0, "kid": {"mean": 0.2}}]
    s = summarize(per)
    assert s["fid"] == {"mean": 4.0, "std": float(np.sqrt(2 / 3)), "min": 3.0, "max": 5.0,
                        "values": [3.0, 5.0, 4.0]}
    assert s["kid"]["min"] == 0.1 and "is" not in s


def test_generator_equals_scoring_the_same_images() -> None:
    res = fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(0, 1), batch_size=7,
                       metrics="fid,kid,is,pr", **OPTIONS)
    assert [r["seed"] for r in res["per_seed"]] == [0, 1]
    for r in res["per_seed"]:
        images = digit_generator(image_seeds(r["seed"], NUM))
        ref = fidkit.score(REAL01, images, "fid,kid,is,pr", **OPTIONS)
        _close(r["fid"], ref["fid"])
        _close(r["kid"]["mean"], ref["kid"]["mean"])
        _close(r["is"]["mean"], ref["is"]["mean"])
        assert r["pr"] == ref["pr"]
        assert r["n_fake"] == NUM and r["n_real"] == len(REAL)
    fids = [r["fid"] for r in res["per_seed"]]
    assert fids[0] != fids[1]  # the seeds draw different images
    assert res["summary"]["fid"]["mean"] == pytest.approx(np.mean(fids), rel=1e-15)
    assert res["summary"]["fid"]["std"] == pytest.approx(np.std(fids), rel=1e-12)
    assert res["summary"]["fid"]["min"] == min(fids)
    gen = res["settings"]["generator"]
    assert gen["num"] == NUM and gen["seeds"] == [0, 1] and gen["quantize"] is False


def test_results_do_not_depend_on_batch_size() -> None:
    a = fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(3,), batch_size=5, metrics="fid,kid",
                     **OPTIONS)
    b = fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(3,), batch_size=NUM, metrics="fid,kid",
                     **OPTIONS)
    _close(a["per_seed"][0]["fid"], b["per_seed"][0]["fid"])
    _close(a["per_seed"][0]["kid"]["mean"], b["per_seed"][0]["kid"]["mean"])


def test_quantize_equals_scoring_uint8_images() -> None:
    res = fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(0,), batch_size=10, metrics="fid",
                       quantize=True, **OPTIONS)
    images = digit_generator(image_seeds(0, NUM))
    as_png = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)  # what a saved 8-bit PNG holds
    ref = fidkit.score(REAL, as_png, "fid", **{**OPTIONS, "value_range": None})  # both uint8
    _close(res["per_seed"][0]["fid"], ref["fid"])
    plain = fidkit.score(REAL01, images, "fid", **OPTIONS)["fid"]
    assert res["per_seed"][0]["fid"] != plain
    assert res["settings"]["generator"]["quantize"] is True


def _as_tensor(runtime: str, x: np.ndarray):
    """``x`` (NHWC) as the runtime's own tensor: torch NCHW float32, tf and jax NHWC float32."""
    if runtime == "torch":
        import torch

        return torch.from_numpy(x).permute(0, 3, 1, 2).float()
    if runtime == "tf":
        import tensorflow as tf

        return tf.constant(x, tf.float32)
    import jax.numpy as jnp

    return jnp.asarray(x, jnp.float32)


@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
def test_tensor_generator(runtime: str) -> None:
    """A generator returning the runtime's tensors (images stay tensors into the extractor)."""
    require_runtime(runtime)

    def gen(seeds: np.ndarray):
        return _as_tensor(runtime, digit_generator(seeds))

    opts = {**OPTIONS, "runtime": runtime}
    res = fidkit.score(REAL, generator=gen, num=NUM, seeds=(0,), batch_size=8, metrics="fid", **opts)
    ref = fidkit.score(REAL01, digit_generator(image_seeds(0, NUM)).astype(np.float32), "fid", **opts)
    # two float32 runs in other batch sizes: scores.fid's budget (derived for Inception; MNIST's eps_net
    # is 1.5e-6, below Inception's 5.4e-6)
    assert res["per_seed"][0]["fid"] == pytest.approx(ref["fid"], rel=tolerance("scores", "fid"))


@pytest.mark.parametrize(("gen", "match"), [
    (lambda seeds: np.zeros((len(seeds) + 1, 28, 28, 1)), r"--generator .*returned shape \(\d+, 28, 28, 1\)"),
    (lambda seeds: 1 / 0, "--generator .*raised ZeroDivisionError"),
    (lambda seeds: np.full((len(seeds), 28, 28, 1), 7.0), "--generator"),
    (42, "--generator .*int object is not callable"),
])
def test_bad_generators_are_one_line_errors(gen, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        fidkit.score(REAL, generator=gen, num=4, seeds=(0,), metrics="fid", **OPTIONS)
    assert "\n" not in str(info.value)


def test_cli_generator(tmp_path, monkeypatch, capsys) -> None:
    mod = tmp_path / "mygen.py"
    mod.write_text(textwrap.dedent("""
        import numpy as np
        from fidkit.generators import noise
        from fidkit.mnist_data import load_mnist
        D = load_mnist("test")[0]
        def sample(seeds):
            base = D[1000 + np.asarray(seeds) % 500].astype(np.float64) / 255.0
            return np.clip(base + 0.15 * noise(seeds, (28, 28), np.float64), 0.0, 1.0)[..., None]
        NOT_CALLABLE = 3
    """))
    real = tmp_path / "real.npy"
    np.save(real, REAL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mygen", raising=False)
    args = ["score", str(real), "--generator", "mygen:sample", "--num", str(NUM), "--seeds", "0,1",
            "--metrics", "fid", "--runtime", "numpy", "--range", "0,1", "--bootstrap", "0", "--no-progress"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(0, 1), metrics="fid", **OPTIONS)
    for got, want in zip(out["per_seed"], ref["per_seed"], strict=True):
        _close(got["fid"], want["fid"])
    _close(out["summary"]["fid"]["mean"], ref["summary"]["fid"]["mean"])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "seed 0" in text and "seed 1" in text and "over 2 seeds" in text
    for ref_str, match in (("mygen:nothere", "--generator mygen:nothere: 'mygen' has no attribute"),
                           ("nomodule_xyz:f", "--generator nomodule_xyz:f: cannot import"),
                           ("mygen:NOT_CALLABLE", "--generator mygen:NOT_CALLABLE: int object is not callable")):
        bad = [a if a != "mygen:sample" else ref_str for a in args]
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fidkit: ") and match in err and "\n" not in err, err


def test_feature_rows_only_when_a_metric_needs_them(monkeypatch) -> None:
    """FID alone (no bootstrap) streams the statistics; KID keeps the rows."""
    import fidkit.generators as g

    seen: list[tuple[bool, str]] = []
    original = g.sample

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append((kwargs["rows"], type(out[0]).__name__))
        return out

    monkeypatch.setattr(g, "sample", spy)
    opts = {k: v for k, v in OPTIONS.items() if not k.startswith("kid")}
    fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(0,), metrics="fid", **opts)
    fidkit.score(REAL, generator=digit_generator, num=NUM, seeds=(0,), metrics="fid,kid", **OPTIONS)
    assert seen == [(False, "Stats"), (True, "FeatureResult")]


def test_generator_options_without_a_generator_are_errors(tmp_path, capsys) -> None:
    with pytest.raises(InputError, match="generator= only"):
        fidkit.score(REAL01, REAL01, "fid", seeds=(0, 1), **OPTIONS)
    with pytest.raises(InputError, match="pass either fake images or --generator"):
        fidkit.score(REAL01, REAL01, "fid", generator=digit_generator, num=4, **OPTIONS)
    real = tmp_path / "real.npy"
    np.save(real, REAL)
    for extra, match in ((["--num", "5"], "apply to --generator only"),
                         ([], "needs generated images B, or --generator")):
        args = ["score", str(real), *([str(real)] if extra else []), *extra, "--metrics", "fid"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and "\n" not in err, err
    assert main(["score", str(real), "--generator", "x:y", "--metrics", "fid"]) == 2
    assert "--num N (images per seed) is required" in capsys.readouterr().err
