"""Generator evaluation: score a sampling function over several seeds, in batches, without writing images.

A generator is any callable ``fn(seeds) -> images``: ``seeds`` is a numpy int64 array (n,) and ``fn``
returns ``n`` images, image ``j`` drawn from ``seeds[j]`` alone — numpy or the runtime's own tensors
(torch on any device, tf, jax), NHWC / NCHW, uint8 or float on a declared or unambiguous range (the
rules of `fidkit.image_rules`, as for arrays). This is the convention of EDM's ``generate.py``, whose
``StackedRandomGenerator`` draws each image's noise from its own seed: the images, and so every score,
do not depend on how they are batched (``batch_size`` only sets how many are sampled and extracted
at once); `noise` builds such per-image noise for a numpy generator.

Run ``seed`` s of ``num`` images uses the per-image seeds ``s * num, ..., s * num + num - 1``
(`image_seeds`): run 0 is EDM's ``--seeds=0-{num-1}``, and runs with different seeds share no image.
Each batch goes through the extractor as it is sampled (tensors stay on the device; only features come
back); the statistics are streamed, and the feature rows are kept only when a metric needs them (KID,
precision/recall, IS's logits, bootstrap intervals). The real side is extracted once.

Results (`score_generator`, behind ``fidkit.score(real, generator=fn, ...)``): each seed's full result
as `fidkit.score` gives it, and per headline number the mean ± std over seeds (std with ddof 0, numpy's
``np.std``, as Mimicry reports its 3-seed scores), the minimum (EDM2's recommendation for FID: report
the minimum of several runs) and the maximum. ``quantize=True`` rounds every generated image to uint8
levels first, as saving it as a PNG would (the resize policy's ``quantize_input`` rule: values on the
declared range mapped to 0..255, rounded half to even, clipped), recorded in the settings.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FidkitWarning, InputError
from .extraction import Extractor
from .features import FeatureResult
from .stats import Stats

#: A generator: per-image seeds (n,) int64 -> n images (numpy or the runtime's tensors).
Generator = Callable[[np.ndarray], Any]

#: The flag named in generator errors (the Python spelling follows in parentheses).
FLAG = "--generator"


def image_seeds(seed: int, num: int) -> np.ndarray:
    """Returns the per-image seeds of run ``seed`` of ``num`` images: ``seed * num + arange(num)``, int64."""
    return np.int64(seed) * np.int64(num) + np.arange(num, dtype=np.int64)


def noise(seeds: np.ndarray, shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """Returns (len(seeds), *shape) standard normal noise, row ``j`` drawn from ``seeds[j]`` alone
    (``numpy.random.default_rng(seed)``), so a generator built on it does not depend on batching."""
    return np.stack([np.random.default_rng(int(s)).standard_normal(tuple(shape)).astype(dtype)
                     for s in np.asarray(seeds)])


def parse_seeds(seeds: Any) -> tuple[int, ...]:
    """Returns seeds as a tuple of distinct non-negative ints from an int, a sequence or ``"0,1,2"``.

    Raises `InputError` naming ``--seeds`` for anything else."""
    if isinstance(seeds, str):
        items: list[Any] = [s.strip() for s in seeds.split(",")]
    elif isinstance(seeds, (int, np.integer)) or not isinstance(seeds, (list, tuple, np.ndarray, range)):
        items = [seeds]
    else:
        items = list(seeds)
    out: list[int] = []
    for s in items:
        try:
            value = int(s)
            ok = not isinstance(s, (bool, float)) and value >= 0 and str(value) == str(s).strip()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"--seeds {seeds!r}: expected non-negative integer seeds, e.g. --seeds 0,1,2 "
                             f"(seeds=(0, 1, 2) in Python)")
        out.append(value)
    if not out or len(set(out)) != len(out):
        raise InputError(f"--seeds {seeds!r}: expected one or more distinct seeds, e.g. --seeds 0,1,2 "
                         f"(seeds=(0, 1, 2) in Python)")
    return tuple(out)


def load_generator(ref: str) -> Generator:
    """Returns the callable named by ``"package.module:attribute"`` or ``"path/to/file.py:attribute"``
    (the current folder is importable). Raises `InputError` naming ``--generator`` when it cannot be
    imported, has no such attribute, or is not callable."""
    if not isinstance(ref, str) or ":" not in ref:
        raise InputError(f"{FLAG} {ref!r}: expected 'package.module:attribute' or 'file.py:attribute'")
    where, _, attr = ref.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise InputError(f"{FLAG} {ref}: {path}: no such Python file")
            spec = importlib.util.spec_from_file_location(f"fidkit_generator_{abs(hash(path.resolve()))}", path)
            if spec is None or spec.loader is None:
                raise InputError(f"{FLAG} {ref}: {path} cannot be imported as a Python module")
            obj: Any = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(obj)
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path and "" not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                obj = importlib.import_module(where)
            finally:
                if added:
                    sys.path.remove(cwd)
    except InputError:
        raise
    except Exception as exc:  # the user's module failed to import: say so in one line
        raise InputError(f"{FLAG} {ref}: cannot import {where!r} ({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{FLAG} {ref}: {where!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    check_generator(obj, ref)
    return obj


def check_generator(fn: Any, name: str) -> None:
    """Raises `InputError` naming ``--generator`` unless ``fn`` is callable."""
    if not callable(fn):
        raise InputError(f"{FLAG} {name}: {type(fn).__name__} object is not callable; expected a function "
                         f"fn(seeds) -> images (generator= in Python)")


def _describe(fn: Any) -> str:
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return f"{mod}:{qual}" if mod and qual else repr(fn)


def sample(fn: Generator, ex: Extractor, num: int, seed: int, *, batch_size: int, rows: bool,
           spatial: bool, value_range: Any = None, layout: str | None = None, progress: bool = False,
           name: str | None = None) -> tuple[FeatureResult | Stats, Stats | None]:
    """Returns (the features of run ``seed``, or their statistics; sFID's spatial statistics or None).

    Calls ``fn`` on `image_seeds` in batches of ``batch_size`` and runs each batch through ``ex`` at
    once. ``rows``: keep feature rows and logits (else stream the statistics). Raises `InputError`
    naming ``--generator`` for a generator that raises, returns another number of images, or images
    that break `fidkit.image_rules`.
    """
    import sys as _sys

    from tqdm import tqdm

    from .pipeline import _outputs  # a user extractor's exception: one line naming --extractor
    from .sfid import Collector

    name = name or _describe(fn)
    col = Collector(ex, f"generated (seed {seed})", rows=rows, spatial=spatial)
    seeds = image_seeds(seed, num)
    with tqdm(total=num, unit="img", file=_sys.stderr, disable=not progress,
              desc=f"seed {seed}: {ex.name} ({ex.runtime})") as bar:
        for start in range(0, num, batch_size):
            batch = seeds[start:start + batch_size]
            try:
                images = fn(batch)
            except Exception as exc:
                raise InputError(f"{FLAG} {name}: raised {type(exc).__name__}: {exc} (called with "
                                 f"{len(batch)} seeds {batch[0]}..{batch[-1]})") from None
            shape = getattr(images, "shape", None)
            n = len(images) if isinstance(images, (list, tuple)) else (
                int(shape[0]) if shape is not None and len(shape) >= 3 else None)
            if n != len(batch):
                got = f"shape {tuple(shape)}" if shape is not None else f"a {type(images).__name__}"
                raise InputError(f"{FLAG} {name}: returned {got} for {len(batch)} seeds; expected "
                                 f"{len(batch)} images, (n, H, W, C) or (n, C, H, W), one per seed")
            out = _outputs(ex, images, layout=layout, value_range=value_range,
                             name=f"{FLAG} {name} (seed {seed}, images {start}..{start + len(batch) - 1})")
            col.add(out, (f"seed{seed}/{int(s)}" for s in batch))
            bar.update(len(batch))
    return col.result()


#: The headline numbers summarized over seeds: (result key, subkey or None, label).
_HEADLINES = (("fid", None, "fid"), ("sfid", None, "sfid"), ("kid", "mean", "kid"), ("is", "mean", "is"),
              ("pr", "precision", "precision"), ("pr", "recall", "recall"), ("dc", "density", "density"),
              ("dc", "coverage", "coverage"))


def summarize(per_seed: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Returns {number: {"mean", "std", "min", "max", "values"}} over the seeds' results (std: ddof 0,
    numpy's ``np.std``, as Mimicry reports its seeds; None for one seed)."""
    out: dict[str, dict[str, Any]] = {}
    for key, sub, label in _HEADLINES:
        if key not in per_seed[0]:
            continue
        values = [float(r[key] if sub is None else r[key][sub]) for r in per_seed]
        arr = np.asarray(values, dtype=np.float64)
        out[label] = {"mean": float(arr.mean()), "std": float(arr.std()) if len(arr) > 1 else None,
                      "min": float(arr.min()), "max": float(arr.max()), "values": values}
    return out


def score_generator(score: Callable[..., dict[str, Any]], real: Any, generator: Any, *, num: int,
                    seeds: Any, quantize: bool, metrics: Any, ex: Extractor, bootstrap: int | None,
                    batch_size: int, workers: int, progress: bool, value_range: Any, layout: str | None,
                    skip_bad: bool, spatial_real: Stats | None, **options: Any) -> dict[str, Any]:
    """Returns ``{"per_seed": [score's result + "seed"], "summary": `summarize`, "seeds", "num",
    "settings", "notes", "provenance", "n_real", "n_fake"}`` for ``generator`` against ``real``.

    ``score`` is `fidkit.score` (called once per seed on precomputed features or statistics, so every
    metric is computed exactly as for stored images); ``options`` are its metric options. ``real`` is
    extracted once (images, read by their own type and layout: decoded files are uint8), or used as
    given; ``value_range`` and ``layout`` describe the generator's images only.
    """
    from .inputs import check_inputs, classify
    from .metrics import DEFAULT_BOOTSTRAP, needs_features, parse_metrics
    from .sfid import image_operand

    metrics = parse_metrics(metrics)
    fn = load_generator(generator) if isinstance(generator, str) else generator
    name = generator if isinstance(generator, str) else _describe(fn)
    check_generator(fn, name)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise InputError(f"--num {num!r}: expected the number of images to generate per seed, an integer "
                         f">= 2 (num= in Python), e.g. --num 50000")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"--batch-size {batch_size!r}: expected a positive integer (batch_size= in Python)")
    seeds = parse_seeds(seeds)
    if bootstrap is None:
        bootstrap = DEFAULT_BOOTSTRAP
    want_sfid = "sfid" in metrics
    kinds, need_real, _ = check_inputs(real, np.zeros((2, 2)), metrics, bootstrap)
    need_fake = needs_features(metrics, "fake", bootstrap=bootstrap > 0)
    if kinds[0] == "images":
        # value_range and layout describe the generator's output; real is read by its own type
        op, spatial_real = image_operand(real, ex, "real", with_features=need_real, spatial=want_sfid,
                                         batch_size=batch_size, workers=workers, progress=progress,
                                         skip_bad=skip_bad)
        real = op.features if op.features is not None else op.stats
    elif want_sfid and spatial_real is None:
        raise InputError(f"real: sFID needs real's spatial statistics, and real is {classify(real)}; pass "
                         f"real images, or spatial={{'real': fidkit.sfid.spatial_stats(...)}} in Python")
    gen_ex = ex
    if quantize and not ex.policy.quantize_input:
        gen_ex = ex.with_policy(replace(ex.policy, quantize_input=True))
    per_seed: list[dict[str, Any]] = []
    for s in seeds:
        fake, spatial_fake = sample(fn, gen_ex, int(num), s, batch_size=int(batch_size), rows=need_fake,
                                    spatial=want_sfid, value_range=value_range, layout=layout,
                                    progress=progress, name=name)
        spatial = {"real": spatial_real, "fake": spatial_fake} if want_sfid else None
        with warnings.catch_warnings():
            if per_seed:  # the metrics' warnings (sample sizes, subset sizes) were given for the first seed
                warnings.simplefilter("ignore", FidkitWarning)
            res = score(real, fake, metrics, ex, bootstrap=bootstrap, batch_size=batch_size, workers=workers,
                        progress=progress, spatial=spatial, **options)
        per_seed.append({"seed": s, **res})
    first = per_seed[0]
    settings = {**first["settings"], "generator": {
        "name": name, "num": int(num), "seeds": list(seeds), "batch_size": int(batch_size),
        "image_seeds": "seed * num + i (image i of run seed)",
        "quantize": bool(quantize or ex.policy.quantize_input),
        "quantize_asked": bool(quantize), "std_ddof": 0}}
    notes = list(first["notes"])
    if quantize and ex.policy.quantize_input:
        notes.append(f"quantize: the resize policy {ex.policy.name} already rounds float input to uint8 "
                     f"levels, so quantize=True changed nothing")
    elif quantize:
        notes.append("generated images rounded to uint8 levels before extraction, as a saved PNG would be")
    notes.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} of {num} generated images each; mean ± "
                 "std over seeds (std with ddof 0, as Mimicry), and the minimum (EDM2's advice for FID)")
    return {"per_seed": per_seed, "summary": summarize(per_seed), "seeds": list(seeds), "num": int(num),
            "n_real": first["n_real"], "n_fake": int(num), "settings": settings, "notes": notes,
            "provenance": first["provenance"]}


__all__ = ["FLAG", "Generator", "check_generator", "image_seeds", "load_generator", "noise", "parse_seeds",
           "sample", "score_generator", "summarize"]
