"""`fidkit.score`: settings and notes say what was computed on what; options are checked in the
interface's own words (issues 12 and 13). Small synthetic inputs, features unless images are the point."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fidkit.errors import FidkitWarning, InputError
from fidkit.features import FeatureResult
from fidkit.scoring import score
from fidkit.stats import Provenance, Stats


def _features(n: int, d: int = 4, seed: int = 0, shift: float = 0.0, classes: int = 10) -> FeatureResult:
    rng = np.random.default_rng(seed)
    logits = np.repeat(np.eye(classes) * 20.0, -(-n // classes), axis=0)[:n]  # sorted by class
    return FeatureResult(rng.standard_normal((n, d)) + shift, logits, [str(i) for i in range(n)], _KNOWN)


_KNOWN = Provenance(extractor="synthetic", weights_sha256="0" * 64, resize_policy="none", input_size="4")


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        return score(*args, **kwargs)


def test_is_does_not_depend_on_file_order_and_records_the_seed() -> None:
    """Issue 12.1: logits sorted by class (class sub-folders) gave IS 1.00; `score` shuffles by default
    with a recorded seed, and shuffle_seed=None is the original, order-dependent formula."""
    real, fake = _features(200), _features(200, seed=1)
    out = _quiet(real, fake, metrics="is")
    assert out["is"]["mean"] > 7.0
    assert out["settings"]["is"] == {"splits": 10, "shuffle_seed": 2020}
    assert any(n.startswith("IS: computed on fake only") and "seed 2020" in n for n in out["notes"])
    original = _quiet(real, fake, metrics="is", is_shuffle_seed=None)
    assert original["is"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert original["settings"]["is"]["shuffle_seed"] is None


def test_is_splits_error_names_the_input_and_flag() -> None:
    with pytest.raises(InputError, match=r"^fake: 3 images, fewer than --splits 10; pass --splits 3 or fewer"):
        _quiet(_features(50), _features(3, seed=1), metrics="is")


def test_kid_default_subset_size_is_reduced_with_a_warning() -> None:
    """Issue 12.6: the implicit subset size above n is reduced with a warning, recorded, and since every
    subset is then the whole sample there is no ± (std None), not a std of 1e-16."""
    real, fake = _features(40), _features(40, seed=1, shift=0.5)
    with pytest.warns(FidkitWarning, match=r"KID: real has 40 images, fewer than the default subset size 1000; "
                                           r"using subsets of 40 \(set --subset-size to choose\)"):
        out = score(real, fake, metrics="kid", bootstrap=0)
    assert out["kid_subset_size"] == 40 and out["kid"]["std"] is None
    assert out["settings"]["kid"] == {"subsets": 100, "subset_size": 40, "subset_size_given": False,
                                      "subsets_vary": False}
    assert any("no ±" in n for n in out["notes"]) and any("reduced" in n for n in out["notes"])


def test_kid_explicit_subset_size_larger_than_n_is_an_error() -> None:
    with pytest.raises(InputError, match=r"^fake: 30 images, fewer than KID's --subset-size 1000 .*pass "
                                         r"--subset-size 30 or fewer \(kid_subset_size= in Python\)"):
        score(_features(40), _features(30, seed=1), metrics="kid", kid_subset_size=1000)


def test_kid_std_kept_when_subsets_can_differ() -> None:
    out = score(_features(40), _features(50, seed=1), metrics="kid", kid_subset_size=20)
    assert isinstance(out["kid"]["std"], float) and out["kid"]["std"] > 0
    assert out["settings"]["kid"]["subset_size_given"] and out["settings"]["kid"]["subsets_vary"]


def test_one_sample_size_warning_naming_both_sides() -> None:
    """The sample-size warning printed twice per run (once per side): now once, naming both."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score(_features(30), _features(40, seed=1), metrics="fid")
    sizes = [str(w.message) for w in caught if "samples" in str(w.message)]
    assert len(sizes) == 1 and "real (30 samples) and fake (40 samples)" in sizes[0]


