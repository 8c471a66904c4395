"""Precision/recall and density/coverage: equal to the prdc package, analytic ties, blockwise, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fidkit.errors import InputError
from fidkit.prdc import density_coverage, knn_radii, prdc, precision_recall


def _peer(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    from prdc import compute_prdc

    return compute_prdc(real, fake, nearest_k=k)


@pytest.mark.peers
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("block_size", [None, 1, 37])
def test_equals_prdc_package(k: int, block_size: int | None, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(k)
    real, fake = rng.standard_normal((300, 16)), rng.standard_normal((250, 16)) * 1.2 + 0.2
    peer = _peer(real, fake, k)
    ours = prdc(real, fake, k, block_size=block_size)
    assert ours._asdict() == {key: float(v) for key, v in peer.items()}
    assert precision_recall(real, fake, k, block_size=block_size) == (peer["precision"], peer["recall"])
    assert density_coverage(real, fake, k, block_size=block_size) == (peer["density"], peer["coverage"])
    capsys.readouterr()


@pytest.mark.peers
def test_equals_prdc_package_with_ties_and_duplicates(capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(7)
    real = rng.integers(0, 4, (200, 3)).astype(float)  # many exact ties and duplicate points
    fake = rng.integers(0, 5, (150, 3)).astype(float)
    peer = _peer(real, fake, 3)
    assert prdc(real, fake, 3, block_size=16)._asdict() == {key: float(v) for key, v in peer.items()}
    capsys.readouterr()


@pytest.mark.peers
@pytest.mark.parametrize("tile", [1, 7, 64, 4096])
def test_column_tiles_equal_prdc_package(tile: int, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    """Distances in row x column tiles, the k smallest carried across tiles, ties and duplicate points
    split between tiles: the prdc package's numbers (one full N x N matrix) at every tile width."""
    import importlib

    monkeypatch.setattr(importlib.import_module("fidkit.prdc"), "COLUMN_TILE", tile)
    rng = np.random.default_rng(5)
    real = rng.integers(0, 4, (130, 3)).astype(float)
    fake = rng.integers(0, 5, (120, 3)).astype(float)
    for k in (1, 3, 6):
        peer = _peer(real, fake, k)
        assert prdc(real, fake, k, block_size=11)._asdict() == {key: float(v) for key, v in peer.items()}
        r = np.sort(np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1)), axis=1)[:, k]
        np.testing.assert_array_equal(knn_radii(real, k, block_size=11), r)
    capsys.readouterr()


@pytest.mark.peers
def test_equals_prdc_package_float32(capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(11)
    real = rng.standard_normal((200, 32)).astype(np.float32)  # as extractors return them
    fake = (rng.standard_normal((180, 32)) * 0.9).astype(np.float32)
    peer = _peer(real, fake, 5)
    assert prdc(real, fake, 5, block_size=50)._asdict() == {key: float(v) for key, v in peer.items()}
    capsys.readouterr()


def test_strict_inequality_at_the_radius() -> None:
    real = np.array([[0.0], [1.0], [3.0]])  # k=1 radii: 1, 1, 2
    assert knn_radii(real, 1).tolist() == [1.0, 1.0, 2.0]
    on_sphere = np.array([[-1.0], [-1.0]])  # at distance exactly 1 from the point 0 with radius 1
    assert precision_recall(real, on_sphere, k=1).precision == 0.0
    inside = np.array([[2.5], [2.5]])  # 0.5 from the point 3 with radius 2
    assert precision_recall(real, inside, k=1).precision == 1.0
    assert density_coverage(real, inside, k=1) == (1.0, pytest.approx(1 / 3))


def test_identical_sets() -> None:
    x = np.random.default_rng(4).standard_normal((50, 6))
    p, r, d, c = prdc(x, x, k=3)
    assert (p, r, c) == (1.0, 1.0, 1.0) and d >= 1.0


def test_bad_input() -> None:
    x = np.zeros((4, 2))
    with pytest.raises(InputError, match=r"^real: 4 images cannot have --k 4 nearest neighbours .*; pass --k 3 "
                                         r"or less \(k= in Python\)"):
        precision_recall(x, x, k=4)
    with pytest.raises(InputError, match=r"^real: 4 images cannot have --dc-k 5 nearest"):
        density_coverage(x, x)  # density/coverage's flag is --dc-k
    with pytest.raises(InputError, match="feature dimension"):
        density_coverage(x, np.zeros((6, 3)))
    bad = x.copy()
    bad[1, 1] = np.inf
    with pytest.raises(InputError, match="fake.*inf"):
        precision_recall(x, bad, k=1)
    with pytest.raises(InputError, match="block_size"):
        precision_recall(x, x, k=1, block_size=0)


def test_combined_follows_the_registry() -> None:
    """Issue 13: prdc() without k gives precision/recall at the registry's k = 3 and density/coverage at
    k = 5, as `fidkit score` does; with k given, all four at k (the prdc package's compute_prdc)."""
    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((120, 4)), rng.standard_normal((110, 4)) + 0.3
    out = prdc(real, fake)
    assert (out.precision, out.recall) == tuple(precision_recall(real, fake, k=3))
    assert (out.density, out.coverage) == tuple(density_coverage(real, fake, k=5))
    assert tuple(precision_recall(real, fake)) == tuple(precision_recall(real, fake, k=3))
    assert tuple(density_coverage(real, fake)) == tuple(density_coverage(real, fake, k=5))
    same_k = prdc(real, fake, 4)
    assert (same_k.precision, same_k.recall) == tuple(precision_recall(real, fake, k=4))
    assert (same_k.density, same_k.coverage) == tuple(density_coverage(real, fake, k=4))
    assert tuple(prdc(real, fake, 2, dc_k=6))[2:] == tuple(density_coverage(real, fake, k=6))


@pytest.mark.parametrize("block_size", [None, 5])
def test_radius_inclusive_counts_points_on_a_radius(block_size: int | None) -> None:
    """``radius_inclusive=True`` (StyleGAN, torch-fidelity, ADM: ``<=``) against a brute-force count from the
    full distance matrix, on integer points with many exact ties; the default ``<`` against the same count
    with ``<``, and the two differ here (the ties decide)."""
    rng = np.random.default_rng(11)
    real = rng.integers(0, 4, (60, 2)).astype(float)
    fake = rng.integers(0, 5, (50, 2)).astype(float)

    def brute(le: bool) -> tuple[float, float]:
        op = np.less_equal if le else np.less
        d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
        d_ff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
        d_rf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
        r_real, r_fake = np.sort(d_rr, axis=1)[:, 3], np.sort(d_ff, axis=1)[:, 3]
        return float(op(d_rf, r_real[:, None]).any(0).mean()), float(op(d_rf, r_fake[None, :]).any(1).mean())

    inclusive = precision_recall(real, fake, 3, block_size=block_size, radius_inclusive=True)
    strict = precision_recall(real, fake, 3, block_size=block_size)
    assert tuple(inclusive) == brute(True) and tuple(strict) == brute(False)
    assert inclusive != strict
