"""The ``fidkit`` command line: returns a process exit code (0 done, 2 user error, 130 interrupted).

Every subcommand reads statistics (.npz), features (.npy / .npz) or images (folder, zip, array file) and
prints human text, or JSON with ``--json``; progress and notes go to stderr. Errors fidkit raises on
purpose are printed as one line ``fidkit: <message>``, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import FidkitError, FidkitWarning, InputError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    return p


def _pipeline() -> argparse.ArgumentParser:
    from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("images -> features")
    g.add_argument("--extractor",
                   help="registered extractor name or 'package.module:attribute' (default: mnist)")
    g.add_argument("--runtime", choices=("torch", "tf", "jax", "numpy"),
                   help="runtime that computes the network (default: first installed)")
    g.add_argument("--weights", metavar="FILE", help="weights file to use instead of the official one")
    g.add_argument("--resize", metavar="POLICY",
                   help="resize policy (default: the extractor's canonical policy)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N, or auto (a GPU when one is visible; default: cpu)")
    g.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N")
    g.add_argument("--workers", type=_positive, default=DEFAULT_WORKERS, metavar="N",
                   help="decode threads")
    g.add_argument("--range", metavar="LOW,HIGH", dest="value_range",
                   help="value range of float images: 0,255 or 0,1 or -1,1 (default: inferred when "
                        "unambiguous)")
    g.add_argument("--layout", choices=("NHWC", "NCHW", "NHW", "HWC", "CHW"),
                   help="axis order of image arrays, when their shape does not tell")
    g.add_argument("--skip-bad", action="store_true", help="skip unreadable image files, counting them")
    g.add_argument("--allow-mismatch", action="store_true",
                   help="compare statistics computed under different extractors/weights/resize policies")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


class _Context:
    """The extractor and pipeline settings of one invocation; builds the extractor only if images come."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._extractor: Any = None

    def extractor(self) -> Any:
        if self._extractor is None:
            from .pipeline import _as_extractor

            a = self.args
            ex = _as_extractor(a.extractor or "mnist", a.runtime, a.weights, a.device, a.resize)
            how = ("as asked" if a.resize and ex.policy.name == a.resize else
                   "the extractor's canonical policy" if ex.policy.name == getattr(ex.spec, "policy", None)
                   else "the model's own")
            print(f"fidkit: extractor {ex.name} on {ex.runtime} ({ex.device}), resize policy "
                  f"{ex.policy.name} ({how})", file=sys.stderr)
            self._extractor = ex
        return self._extractor

    def _warn_unused(self, kinds: Sequence[str]) -> None:
        """Warns when options that decide how images become features were given but no input is images:
        statistics and features keep the extractor, weights and policy they were computed with."""
        a = self.args
        given = [f"--{k} {getattr(a, k)}" for k in ("extractor", "runtime", "weights", "resize") if getattr(a, k)]
        if given and "images" not in kinds:
            warnings.warn(f"{', '.join(given)}: no effect, no input is images (statistics and features were "
                          f"computed with their own extractor, weights and resize policy: see their "
                          f"provenance)", FidkitWarning, stacklevel=2)

    def pipe(self) -> dict[str, Any]:
        a = self.args
        return {"batch_size": a.batch_size, "workers": a.workers, "progress": a.progress,
                "value_range": a.value_range, "layout": a.layout, "skip_bad": a.skip_bad}

    def operand(self, value: str, label: str, *, with_features: bool) -> Any:
        from .inputs import classify, operand

        kind = classify(value)
        self._warn_unused([kind])
        ex = self.extractor() if kind == "images" else "mnist"
        return operand(value, ex, label, with_features=with_features, **self.pipe())

    def score(self, real: str, fake: str, metrics: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        from .inputs import check_inputs
        from .scoring import score

        kinds, _, _ = check_inputs(real, fake, metrics, kwargs.get("bootstrap", 0))
        self._warn_unused(kinds)
        ex = self.extractor() if "images" in kinds else "mnist"
        return score(real, fake, metrics, ex, allow_mismatch=self.args.allow_mismatch, **self.pipe(),
                     **kwargs)


def _emit(args: argparse.Namespace, payload: dict[str, Any], lines: list[str]) -> None:
    out = sys.stdout
    if args.json:
        out.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    else:
        out.write("\n".join(lines) + "\n")


def _lines(result: dict[str, Any]) -> list[str]:
    lines = []
    intervals = result.get("intervals", {})

    def ci(key: str, fmt: str = ".6g") -> str:
        iv = intervals.get(key)
        return f"  [{iv['low']:{fmt}}, {iv['high']:{fmt}}] {iv['level']:.0%} CI" if iv else ""

    if "fid" in result:
        lines.append(f"FID        {result['fid']:.6g}{ci('fid')}")
    if "kid" in result:
        lines.append(f"KID        {result['kid']['mean']:.6g} ± {result['kid']['std']:.3g}{ci('kid')}")
    if "is" in result:
        lines.append(f"IS         {result['is']['mean']:.6g} ± {result['is']['std']:.3g}")
    if "pr" in result:
        lines.append(f"precision  {result['pr']['precision']:.4f}{ci('precision', '.4f')}")
        lines.append(f"recall     {result['pr']['recall']:.4f}{ci('recall', '.4f')}")
    if "dc" in result:
        lines.append(f"density    {result['dc']['density']:.4f}{ci('density', '.4f')}")
        lines.append(f"coverage   {result['dc']['coverage']:.4f}{ci('coverage', '.4f')}")
    def count(v: Any) -> str:
        return "unknown" if v is None else str(v)

    n = f"n = {count(result.get('n_real'))} real, {count(result.get('n_fake'))} fake" if "n_real" in result else ""
    prov = result.get("provenance", {})
    lines.append(f"({n}; extractor {prov.get('extractor', 'unknown')}, resize policy "
                 f"{prov.get('resize_policy', 'unknown')})")
    return lines


def _cmd_metric(metrics: tuple[str, ...]):
    def run(args: argparse.Namespace) -> int:
        kwargs: dict[str, Any] = {}
        for name in ("kid_subsets", "kid_subset_size", "k"):
            if getattr(args, name, None) is not None:
                kwargs[name] = getattr(args, name)
        result = _Context(args).score(args.real, args.fake, metrics, **kwargs)
        _emit(args, result, _lines(result))
        return 0
    return run


def _cmd_score(args: argparse.Namespace) -> int:
    ctx = _Context(args)
    kwargs = {"kid_subsets": args.kid_subsets, "kid_subset_size": args.kid_subset_size,
              "is_splits": args.is_splits, "k": args.k, "dc_k": args.dc_k, "bootstrap": args.bootstrap,
              "level": args.level, "seed": args.seed}
    result = ctx.score(args.real, args.fake, args.metrics, **kwargs)
    _emit(args, result, _lines(result))
    return 0


def _cmd_is(args: argparse.Namespace) -> int:
    from .inception_score import inception_score

    op = _Context(args).operand(args.input, "input", with_features=True)
    mean, std = inception_score(op.need_logits("IS"), splits=args.is_splits)
    result = {"is": {"mean": float(mean), "std": float(std)}, "n": op.n,
              "provenance": json.loads(op.provenance.to_json())}
    _emit(args, result, [f"IS         {mean:.6g} ± {std:.3g}",
                         f"(n = {op.n}; extractor {op.provenance.extractor})"])
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    op = _Context(args).operand(args.input, "input", with_features=False)
    stats = op.get_stats()
    path = stats.save(args.output)
    p = stats.provenance
    result = {"output": str(path), "n": stats.n, "dim": stats.dim, "provenance": json.loads(p.to_json())}
    _emit(args, result, [f"wrote {path}: n = {stats.n}, d = {stats.dim}, extractor {p.extractor}, "
                         f"resize policy {p.resize_policy}"])
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from .inputs import classify

    if classify(args.input) != "images":
        raise InputError(f"{args.input}: `fidkit features` needs images (folder, zip or image array), "
                         f"and this is already {classify(args.input)}")
    op = _Context(args).operand(args.input, "input", with_features=True)
    res = op.features
    path = res.save(args.output)
    result = {"output": str(path), "n": len(res.features), "dim": int(res.features.shape[1]),
              "skipped": res.skipped, "provenance": json.loads(res.provenance.to_json())}
    lines = [f"wrote {path}: {len(res.features)} x {res.features.shape[1]} features"
             + (f", {len(res.skipped)} unreadable files skipped" if res.skipped else "")]
    _emit(args, result, lines)
    return 0


def _cmd_extractors(args: argparse.Namespace) -> int:
    out = sys.stdout
    from .registry import available_extractors, get_spec, runtime_installed

    rows, lines = [], []
    for name in available_extractors():
        spec = get_spec(name)
        runtimes = [rt for rt in spec.builders if runtime_installed(rt)]
        rows.append({"name": name, "feature_dim": spec.feature_dim, "logits_dim": spec.logits_dim,
                     "input_size": list(spec.input_size), "policy": spec.policy,
                     "runtimes": list(spec.builders), "installed_runtimes": runtimes,
                     "description": spec.description})
        size = f"{spec.input_size[0]}x{spec.input_size[1]}"
        lines.append(f"{name:24s} {spec.feature_dim:5d}-d  input {size:8s} resize {spec.policy:18s} "
                     f"runtimes {', '.join(runtimes) or 'none installed'}")
    if args.json:
        out.write(json.dumps(rows, indent=1) + "\n")
    else:
        out.write("\n".join(lines) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of the ``fidkit`` command."""
    from .metrics import DEFAULT_METRICS, METRICS, parse_metrics

    common, pipe = _common(), _pipeline()
    parser = argparse.ArgumentParser(
        prog="fidkit", description="FID, KID, IS, precision/recall that agree across PyTorch, TensorFlow "
                                   "and JAX. Inputs: image folders, zips, image arrays (.npy/.npz), feature "
                                   "arrays (.npy, or .npz with 'features') or statistics (.npz).",
        epilog="examples:\n"
               "  fidkit score real/ fake/                     every metric, MNIST extractor, intervals\n"
               "  fidkit stats real/ -o real.npz --extractor inception-tf2015\n"
               "  fidkit fid real.npz fake.npy --range -1,1 --extractor inception-tf2015 --runtime jax\n"
               "  fidkit weights where inception-tf2015",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def pair(name: str, help_text: str, metrics: tuple[str, ...]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common, pipe], help=help_text)
        p.add_argument("real", metavar="A", help="real/reference images, features or statistics")
        p.add_argument("fake", metavar="B", help="generated images, features or statistics")
        p.set_defaults(func=_cmd_metric(metrics))
        return p

    pair("fid", "Fréchet Inception Distance (Heusel et al. 2017)", ("fid",))
    k = pair("kid", "Kernel Inception Distance (Bińkowski et al. 2018)", ("kid",))
    kid_d, pr_k, dc_k = METRICS["kid"].defaults, METRICS["pr"].defaults["k"], METRICS["dc"].defaults["k"]
    k.add_argument("--subsets", dest="kid_subsets", type=_positive, default=kid_d["subsets"],
                   help=f"KID subsets (default {kid_d['subsets']})")
    k.add_argument("--subset-size", dest="kid_subset_size", type=_positive, default=kid_d["subset_size"],
                   help=f"KID subset size (default {kid_d['subset_size']})")
    pr = pair("pr", "precision and recall (Kynkäänniemi et al. 2019)", ("pr",))
    pr.add_argument("--k", type=_positive, default=pr_k, help=f"nearest neighbour (default {pr_k})")

    p = sub.add_parser("is", parents=[common, pipe], help="Inception Score (Salimans et al. 2016)")
    p.add_argument("input", help="generated images, or a features file with logits")
    splits = METRICS["is"].defaults["splits"]
    p.add_argument("--splits", dest="is_splits", type=_positive, default=splits,
                   help=f"IS splits (default {splits})")
    p.set_defaults(func=_cmd_is)

    p = sub.add_parser("score", parents=[common, pipe], help="every metric at once, with intervals")
    p.add_argument("real", help="real/reference images or features")
    p.add_argument("fake", help="generated images or features")
    p.add_argument("--metrics", type=parse_metrics, default=DEFAULT_METRICS,
                   help=f"comma-separated subset of {','.join(METRICS)} (default: all)")
    p.add_argument("--subsets", dest="kid_subsets", type=_positive, default=kid_d["subsets"],
                   help=f"KID subsets (default {kid_d['subsets']})")
    p.add_argument("--subset-size", dest="kid_subset_size", type=_positive, default=kid_d["subset_size"],
                   help=f"KID subset size (default {kid_d['subset_size']})")
    p.add_argument("--splits", dest="is_splits", type=_positive, default=splits,
                   help=f"IS splits (default {splits})")
    p.add_argument("--k", type=_positive, default=pr_k, help=f"precision/recall neighbour (default {pr_k})")
    p.add_argument("--dc-k", type=_positive, default=dc_k, help=f"density/coverage neighbour (default {dc_k})")
    p.add_argument("--bootstrap", type=int, default=100, metavar="N",
                   help="bootstrap resamples for FID/KID confidence intervals (default 100; 0: none)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("stats", parents=[common, pipe], help="compute and save feature statistics")
    p.add_argument("input", help="images or features (or statistics from another tool, to convert)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("features", parents=[common, pipe], help="compute and save features and logits")
    p.add_argument("input", help="images: folder, zip or image array file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("extractors", parents=[common], help="list the registered extractors")
    p.set_defaults(func=_cmd_extractors)

    from .weights import add_cli

    add_cli(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"fidkit: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit code of ``fidkit`` run with ``argv`` (default: the process arguments)."""
    parser = build_parser()
    raw = iter(sys.argv[1:] if argv is None else argv)
    # "--range -1,1" would read as an unknown option "-1,1" to argparse: bind the value explicitly
    argv = [f"--range={next(raw, '')}" if a == "--range" else a for a in raw]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return int(exc.code or 0)
    with warnings.catch_warnings():
        # the command line reports fidkit's warnings as one line each, whatever -W says
        warnings.simplefilter("always", FidkitWarning)
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except FidkitError as exc:
            print(f"fidkit: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("fidkit: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # stdout closed early (| head): not an error of the computation
            return 0
