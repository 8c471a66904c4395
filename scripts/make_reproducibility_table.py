"""Measures what each protocol difference does to the scores, on the shipped MNIST data with fidkit's MNIST
network, and prints the tables of docs/reproducibility.md (between its "measured" markers).

Everything runs on the torch runtime from ``fidkit.load_mnist()`` (the other runtimes agree to ~1e-5
relative, far below the 4 significant digits printed):

- real: the first ``n`` test digits; fake: the next ``n`` digits with Gaussian pixel noise (sigma 40 on
  0..255, clipped), a stand-in for an imperfect generator. Upscaled copies (64 x 64, Pillow bicubic,
  uint8) make the resize policies resize them back to 28 x 28 each its own way.
- resize: the MNIST network's normalisation with each protocol policy's resampling (library, filter,
  antialiasing, input and output quantisation, clipping);
- quantisation: float fake images (not rounded) with and without rounding to 8-bit levels first;
- covariance divisor n - 1 (pytorch-fid and most tools) against n (StyleGAN's metrics);
- sample size: FID of fake sub-samples against all of real, and the FID∞ fit (Chong & Forsyth 2020);
- KID: the subset conventions of fidkit, torch-fidelity, clean-fid and Mimicry on the same features;
- IS: 10 splits in file order against shuffled, for files listed class by class (sorted by label).

Usage: ``python scripts/make_reproducibility_table.py [--n 1000] [--write]``: prints the Markdown, or with
``--write`` replaces the block in docs/reproducibility.md. tests/test_audit.py checks the doc against
`measure` (``--n`` is the doc's size; the test runs the same size).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np

import fidkit
from fidkit.audit import DEFAULT_ROW, audit, infinity_points, protocol_fid
from fidkit.errors import FidkitWarning
from fidkit.protocols import get_protocol
from fidkit.resize import get_policy

DOC = Path(__file__).resolve().parent.parent / "docs" / "reproducibility.md"
BEGIN = "<!-- BEGIN measured: scripts/make_reproducibility_table.py --write regenerates this block -->"
END = "<!-- END measured -->"
N = 2000
#: digits per side of the resize comparison (six passes of upscaled images: the slow part)
N_RESIZE = 1000
RUNTIME = "torch"
#: the policies whose resampling is compared (each protocol's), with the MNIST network's normalisation
RESIZE_POLICIES = ("mnist", "clean", "legacy-tensorflow", "legacy-pytorch", "torchmetrics", "pil-bilinear")
UPSCALED = 64


def mnist_pair(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (real uint8 (n, 28, 28), fake float32 (n, 28, 28) on 0..255 before rounding, fake labels)."""
    x, y = fidkit.load_mnist()
    rng = np.random.default_rng(0)
    fake = np.clip(x[n:2 * n] + rng.normal(0.0, 40.0, (n, 28, 28)), 0.0, 255.0).astype(np.float32)
    return x[:n], fake, y[n:2 * n]


