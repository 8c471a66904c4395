"""The jax runtime pads a smaller last batch up to the compiled size when a compile would cost more."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_runtime, tolerance

import fidkit
from fidkit.backends.jax.network import BatchPadding


def test_padding_pays_only_when_a_compile_costs_more_than_the_padded_images() -> None:
    p = BatchPadding()
    p.record(8, 5.0)                 # first call of size 8: compile + run
    assert p.target(3) == 3          # no run time measured yet: nothing to weigh
    p.record(8, 1.0)                 # compiled: the run alone; so the compile took 4 s
    assert p.compile_s == pytest.approx(4.0)
    assert p.target(3) == 8          # 5/8 of a 1 s run < 4 s of compiling
    assert p.target(8) == 8 and p.target(16) == 16
    slow = BatchPadding()
    slow.record(8, 12.0)
    slow.record(8, 10.0)             # 2 s compile, 10 s per batch: 3 images pad 6.25 s of work
    assert slow.target(3) == 3
    slow.record(3, 3.0)
    assert slow.target(3) == 3       # compiled now: never padded again


def test_padded_last_batch_gives_the_features_of_its_own_images() -> None:
    require_runtime("jax")
    ex = fidkit.extractor("mnist", runtime="jax")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (11, 28, 28, 3)).astype(np.float32)
    padding = ex.network.padding
    full = [ex.features(images[:4]), ex.features(images[4:8])]
    padding.compile_s = 1e9          # force the padding, whatever this machine's timings
    last = ex.features(images[8:])
    assert padding.sizes == {4} and last.shape == (3, ex.feature_dim)
    ref = fidkit.extractor("mnist", runtime="numpy").features(images)
    np.testing.assert_allclose(np.concatenate(full + [last]), ref, rtol=0,
                               atol=tolerance("features", "vs_float64") * float(ref.std()))
