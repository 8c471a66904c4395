"""KID: torch-fidelity on identical subsets, a closed form for the linear kernel, a loop estimator, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fidkit.errors import InputError
from fidkit.kid import kid, kid_subset_values, mmd2_unbiased


@pytest.mark.peers
def test_matches_torch_fidelity() -> None:
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 32)), rng.standard_normal((250, 32)) * 1.1 + 0.1
    peer = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=20,
                                  kid_subset_size=100, verbose=False, rng_seed=2020, kid_kernel="poly",
                                  kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                  kid_kernel_poly_coef0=1)
    mean, std = kid(x, y, subsets=20, subset_size=100, seed=2020)
    assert mean == pytest.approx(peer["kernel_inception_distance_mean"], rel=1e-12)
    assert std == pytest.approx(peer["kernel_inception_distance_std"], rel=1e-10)


def _loop_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    def k(a, b):
        return (gamma * float(sum(p * q for p, q in zip(a, b, strict=True))) + coef0) ** degree

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_estimator_against_loops() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((7, 4)) + 0.5
    assert mmd2_unbiased(x, y, degree=2, gamma=0.3, coef0=0.5) == pytest.approx(
        _loop_mmd2(x, y, 2, 0.3, 0.5), rel=1e-12)
    assert mmd2_unbiased(x, y) == pytest.approx(_loop_mmd2(x, y, 3, 1 / 4, 1.0), rel=1e-12)


def test_linear_kernel_closed_form() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 5)), rng.standard_normal((20, 5)) + 1.0
    m = 20
    sx, sy = x.sum(0), y.sum(0)
    closed = ((sx @ sx - (x * x).sum()) / (m * (m - 1)) + (sy @ sy - (y * y).sum()) / (m * (m - 1))
              - 2 * (sx @ sy) / m**2) / 5
    values = kid_subset_values(x, y, subsets=3, subset_size=m, degree=1, coef0=0.0)
    assert values == pytest.approx(np.full(3, closed), rel=1e-12)


def test_same_distribution_near_zero_and_seeded() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same, std = kid(x, y, subsets=10, subset_size=200)
    shifted, _ = kid(x, y + 0.5, subsets=10, subset_size=200)
    assert abs(same) < 0.1 * shifted
    assert kid(x, y, subsets=10, subset_size=200) == (same, std)
    assert kid(x, y, subsets=10, subset_size=200, seed=1) != (same, std)


def test_bad_input() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(InputError, match=r"^features1: 10 images, fewer than KID's --subset-size 20; pass "
                                         r"--subset-size 10 or fewer \(subset_size= in Python"):
        kid(x, x, subset_size=20)
    with pytest.raises(InputError, match=r"^fake: 10 images, fewer than KID's --subset-size 20"):
        kid(np.zeros((30, 3)), x, subset_size=20, labels=("real", "fake"))
    with pytest.raises(InputError, match="feature dimension 3 but features2 has 4"):
        kid(x, np.zeros((10, 4)), subset_size=5)
    with pytest.raises(InputError, match="gamma"):
        kid(x, x, subset_size=5, gamma=-1.0)
    with pytest.raises(InputError, match="subsets"):
        kid(x, x, subsets=0, subset_size=5)


def test_subsets_vary() -> None:
    """Issue 12.6: a subset as large as both samples is the whole sample every time, so KID's std is
    rounding (1e-16), not an uncertainty; `subsets_vary` says so."""
    from fidkit.kid import subsets_vary

    assert not subsets_vary(50, 50, 100, 50)
    assert not subsets_vary(500, 500, 1, 100)
    assert subsets_vary(50, 60, 100, 50) and subsets_vary(60, 60, 2, 50)
    x = np.random.default_rng(0).standard_normal((50, 3))
    assert kid(x, x + 1.0, subsets=5, subset_size=50)[1] < 1e-12


def test_numbers_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    """Subsets run one per core (issue 13); the draws are made in order first, so one core or several
    give the same values."""
    import fidkit._threads as threads
    from fidkit.bootstrap import bootstrap_kid

    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((70, 5)) + 0.2
    monkeypatch.setattr(threads, "cores", lambda: 3)
    many = kid_subset_values(x, y, subsets=7, subset_size=20), bootstrap_kid(x, y, n_boot=4, subsets=3,
                                                                            subset_size=20)
    monkeypatch.setattr(threads, "cores", lambda: 1)
    one = kid_subset_values(x, y, subsets=7, subset_size=20), bootstrap_kid(x, y, n_boot=4, subsets=3,
                                                                           subset_size=20)
    assert np.array_equal(many[0], one[0]) and many[1] == one[1]


class _Identity:
    """torchmetrics' ``feature=`` module that returns its input: KID on the given feature rows."""

    def __new__(cls):
        import torch

        class Identity(torch.nn.Module):
            def forward(self, x):
                return x

        return Identity()


@pytest.mark.peers
@pytest.mark.parametrize(("seed", "n1", "n2", "subsets", "size"), [(11, 9, 7, 20, 5), (0, 40, 33, 6, 33)])
def test_torch_rng_reproduces_torchmetrics(seed: int, n1: int, n2: int, subsets: int, size: int) -> None:
    """rng='torch': torchmetrics' KernelInceptionDistance run after torch.manual_seed(seed), on the same
    float64 features; fidkit's numpy draws give another number."""
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(seed + 3)
    real, fake = rng.normal(1.0, 0.5, size=(n1, 16)), rng.normal(1.2, 0.6, size=(n2, 16))
    metric = KernelInceptionDistance(feature=_Identity(), subsets=subsets, subset_size=size)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    torch.manual_seed(seed)
    tm_mean, tm_std = (float(v) for v in metric.compute())
    before = torch.random.get_rng_state()
    mean, std = kid(real, fake, subsets=subsets, subset_size=size, seed=seed, rng="torch")
    assert torch.equal(torch.random.get_rng_state(), before)  # a private generator: the global one untouched
    assert mean == pytest.approx(tm_mean, rel=1e-12, abs=1e-15)
    assert std == pytest.approx(tm_std, rel=1e-9, abs=1e-15)
    assert kid(real, fake, subsets=subsets, subset_size=size, seed=seed)[0] != pytest.approx(tm_mean, rel=1e-9)


def test_unknown_rng_and_missing_torch_are_input_errors(monkeypatch) -> None:
    import builtins

    x = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(InputError, match="rng must be one of numpy, torch"):
        kid(x, x + 1, subsets=2, subset_size=5, rng="jax")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(InputError, match="torch is not installed"):
        kid(x, x + 1, subsets=2, subset_size=5, rng="torch")