def test_settings_and_notes_for_a_statistics_file_on_one_side() -> None:
    """Issue 13: with statistics on one side the FID interval is narrower (a note says why); a peer file's
    n is 'unknown' (a note); every option used is in `settings`."""
    fake = _features(60, seed=1, shift=0.2)
    x = np.random.default_rng(5).standard_normal((60, 4))
    peer = Stats(None, x.mean(0), np.cov(x, rowvar=False), Provenance())
    out = _quiet(peer, fake, metrics="fid", bootstrap=5, seed=3)
    assert out["n_real"] is None
    assert any(n.startswith("FID interval: real is a statistics file, so only fake was resampled")
               for n in out["notes"])
    assert any(n.startswith("n real: unknown") for n in out["notes"])
    assert out["settings"] == {"seed": 3, "bootstrap": {"n": 5, "level": 0.95, "seed": 3}, "protocol": None}
    full = _quiet(_features(60), fake, bootstrap=5, kid_subset_size=20, is_splits=2)
    assert set(full["settings"]) == {"seed", "bootstrap", "kid", "is", "pr", "dc", "protocol"}
    assert full["settings"]["pr"] == {"k": 3} and full["settings"]["dc"] == {"k": 5}
    assert any("k-NN manifolds are held fixed" in n for n in full["notes"])


def test_pr_dc_without_bootstrap_equal_the_functions() -> None:
    from fidkit.prdc import density_coverage, precision_recall

    real, fake = _features(60), _features(50, seed=1, shift=0.3)
    for metrics in ("pr,dc", "pr", "dc"):
        out = _quiet(real, fake, metrics=metrics, k=4, dc_k=6)
        if "pr" in out:
            assert tuple(out["pr"].values()) == tuple(precision_recall(real.features, fake.features, k=4))
        if "dc" in out:
            assert tuple(out["dc"].values()) == tuple(density_coverage(real.features, fake.features, k=6))
    with pytest.raises(InputError, match=r"^real: 60 images cannot have --dc-k 60 .*pass --dc-k 59 or less"):
        _quiet(real, fake, metrics="dc", dc_k=60)


def test_bootstrap_count_named_as_the_flag() -> None:
    with pytest.raises(InputError, match=r"^--bootstrap 1: a bootstrap interval needs at least 2 resamples"):
        score(_features(20), _features(20, seed=1), metrics="kid", bootstrap=1)


def test_dimension_mismatch_names_the_extractors() -> None:
    """A 2048-d statistics file against images through the 128-d default extractor: say where each came
    from and which --extractor to pass."""
    x = np.random.default_rng(0).standard_normal((3000, 2048)) * 0.1
    stats = Stats(3000, x.mean(0), np.eye(2048), Provenance())
    images = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        with pytest.raises(InputError, match=r"real is a statistics file of 2048-d features from extractor "
                                             r"unknown; fake is images of 128-d features from extractor mnist;"
                                             r" pass --extractor inception-tf2015"):
            score(stats, images, metrics="fid", extractor="mnist", runtime="numpy", layout="NHW")


def test_int64_images_quote_their_real_extremes() -> None:
    """An int64 array of 0..255 was reported as 'values (min 0.00, max 0.00)'."""
    images = (np.arange(3 * 28 * 28, dtype=np.int64) % 256).reshape(3, 28, 28)
    with pytest.raises(InputError, match=r"int64 values \(min 0.00, max 255.00\) have no known image range"):
        score(images, images, metrics="fid", layout="NHW")


def test_progress_bars_for_the_long_metric_steps(capsys) -> None:
    """Issue 13: minutes passed silently after the extraction bars; bootstrap, KID and k-NN steps now
    show bars on stderr with progress=True, and none without."""
    real, fake = _features(40), _features(40, seed=1, shift=0.3)
    _quiet(real, fake, bootstrap=3, kid_subset_size=10, is_splits=2, progress=True)
    err = capsys.readouterr().err
    for step in ("FID bootstrap", "KID subsets", "KID bootstrap", "k-NN (k = 3, 5)", "k-NN bootstrap"):
        assert step in err
    _quiet(real, fake, bootstrap=3, kid_subset_size=10, is_splits=2)
    assert capsys.readouterr().err == ""
