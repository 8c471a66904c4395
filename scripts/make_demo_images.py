"""Writes the demo's two image sets: the shipped MNIST test digits, and a degraded copy of them.

``demo/real.npy``: the 10,000 MNIST test digits shipped in the package, uint8 (N, 28, 28).
``demo/fake.npy``: the same digits blurred (Gaussian, sigma 1 px) and with additive Gaussian noise
(std 24 on the 0..255 scale), seed 0, rounded to uint8 — a stand-in for a mediocre generator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from fidkit._atomic import atomic_path
from fidkit.mnist_data import load_mnist


def degrade(images: np.ndarray, seed: int = 0, sigma: float = 1.0, noise: float = 24.0) -> np.ndarray:
    """Returns blurred, noisy uint8 copies of uint8 (N, H, W) digits."""
    rng = np.random.default_rng(seed)
    blurred = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma))
    noisy = blurred + rng.normal(0.0, noise, size=images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="demo", help="output folder (default: demo)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real, _ = load_mnist("test")
    _save(out / "real.npy", real)
    _save(out / "fake.npy", degrade(real))
    print(f"wrote {out / 'real.npy'} and {out / 'fake.npy'}: {len(real)} digits each")


if __name__ == "__main__":
    main()