def upscale(images: np.ndarray, size: int = UPSCALED) -> np.ndarray:
    """Returns uint8 images resized to size x size with Pillow's bicubic (as a dataset at another size)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def _mnist_variant(name: str) -> fidkit.ResizePolicy:
    """Returns policy ``name``'s resampling with the MNIST network's mean/std (what the network expects)."""
    src, base = get_policy(name), get_policy("mnist")
    return dataclasses.replace(src, name=f"mnist+{name}", mean=base.mean, std=base.std,
                               description=f"{name}'s resampling, MNIST normalisation")


def measure(n: int = N) -> dict:
    """Returns every measured number of docs/reproducibility.md, computed on ``n`` real and ``n`` fake digits."""
    real, fake_float, fake_labels = mnist_pair(n)
    fake = np.rint(fake_float).astype(np.uint8)
    ex = fidkit.extractor("mnist", RUNTIME)
    out: dict = {"n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)
        # the audit's default row: FID with its interval, KID, IS, PR
        res = audit(real, fake, protocols=[], runtimes=RUNTIME, progress=False)
        row = next(r for r in res.rows if r.protocol == DEFAULT_ROW)
        out["audit"] = {"fid": row.fid, "low": row.fid_low, "high": row.fid_high, "kid": row.kid_mean,
                        "is": row.is_mean, "precision": row.precision, "recall": row.recall,
                        "provenance": row.provenance}
        fr, ff = ex.features(real), ex.features(fake)
        # resize: 64 x 64 copies, resampled to 28 x 28 by each policy
        m = min(n, N_RESIZE)
        up_r, up_f = upscale(real[:m]), upscale(fake[:m])
        out["n_resize"] = m
        out["resize"] = {}
        for name in RESIZE_POLICIES:
            e = ex.with_policy(_mnist_variant(name))
            out["resize"][name] = protocol_fid(e.features(up_r), e.features(up_f))
        out["resize_native"] = protocol_fid(fr[:m], ff[:m])
        # quantisation of float input
        unq = ex.features(fake_float, value_range=(0, 255))
        q = ex.with_policy(dataclasses.replace(get_policy("mnist"), name="mnist-quantized", quantize_input=True))
        out["quantize"] = {"float": protocol_fid(fr, unq),
                           "rounded": protocol_fid(fr, q.features(fake_float, value_range=(0, 255)))}
        # covariance divisor
        out["ddof"] = {s: {"n-1": protocol_fid(fr[:s], ff[:s], 1), "n": protocol_fid(fr[:s], ff[:s], 0)}
                       for s in sorted({100, 300, 1000, n}) if s <= n}
        # sample size and FID∞
        sizes = sorted({s for s in (100, 200, 500, 1000, n) if s <= n})
        out["infinity"] = infinity_points(fr, ff, sizes, ddof=1, seed=0)
        # KID subset conventions on the same features
        out["kid"] = _kid_conventions(fr, ff)
        # IS: files listed class by class
        order = np.argsort(fake_labels, kind="stable")
        logits = ex.logits(fake)[order]
        out["is"] = {"given": fidkit.inception_score(logits, 10, shuffle_seed=None),
                     "shuffled": fidkit.inception_score(logits, 10, shuffle_seed=2020)}
    return out


def _kid_conventions(fr: np.ndarray, ff: np.ndarray) -> dict:
    """Returns {convention: (mean, std)} of KID on the same features under each tool's subset rules."""
    n = min(len(fr), len(ff))
    out = {}
    for label, proto in (("fidkit default", None), ("torch-fidelity", "torch-fidelity"),
                         ("clean-fid", "clean-fid"), ("Mimicry", "mimicry")):
        if proto is None:
            size, subsets, seed, first_real = min(1000, n), 100, 0, True
        else:
            k = get_protocol(proto).kid
            size = {"fixed": k.subset_size, "capped": min(n, k.subset_size),
                    "n_over_subsets": min(k.subset_size, n // k.subsets)}[k.subset_size_rule]
            subsets, seed, first_real = k.subsets, (k.seed if k.seed is not None else 0), k.first_draw == "real"
            if size > n:
                out[label] = None
                continue
        a, b = (fr, ff) if first_real else (ff, fr)
        out[label] = (*fidkit.kid(a, b, subsets=subsets, subset_size=size, seed=seed), subsets, size)
    return out


def _f(v: float, digits: int = 4) -> str:
    return f"{v:.{digits}g}"


def markdown(m: dict) -> str:
    """Returns the Markdown block of measured tables for `measure`'s output."""
    n = m["n"]
    a = m["audit"]
    lines = [BEGIN, "",
             f"Measured on the shipped MNIST test digits with fidkit's MNIST network (torch runtime): real = "
             f"the first {n} digits, fake = the next {n} with Gaussian pixel noise (σ = 40 of 255).", "",
             f"**The reference point.** `fidkit audit` default row: FID **{_f(a['fid'])}**, 95% bootstrap "
             f"interval [{_f(a['low'])}, {_f(a['high'])}] (width {_f(a['high'] - a['low'], 3)}); KID {_f(a['kid'])}, "
             f"IS {_f(a['is'])}, precision {a['precision']:.3f}, recall {a['recall']:.3f}. A choice that moves "
             f"FID by more than the interval's half-width changes the number more than resampling the "
             f"images does. The row's provenance line, as the audit writes it:", "", "```",
             a["provenance"], "```", "",
             f"**Resize** ({m['n_resize']} digits per side saved at {UPSCALED}×{UPSCALED} (Pillow bicubic, "
             f"uint8), resampled back to 28×28 by each policy's kernel; MNIST normalisation throughout):", "",
             "| resampling (policy) | FID | vs `mnist` |", "|---|---|---|"]
    base = m["resize"]["mnist"]
    for name, v in m["resize"].items():
        lines.append(f"| `{name}` | {_f(v)} | {100 * (v - base) / base:+.1f}% |")
    spread = max(m["resize"].values()) - min(m["resize"].values())
    lines += [f"| (native 28×28, no resize) | {_f(m['resize_native'])} | "
              f"{100 * (m['resize_native'] - base) / base:+.1f}% |", "",
              f"Spread between the resize policies: {_f(spread)}, {spread / ((a['high'] - a['low']) / 2):.1f} times "
              f"the half-width of the reference interval.", "",
              "**Quantisation** (fake as float32 on 0..255, not rounded):", "",
              "| fake input | FID |", "|---|---|",
              f"| float, used as is (`quantize_input` off) | {_f(m['quantize']['float'], 7)} |",
              f"| rounded to 8-bit levels first (`quantize_input` on, as a saved PNG) | "
              f"{_f(m['quantize']['rounded'], 7)} |", "",
              f"Difference: {100 * (m['quantize']['rounded'] - m['quantize']['float']) / m['quantize']['float']:+.4f}%.",
              "", "**Covariance divisor** (same features; first m of each side):", "",
              "| m | FID, cov / (m − 1) | FID, cov / m (StyleGAN) | difference |", "|---|---|---|---|"]
    for size, d in m["ddof"].items():
        lines.append(f"| {size} | {_f(d['n-1'], 6)} | {_f(d['n'], 6)} | {100 * (d['n'] - d['n-1']) / d['n-1']:+.2f}% |")
    inf = m["infinity"]
    lines += ["", f"**Sample size** (fake sub-samples against all {n} real; fit in 1/N):", "",
              "| N fake | " + " | ".join(str(s) for s in inf["sizes"]) + " | FID∞ |",
              "|---|" + "---|" * (len(inf["sizes"]) + 1),
              "| FID | " + " | ".join(_f(v) for v in inf["fids"]) + f" | {_f(inf['fid_infinity'])} |", "",
              "**KID subset conventions** (same features):", "",
              "| convention | subsets × size | KID mean | std over subsets |", "|---|---|---|---|"]
    for label, v in m["kid"].items():
        if v is None:
            lines.append(f"| {label} | — | needs ≥ 1000 per side | |")
        else:
            mean, std, subsets, size = v
            lines.append(f"| {label} | {subsets} × {size} | {_f(mean)} | {_f(std, 3)} |")
    lines += ["", "**IS split order** (the fake digits listed class by class, as files in class folders are):", "",
              "| order | IS (10 splits) |", "|---|---|",
              f"| file order (openai/improved-gan, TTUR, StyleGAN, Mimicry) | {_f(m['is']['given'][0])} ± "
              f"{_f(m['is']['given'][1], 2)} |",
              f"| shuffled, RandomState(2020) (torch-fidelity, fidkit) | {_f(m['is']['shuffled'][0])} ± "
              f"{_f(m['is']['shuffled'][1], 2)} |", "", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """Returns ``text`` with its measured block (BEGIN to END markers) replaced by ``block``."""
    i, j = text.index(BEGIN), text.index(END) + len(END)
    return text[:i] + block + text[j:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=N, help=f"digits per side (default {N}, the doc's)")
    parser.add_argument("--write", action="store_true", help="replace the block in docs/reproducibility.md")
    args = parser.parse_args(argv)
    block = markdown(measure(args.n))
    if args.write:
        DOC.write_text(replace_block(DOC.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
