"""Computes reference_stats/mnist-{train,test}.npz under the ``mnist`` extractor, and the noise floor.

The noise floor goes to README.md (a table) and noise_floor.json (the value for each part).

    python scripts/make_reference_stats.py --data ../shared/data/mnist [--runtime torch]

The noise floor is what the metrics give between two samples of the *same* distribution: the six
disjoint 10,000-image parts of the training set (in file order) each scored against the 10,000 test
images (FID, KID, precision/recall, density/coverage), and the Inception Score of the test set. Every
metric uses its registered defaults (`fidkit.metrics.METRICS`), as ``fidkit score`` does: precision/recall
at k = 3, density/coverage at k = 5, IS rows shuffled with seed 2020 before the 10 splits. A
generative model cannot be told apart from real MNIST by a score inside this range.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fidkit._atomic import atomic_path
from fidkit.extraction import Extractor, extractor
from fidkit.mnist_data import load_mnist, to_rgb
from fidkit.stats import Provenance, Stats, StatsAccumulator

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "reference_stats"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
PART = 10000
BATCH = 1000

#: Description recorded in each file's provenance.
DESCRIPTIONS = {
    "train": "MNIST training set, all 60,000 images (LeCun et al.), as 28x28 grayscale replicated to RGB",
    "test": "MNIST test set, all 10,000 images (LeCun et al.), as 28x28 grayscale replicated to RGB",
}


def extract(ex: Extractor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (features, logits) of uint8 (N, 28, 28) images, in batches of 1000."""
    feats, logits = [], []
    for i in range(0, len(images), BATCH):
        out = ex(to_rgb(images[i:i + BATCH]))
        feats.append(np.asarray(out["features"], dtype=np.float64))
        logits.append(np.asarray(out["logits"], dtype=np.float64))
    return np.concatenate(feats), np.concatenate(logits)


def split_stats(ex: Extractor, features: np.ndarray, split: str) -> Stats:
    """Returns the Stats of one split's features, with the extractor's provenance and a description."""
    acc = StatsAccumulator(Provenance.from_extractor(ex, description=DESCRIPTIONS[split]))
    for i in range(0, len(features), BATCH):
        acc.update(features[i:i + BATCH])
    return acc.stats()


def noise_floor(train_f: np.ndarray, test_f: np.ndarray, test_logits: np.ndarray,
                train_logits: np.ndarray) -> dict[str, list[float] | tuple[float, float]]:
    """Returns each metric's values between the six 10k training parts and the test set, and the IS."""
    from fidkit.frechet import frechet_distance_features
    from fidkit.inception_score import inception_score
    from fidkit.kid import kid
    from fidkit.metrics import METRICS
    from fidkit.prdc import prdc

    rows: dict[str, list[float]] = {k: [] for k in ("fid", "kid", "precision", "recall", "density",
                                                    "coverage")}
    for p in range(len(train_f) // PART):
        part = train_f[p * PART:(p + 1) * PART]
        rows["fid"].append(frechet_distance_features(part, test_f))
        rows["kid"].append(kid(part, test_f)[0])
        pr = prdc(test_f, part)  # each pair at its registered k: precision/recall 3, density/coverage 5
        for key in ("precision", "recall", "density", "coverage"):
            rows[key].append(float(getattr(pr, key)))
    result: dict[str, list[float] | tuple[float, float]] = dict(rows)
    result["is_test"] = inception_score(test_logits)
    result["is_train"] = inception_score(train_logits)
    result["settings"] = {"pr_k": METRICS["pr"].defaults["k"], "dc_k": METRICS["dc"].defaults["k"],
                          "is_splits": METRICS["is"].defaults["splits"],
                          "is_shuffle_seed": METRICS["is"].defaults["shuffle_seed"]}
    return result


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temp file beside ``path`` and renames it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _summary(values: list[float], fmt: str) -> str:
    v = np.asarray(values)
    return (f"{format(v.mean(), fmt)} ± {format(v.std(ddof=1), fmt)} "
            f"({format(v.min(), fmt)} – {format(v.max(), fmt)})")


def readme(stats: dict[str, Stats], floor: dict, command: str) -> str:
    """Returns README.md for reference_stats/: files, provenance and the noise-floor table."""
    p = stats["test"].provenance
    lines = [
        "# Reference statistics: MNIST under fidkit's `mnist` extractor",
        "",
        f"Written by `{command}`; do not edit by hand (tests/test_reference_stats.py recomputes them).",
        "",
        "| file | images | extractor | weights SHA-256 | resize policy | input | runtime |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("train", "test"):
        s = stats[split]
        lines.append(f"| `mnist-{split}.npz` | {s.n:,} | {p.extractor} | `{p.weights_sha256[:16]}…` | "
                     f"{p.resize_policy} | {p.input_size} | {s.provenance.runtime} |")
    nparts = len(floor["fid"])
    is_mean, is_std = floor["is_test"]
    tr_mean, tr_std = floor["is_train"]
    # files written before the settings were recorded used k = 5 for all four and unshuffled IS splits
    st = floor.get("settings", {"pr_k": 5, "dc_k": 5, "is_splits": 10, "is_shuffle_seed": None})
    order = (f"rows shuffled with seed {st['is_shuffle_seed']} first, as torch-fidelity" if
             st["is_shuffle_seed"] is not None else "consecutive splits in file order")
    lines += [
        "",
        "Each file holds `mu` (128,), `sigma` (128, 128, divided by n - 1), `n` and the provenance "
        "(`fidkit.stats.load`; `mu`/`sigma` are readable by pytorch-fid-style tools too). The features "
        "are the classifier's 128-d `fc1` embedding (see `fidkit/archs/mnist.py` and `docs/mnist.md`).",
        "",
        "## Noise floor",
        "",
        f"Real against real: each of the {nparts} disjoint 10,000-image parts of the training set (in "
        "file order) scored against the 10,000 test images. Mean ± standard deviation over the parts "
        "(min – max). A model whose samples score inside these ranges cannot be told from real MNIST "
        "by that metric at 10k samples; differences smaller than the spread are noise.",
        "",
        "| metric | value (10k train part vs test) | definition |",
        "|---|---|---|",
        f"| FID | {_summary(floor['fid'], '.3f')} | Heusel et al. 2017 |",
        f"| KID | {_summary(floor['kid'], '.4g')} | Bińkowski et al. 2018: unbiased MMD², kernel "
        "(x·y/d + 1)³, 100 subsets of 1000 |",
        f"| precision | {_summary(floor['precision'], '.4f')} | Kynkäänniemi et al. 2019, k = {st['pr_k']} |",
        f"| recall | {_summary(floor['recall'], '.4f')} | Kynkäänniemi et al. 2019, k = {st['pr_k']} |",
        f"| density | {_summary(floor['density'], '.4f')} | Naeem et al. 2020, k = {st['dc_k']} |",
        f"| coverage | {_summary(floor['coverage'], '.4f')} | Naeem et al. 2020, k = {st['dc_k']} |",
        "",
        f"Inception Score with the classifier's 10 logits (Salimans et al. 2016, {st['is_splits']} splits, "
        f"{order}): "
        f"test set {is_mean:.4f} ± {is_std:.4f}; training set {tr_mean:.4f} ± {tr_std:.4f} "
        "(at most 10, the number of classes; a perfect, balanced classifier gives about 10).",
        "",
        "Two caveats: the parts are consecutive blocks of the training file, not random draws, and "
        "the classifier was fitted to the training set, so training and test digits are not quite "
        "alike to it; both can widen these real-vs-real numbers. KID's cubic kernel grows up to the "
        "sixth power of the feature scale, so its values "
        "under this extractor are not on Inception's scale (docs/mnist.md). The raw values per part are "
        "in `noise_floor.json`.",
        "",
        "These numbers belong to this extractor (`mnist`, these weights, this resize policy): an FID "
        "under Inception or under another MNIST classifier is on a different scale and not comparable "
        "(docs/mnist.md shows why).",
        "",
        "Published statistics of other tools (TTUR, clean-fid, the ADM evaluator's reference batches), by "
        "name, with URLs and each digest's source: [published.md](published.md) (`fidkit refstats "
        "list|get|verify`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with the four MNIST IDX files")
    ap.add_argument("--runtime", default="torch", help="runtime computing the features")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ex = extractor("mnist", runtime=args.runtime)
    x_train, _ = load_mnist("train", args.data)
    x_test, _ = load_mnist("test", args.data)
    train_f, train_l = extract(ex, x_train)
    test_f, test_l = extract(ex, x_test)
    stats = {"train": split_stats(ex, train_f, "train"), "test": split_stats(ex, test_f, "test")}
    for split, s in stats.items():
        s.save(out / f"mnist-{split}.npz")
    floor = noise_floor(train_f, test_f, test_l, train_l)
    write_atomic(out / "noise_floor.json", json.dumps(floor, indent=1) + "\n")
    cmd = "python scripts/make_reference_stats.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_atomic(out / "README.md", readme(stats, floor, cmd.strip()))
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
