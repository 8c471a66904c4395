"""The ``fidkit`` command line: returns a process exit code (0 done, 2 user error, 130 interrupted).

Every subcommand reads statistics (.npz), features (.npy / .npz) or images (folder, zip, array file) and
prints human text, or JSON with ``--json`` (warnings included, under ``"warnings"``); progress and notes
go to stderr. Errors a user can cause (fidkit's own, and usage errors) are printed as one line
``fidkit: <message>``, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .errors import FidkitError, FidkitWarning, InputError

#: Bootstrap resamples of `fidkit score` when --bootstrap is not given: the registry's, as in Python
#: (``fidkit.score``); --bootstrap 0 gives point values. The single-metric commands give point values.
from .metrics import DEFAULT_BOOTSTRAP  # noqa: E402


class _Formatter(argparse.HelpFormatter):
    """Help text wrapped at spaces only: names such as ``pil-bilinear`` are never cut at their hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``fidkit: <command>: <problem>; see --help``;
    its subcommands' help is wrapped by `_Formatter` unless they choose another formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(2, f"fidkit: {where}{message}; see '{self.prog} --help'\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {value}")
    return value


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a confidence level between 0 and 1 (e.g. 0.95), "
                                         f"received {text!r}")
    return value


def _metrics(text: str) -> tuple[str, ...]:
    from .metrics import parse_metrics

    try:
        return parse_metrics(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked(check: Any, name: str) -> Any:
    """Returns an argparse ``type`` that validates a value with ``check`` (which raises `InputError`)
    and keeps the text: a wrong value is a usage error even when no input uses the option."""

    def parse(text: str) -> str:
        try:
            check(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = name
    return parse


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    return p


def _pipeline() -> argparse.ArgumentParser:
    from .image_rules import parse_value_range
    from .pipeline import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
    from .registry import parse_device
    from .resize import available_policies

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("images -> features")
    g.add_argument("--extractor",
                   help="registered extractor name or 'package.module:attribute' (default: mnist)")
    g.add_argument("--runtime", choices=("torch", "tf", "jax", "numpy"),
                   help="runtime that computes the network (default: first installed)")
    g.add_argument("--weights", metavar="FILE", help="weights file to use instead of the official one")
    # not checked when parsed: a model's own module may register its policy when imported
    g.add_argument("--resize", metavar="POLICY",
                   help=f"resize policy: {', '.join(available_policies())} (default: the extractor's "
                        f"canonical policy, see `fidkit extractors`)")
    g.add_argument("--device", default=None, type=_checked(parse_device, "device"),
                   help="cpu, cuda, cuda:N, or auto (a GPU when one is visible; default: cpu)")
    g.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"images per network call (default {DEFAULT_BATCH_SIZE}): memory and speed; "
                        f"results agree across batch sizes to float32 rounding")
    g.add_argument("--workers", type=_positive, default=DEFAULT_WORKERS, metavar="N",
                   help=f"image decoding threads (default: CPUs, at most 4; {DEFAULT_WORKERS} here)")
    g.add_argument("--range", metavar="LOW,HIGH", dest="value_range",
                   type=_checked(parse_value_range, "range"),
                   help="value range of float images: 0,255 or 0,1 or -1,1 (default: inferred when "
                        "unambiguous)")
    g.add_argument("--layout", choices=("NHWC", "NCHW", "NHW", "HWC", "CHW"),
                   help="axis order of image arrays, when their shape does not tell")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip image files that cannot be decoded (counted on stderr, named in --json)")
    g.add_argument("--allow-mismatch", action="store_true",
                   help="compare statistics computed under different extractors/weights/resize policies, "
                        "and accept options that contradict --protocol (each one is listed in the output)")
    g.add_argument("--protocol", metavar="NAME",
                   help="compute exactly what a tool reports: its extractor, weights, resize policy and "
                        "metric conventions (see `fidkit protocols` and docs/protocols.md); an option that "
                        "contradicts it is an error unless --allow-mismatch")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (there is none when stderr is not a terminal)")
    g.add_argument("--checkpoint", metavar="DIR",
                   help="save partial results in DIR every --checkpoint-every images; a killed run "
                        "started again with the same options resumes there (docs/distributed.md)")
    g.add_argument("--checkpoint-every", type=_positive, default=None, metavar="K",
                   help="images between checkpoints (default 2000)")
    return p


class _Context:
    """The extractor and pipeline settings of one invocation; builds the extractor only if images come,
    and opens image inputs itself, so that it can say what each one ignored and skipped."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._extractor: Any = None
        # under torchrun: join the process group (cuda:LOCAL_RANK on GPUs); ranks > 0 print nothing
        from .distributed import init_from_env

        self.job, args.device = init_from_env(args.device)
        self.main = self.job is None or self.job.main
        if not self.main:
            args.progress = False
            warnings.simplefilter("ignore")
        #: image inputs opened, by label ("real", "fake", "input")
        self.sources: dict[str, Any] = {}

    def extractor(self) -> Any:
        if self._extractor is None:
            from .pipeline import _as_extractor

            a = self.args
            if a.protocol:
                from .protocols import extractor_for

                ex, _ = extractor_for(a.protocol, a.extractor, a.runtime, weights=a.weights, resize=a.resize,
                                      device=a.device, allow_mismatch=a.allow_mismatch)
            else:
                ex = _as_extractor(a.extractor or "mnist", a.runtime, a.weights, a.device, a.resize)
            how = (f"--protocol {a.protocol}" if a.protocol and not a.resize else
                   "as asked" if a.resize and ex.policy.name == a.resize else
                   "the extractor's canonical policy" if ex.policy.name == getattr(ex.spec, "policy", None)
                   else "the model's own")
            if self.main:
                print(f"fidkit: extractor {ex.name} on {ex.runtime} ({ex.device}), resize policy "
                      f"{ex.policy.name} ({how})", file=sys.stderr)
            self._extractor = ex
        return self._extractor

    def _warn_unused(self, kinds: Sequence[str]) -> None:
        """Warns when options that decide how images become features were given but no input is images:
        statistics and features keep the extractor, weights and policy they were computed with."""
        a = self.args
        given = [f"--{k} {getattr(a, k)}" for k in ("extractor", "runtime", "weights", "resize") if getattr(a, k)]
        if a.protocol and given and "images" not in kinds:  # checked against the protocol by score instead
            given = [g for g in given if not g.startswith(("--extractor", "--weights", "--resize"))]
        if given and "images" not in kinds:
            warnings.warn(f"{', '.join(given)}: no effect, no input is images (statistics and features were "
                          f"computed with their own extractor, weights and resize policy: see their "
                          f"provenance)", FidkitWarning, stacklevel=2)

    def pipe(self) -> dict[str, Any]:
        a = self.args
        return {"batch_size": a.batch_size, "workers": a.workers, "progress": a.progress,
                "value_range": a.value_range, "layout": a.layout, "skip_bad": a.skip_bad}

    def open(self, value: str, label: str) -> Any:
        """Returns the image input ``value`` opened (listed and checked, nothing decoded yet), after
        saying on stderr which files of a folder or zip it does not read."""
        from .images import describe_ignored
        from .pipeline import _open

        a = self.args
        src = _open(value, value_range=a.value_range, layout=a.layout, skip_bad=a.skip_bad)
        if hasattr(src, "skip_option"):
            src.skip_option = "--skip-bad"
        if src.ignored:
            print(f"fidkit: {src.description}: ignored {describe_ignored(src.ignored)}", file=sys.stderr)
        self.sources[label] = src
        return src

    def files_report(self) -> dict[str, Any]:
        """Returns {"skipped": {label: names}, "ignored": {label: names}} for the JSON output, after
        printing how many files of each input were skipped as undecodable (--skip-bad)."""
        skipped = {label: [str(n) for n in src.skipped] for label, src in self.sources.items() if src.skipped}
        for label, names in skipped.items():
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            noun = "file that could not be decoded" if len(names) == 1 else "files that could not be decoded"
            print(f"fidkit: {self.sources[label].description}: skipped {len(names)} {noun} (--skip-bad; "
                  f"--json lists them): {shown}", file=sys.stderr)
        ignored = {label: list(src.ignored) for label, src in self.sources.items() if src.ignored}
        return {"skipped": skipped, "ignored": ignored}

    def operand(self, value: str, label: str, *, with_features: bool) -> Any:
        from .inputs import classify, operand

        kind = classify(value)
        self._warn_unused([kind])
        if kind != "images":
            return operand(value, "mnist", label, with_features=with_features, **self.pipe())
        src = self.open(value, label)
        return self.stamped(operand(src, self.extractor(), label, with_features=with_features, **self.pipe(),
                                    **self.scale()))

    def stamped(self, op: Any) -> Any:
        """Returns the operand ``op``, computed from images, with --protocol's label in its provenance."""
        if not self.args.protocol or op is None:
            return op
        from .protocols import get_protocol
        from .scoring import _with_protocol

        return _with_protocol(op, get_protocol(self.args.protocol).label)

    def scale(self) -> dict[str, Any]:
        """Returns the distributed and checkpoint options of the pipeline (empty when neither is used)."""
        a = self.args
        if self.job is None and not a.checkpoint:
            return {}
        return {"distributed": self.job is not None, "checkpoint": a.checkpoint,
                "checkpoint_every": a.checkpoint_every}

    def score(self, real: str, fake: str, metrics: Sequence[str], **kwargs: Any) -> dict[str, Any]:
        from .inputs import check_inputs, classify
        from .scoring import score

        defaulted = metrics is None
        if defaulted:  # score's default: every metric, or those --protocol reproduces from these inputs
            from .scoring import default_metrics

            metrics = default_metrics(self.args.protocol, real, fake, kwargs.get("spatial"))
        if kwargs.get("bootstrap", 0) is None:  # score's default, decided here when inputs are precomputed
            kwargs["bootstrap"] = DEFAULT_BOOTSTRAP if classify(fake) != "stats" else 0
        kinds, need_real, need_fake = check_inputs(real, fake, metrics, kwargs.get("bootstrap") or 0)
        self._warn_unused(kinds)
        # both image inputs are opened (listed, their ranges checked) before either is decoded
        a, b = (self.open(v, label) if kind == "images" else v
                for v, label, kind in zip((real, fake), ("real", "fake"), kinds, strict=True))
        a_ = self.args
        # under a protocol whose PR is a second pass on another network, PR alone needs no first extractor
        second_only = bool(a_.protocol) and list(metrics) == ["pr"] and _protocol_pr_extractor(a_.protocol)
        ex = self.extractor() if "images" in kinds and not second_only else (a_.extractor or None)
        if "images" not in kinds:  # no extractor is built: score checks these against --protocol
            kwargs.update({"weights": a_.weights, "resize": a_.resize})
        if self.scale():  # sharded and/or resumable: image inputs become statistics or features first
            from .inputs import operand

            ops = [self.stamped(operand(v, ex, label, with_features=need, **self.pipe(), **self.scale()))
                   if kind == "images" else None for v, label, kind, need in zip((a, b), ("real", "fake"), kinds,
                                                             (need_real, need_fake), strict=True)]
            if not self.main:  # rank 0 scores and prints
                return None
            a, b = (v if op is None else op.features if op.features is not None else op.stats
                    for v, op in zip((a, b), ops, strict=True))
        result = score(a, b, None if defaulted and self.args.protocol else metrics, ex, a_.runtime, device=a_.device,
                       allow_mismatch=self.args.allow_mismatch, protocol=self.args.protocol, **self.pipe(), **kwargs)
        return {**result, **self.files_report()}


def _protocol_pr_extractor(protocol: str) -> str | None:
    """Returns the extractor of ``protocol``'s PR feature space when it is not the protocol's own, else None."""
    from .protocols import resolve

    return (resolve(protocol)[1].get("pr") or {}).get("extractor")


def _output_path(value: str, parents: bool) -> Path:
    """Returns the file that ``-o value`` writes (".npz" appended when it has no suffix, as ``numpy.savez``
    and `fidkit.Stats.save` do; another suffix is an `InputError` naming ``-o``), after checking, before any work, that it can be written: no folder or
    device is in the way, its folder exists (or ``parents``: its nearest existing ancestor is a folder)
    and a file can be created there. Nothing is left behind by the check."""
    given = Path(value)
    if given.suffix and given.suffix != ".npz":  # out.txt would be written as out.txt.npz
        raise InputError(f"-o {value}: fidkit writes .npz files; name it {given.with_suffix('.npz')} "
                         f"(or give no suffix and .npz is appended)")
    final = given if given.suffix else Path(value + ".npz")
    for p in dict.fromkeys((given, final)):
        if p.is_dir():
            raise InputError(f"-o {value}: is a folder; -o names the file to write, e.g. "
                             f"-o {p / 'out.npz'}")
        if p.exists() and not p.is_file():
            raise InputError(f"-o {value}: exists and is not a regular file; name a file to write")
    folder = final.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"-o {value}: {folder} is a file, not a folder")
    if folder != final.parent and not parents:
        raise InputError(f"-o {value}: no folder {final.parent}; create it, or pass --parents to have "
                         f"fidkit create it")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(f"-o {value}: cannot create a file in {folder} ({exc.strerror or exc}); "
                         f"choose another place") from None
    os.close(fd)
    os.remove(probe)
    return final


def _emit(args: argparse.Namespace, payload: dict[str, Any], lines: list[str]) -> None:
    out = sys.stdout
    if args.json:
        payload = {**payload, "warnings": list(getattr(args, "warnings_seen", []))}
        out.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    else:
        out.write("\n".join(lines) + "\n")


def _setting(result: dict[str, Any], metric: str, key: str, fallback: Any = None) -> Any:
    """Returns the option ``key`` of ``metric`` that computed ``result``: from its ``settings``
    ({metric: {key: value}} or {f"{metric}_{key}": value}), else ``fallback`` (what was asked for),
    else the metric's registered default."""
    from .metrics import METRICS

    settings = result.get("settings") or {}
    per_metric = settings.get(metric)
    registered = METRICS[metric].defaults.get(key) if metric in METRICS else None
    for value in (per_metric.get(key) if isinstance(per_metric, dict) else None,
                  settings.get(f"{metric}_{key}"), fallback, registered):
        if value is not None:
            return value
    return None


def _is_options(options: dict[str, Any]) -> str:
    """Returns " (10 splits, rows shuffled with seed 2020)" for IS's options."""
    shuffle = options.get("shuffle_seed")
    order = f", rows shuffled with seed {shuffle}" if shuffle is not None else ""
    return f" ({options['splits']} splits{order})" if options.get("splits") is not None else ""


def _lines(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Returns the text output of a score: each value with the options it was computed with, the
    notes, then the sample sizes, extractor and resize policy."""
    lines = []
    intervals = result.get("intervals", {})

    def ci(key: str, fmt: str = ".6g") -> str:
        iv = intervals.get(key)
        return f"  [{iv['low']:{fmt}}, {iv['high']:{fmt}}] {iv['level']:.0%} CI" if iv else ""

    def opt(text: str, value: Any) -> str:
        return f" ({text.format(value)})" if value is not None else ""

    if "fid" in result:
        lines.append(f"FID        {result['fid']:.6g}{ci('fid')}")
    if "sfid" in result:
        lines.append(f"sFID       {result['sfid']:.6g}")
    if "kid" in result:
        subsets = _setting(result, "kid", "subsets", getattr(args, "kid_subsets", None))
        size = _setting(result, "kid", "subset_size", result.get("kid_subset_size"))
        what = (f" ({subsets} subsets of {size})" if subsets is not None and size is not None
                else opt("subsets of {}", size))
        std = result["kid"].get("std")  # None: the subsets cannot differ (a note says why)
        spread = f" ± {std:.3g}" if std is not None else ""
        lines.append(f"KID        {result['kid']['mean']:.6g}{spread}{what}{ci('kid')}")
    if "is" in result:
        options = {"splits": _setting(result, "is", "splits", getattr(args, "is_splits", None)),
                   "shuffle_seed": _setting(result, "is", "shuffle_seed")}
        lines.append(f"IS         {result['is']['mean']:.6g} ± {result['is']['std']:.3g}{_is_options(options)}")
    for metric, keys, arg in (("pr", ("precision", "recall"), "k"), ("dc", ("density", "coverage"), "dc_k")):
        if metric in result:
            k = _setting(result, metric, "k", getattr(args, arg, None))
            for key in keys:
                lines.append(f"{key:10s} {result[metric][key]:.4f}{opt('k = {}', k)}{ci(key, '.4f')}")
    if "cmmd" in result:
        cm = (result.get("settings") or {}).get("cmmd") or {}
        what = f" (sigma {cm['sigma']:g}, scale {cm['scale']:g})" if cm else ""
        lines.append(f"CMMD       {result['cmmd']:.6g}{what}")
    for note in result.get("notes") or []:
        lines.append(f"note: {note}")

    def count(v: Any) -> str:
        return "unknown" if v is None else str(v)

    parts = [f"n = {count(result.get('n_real'))} real, {count(result.get('n_fake'))} fake"] if "n_real" in result else []
    prov = result.get("provenance", {})
    parts.append(f"extractor {prov.get('extractor', 'unknown')}, resize policy "
                 f"{prov.get('resize_policy', 'unknown')}")
    protocol = (result.get("settings") or {}).get("protocol")
    if protocol:
        parts.append(f"protocol {protocol['label']}")
    elif prov.get("protocol") not in (None, "unknown", "none"):  # an input computed under a protocol
        parts.append(f"fake computed under protocol {prov['protocol']}, scored without one")
    if intervals:
        n_boot = _setting(result, "bootstrap", "n", next(iter(intervals.values())).get("n_boot"))
        seed = _setting(result, "bootstrap", "seed", (result.get("settings") or {}).get("seed",
                                                                                        getattr(args, "seed", None)))
        parts.append(f"intervals from {n_boot} bootstrap resamples" + (f", seed {seed}" if seed is not None else ""))
    lines.append(f"({'; '.join(parts)})")
    return lines


def _cmd_metric(metrics: tuple[str, ...]):
    def run(args: argparse.Namespace) -> int:
        kwargs: dict[str, Any] = {"bootstrap": 0}  # point values, whatever score's default
        for name in ("kid_subsets", "kid_subset_size", "k", "seed", "pr_weights"):  # None: the registered default
            if getattr(args, name, None) is not None:
                kwargs[name] = getattr(args, name)
        result = _Context(args).score(args.real, args.fake, metrics, **kwargs)
        if result is not None:  # None: a rank > 0 of a distributed run
            _emit(args, result, _lines(result, args))
        return 0
    return run


def _cmd_score(args: argparse.Namespace) -> int:
    ctx = _Context(args)
    kwargs = {"kid_subsets": args.kid_subsets, "kid_subset_size": args.kid_subset_size,
              "is_splits": args.is_splits, "k": args.k, "dc_k": args.dc_k, "bootstrap": args.bootstrap,
              "level": args.level, "seed": args.seed, "cmmd_sigma": args.cmmd_sigma, "cmmd_scale": args.cmmd_scale,
              "pr_weights": args.pr_weights}
    if args.generator is None and (args.num is not None or args.quantize or args.seeds != "0"):
        raise InputError("--num, --seeds and --quantize apply to --generator only; pass --generator "
                         "MOD:ATTR, or drop them")
    from .scoring import load_spatial

    spatial = {side: load_spatial(getattr(args, f"spatial_{side}")) for side in ("real", "fake")
               if getattr(args, f"spatial_{side}")}
    if spatial:
        kwargs["spatial"] = spatial
    if args.generator is not None or args.fake is None:
        return _cmd_score_generator(args, kwargs)
    result = ctx.score(args.real, args.fake, args.metrics, **kwargs)
    if result is not None:  # None: a rank > 0 of a distributed run
        _emit(args, result, _lines(result, args))
    return 0


def _cmd_score_generator(args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    """``fidkit score REAL --generator MOD:ATTR --num N --seeds 0,1,2``: each seed's lines, then the
    mean ± std, minimum and maximum over seeds (`fidkit.generators`)."""
    from .scoring import score

    if args.generator is None:
        raise InputError("fidkit score needs generated images B, or --generator MOD:ATTR with --num N")
    if args.fake is not None:
        raise InputError(f"{args.fake}: pass generated images B or --generator, not both")
    if args.num is None:
        raise InputError(f"--generator {args.generator}: --num N (images per seed) is required")
    a = args
    result = score(a.real, None, a.metrics, a.extractor, a.runtime, weights=a.weights, resize=a.resize,
                   device=a.device, batch_size=a.batch_size, workers=a.workers, progress=a.progress,
                   allow_mismatch=a.allow_mismatch, value_range=a.value_range, layout=a.layout,
                   skip_bad=a.skip_bad, generator=a.generator, num=a.num, seeds=a.seeds, quantize=a.quantize,
                   protocol=getattr(a, "protocol", None), **kwargs)
    lines: list[str] = []
    for r in result["per_seed"]:
        lines.append(f"seed {r['seed']}:")
        lines.extend(f"  {line}" for line in _lines(r, args) if not line.startswith("note: "))
    lines.append(f"over {len(result['seeds'])} seeds ({result['num']} generated images each; std with ddof 0):")
    for label, s in result["summary"].items():
        std = f" ± {s['std']:.3g}" if s["std"] is not None else ""
        lines.append(f"  {label:10s} {s['mean']:.6g}{std}  (min {s['min']:.6g}, max {s['max']:.6g})")
    lines.extend(f"note: {note}" for note in result["notes"])
    _emit(args, result, lines)
    return 0


def _cmd_is(args: argparse.Namespace) -> int:
    from .metrics import get_metric, load_function

    ctx = _Context(args)
    op = ctx.operand(args.input, "input", with_features=True)
    if not ctx.main:
        return 0
    logits = op.need_logits("IS")
    notes: list[str] = []
    protocol = None
    if args.protocol:
        from .scoring import DEFAULT, _ProtocolPlan

        plan = _ProtocolPlan.make(args.protocol, ("is",), args.allow_mismatch, extractor=args.extractor,
                                  weights=args.weights, resize=args.resize, is_splits=args.is_splits,
                                  kid_subsets=None, kid_subset_size=None, k=None, dc_k=None, seed=None)
        op = plan.stamp(op, "features" if op.provenance.protocol != plan.label else "images")
        splits = plan.fill(args.is_splits, None, None, None, None)[0] or get_metric("is").defaults["splits"]
        options = plan.is_options(len(logits), splits, DEFAULT)
        notes, protocol = plan.notes, plan.settings()
    else:
        options = {**get_metric("is").defaults, **({"splits": args.is_splits} if args.is_splits else {})}
    mean, std = load_function("is")(logits, **options)
    result = {"is": {"mean": float(mean), "std": float(std)}, "n": op.n,
              "settings": {"is": options, "protocol": protocol}, "notes": notes,
              "provenance": json.loads(op.provenance.to_json()), **ctx.files_report()}
    _emit(args, result, [f"IS         {mean:.6g} ± {std:.3g}{_is_options(options)}",
                         *(f"note: {n}" for n in notes),
                         f"(n = {op.n}; extractor {op.provenance.extractor}"
                         + (f"; protocol {protocol['label']}" if protocol else "") + ")"])
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    ctx = _Context(args)
    output = _output_path(args.output, args.parents) if ctx.main else None
    if args.spatial:  # sFID's spatial statistics (fidkit.sfid), from images only
        from .inputs import classify
        from .sfid import spatial_stats

        if classify(args.input) != "images":
            raise InputError(f"{args.input}: --spatial needs images (the spatial features come from the network)")
        stats = spatial_stats(ctx.open(args.input, "input"), ctx.extractor(), **ctx.pipe())
    elif args.protocol:
        from .inputs import classify

        kind = classify(args.input)
        if kind == "images":
            stats = ctx.operand(args.input, "input", with_features=False).get_stats()
        else:  # features or statistics: recorded under --protocol only when computed as it computes them
            from .inputs import operand
            from .scoring import load_published, stamp_protocol

            ctx._warn_unused([kind])
            value = load_published(args.input) if kind == "stats" else operand(args.input, "mnist", "input").get_stats()
            stats = stamp_protocol(value, args.protocol, label=args.input, allow_mismatch=args.allow_mismatch)
    else:
        stats = ctx.operand(args.input, "input", with_features=False).get_stats()
    if not ctx.main:  # rank 0 of a distributed run writes and prints
        return 0
    path = stats.save(output)
    p = stats.provenance
    result = {"output": str(path), "n": stats.n, "dim": stats.dim, "provenance": json.loads(p.to_json()),
              **ctx.files_report()}
    _emit(args, result, [f"wrote {path}: n = {stats.describe_n}, d = {stats.dim}, extractor {p.extractor}, "
                         f"resize policy {p.resize_policy}"
                         + (f", protocol {p.protocol}" if args.protocol else "")])
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from .inputs import classify

    kind = classify(args.input)
    if kind != "images":
        raise InputError(f"{args.input}: `fidkit features` needs images (folder, zip or image array), "
                         f"and this is already {kind}")
    ctx = _Context(args)
    output = _output_path(args.output, args.parents) if ctx.main else None
    op = ctx.operand(args.input, "input", with_features=True)
    res = op.features
    if not ctx.main:  # rank 0 of a distributed run writes and prints
        return 0
    path = res.save(output)
    result = {"output": str(path), "n": len(res.features), "dim": int(res.features.shape[1]),
              "provenance": json.loads(res.provenance.to_json()), **ctx.files_report()}
    _emit(args, result, [f"wrote {path}: {len(res.features)} x {res.features.shape[1]} features"
                         + (f", protocol {res.provenance.protocol}" if args.protocol else "")])
    return 0


def _cmd_protocols(args: argparse.Namespace) -> int:
    from .protocols import PROTOCOLS

    rows, lines = [], []
    for name in sorted(PROTOCOLS):
        p = PROTOCOLS[name]
        missing = p.missing
        metrics = [m for m in ("fid", "kid", "is", "pr", "dc") if m not in missing]
        rows.append({"name": name, "label": p.label, "tool": p.tool, "extractor": p.extractor, "policy": p.policy,
                     "metrics": metrics, "missing": missing})
        lacks = [k for k in ("extractor", "policy") if k in missing]
        state = f"  (not usable: {', '.join(lacks)} missing)" if lacks else ""
        lines.append(f"{name:28s} {','.join(metrics):16s} {p.extractor} / {p.policy}: {p.tool}{state}")
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\nsettings and sources: docs/protocols.md\n")
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
    from ._version import __version__
    from .metrics import DEFAULT_METRICS, METRICS

    common, pipe = _common(), _pipeline()
    parser = _Parser(
        prog="fidkit", description="FID, KID, IS, precision/recall that agree across PyTorch, TensorFlow "
                                   "and JAX. Inputs: image folders, zips, image arrays (.npy/.npz), feature "
                                   "arrays (.npy, or .npz with 'features') or statistics (.npz).",
        epilog="examples:\n"
               "  fidkit score real/ fake/                     every metric, MNIST extractor, intervals\n"
               "  fidkit stats real/ -o real.npz --extractor inception-tf2015\n"
               "  fidkit fid real.npz fake.npy --range -1,1 --extractor inception-tf2015 --runtime jax\n"
               "  fidkit weights where inception-tf2015",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fidkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def pair(name: str, help_text: str, metrics: tuple[str, ...]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common, pipe], help=help_text)
        p.add_argument("real", metavar="A", help="real/reference images, features or statistics")
        p.add_argument("fake", metavar="B", help="generated images, features or statistics")
        p.set_defaults(func=_cmd_metric(metrics))
        return p

    kid_d, pr_k, dc_k = METRICS["kid"].defaults, METRICS["pr"].defaults["k"], METRICS["dc"].defaults["k"]
    splits = METRICS["is"].defaults["splits"]

    def kid_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--subsets", dest="kid_subsets", type=_positive, metavar="N",
                       help=f"KID: the number of random subsets it averages over; their spread is the ± "
                            f"(default {kid_d['subsets']})")
        p.add_argument("--subset-size", dest="kid_subset_size", type=_positive, metavar="N",
                       help=f"KID: images per subset (default {kid_d['subset_size']}, reduced with a "
                            f"warning to the smaller sample; a size given must fit both samples)")

    def is_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--splits", dest="is_splits", type=_positive, metavar="N",
                       help=f"IS: the images are cut into N groups and the score is the mean ± std over "
                            f"them (default {splits}, as papers report it)")

    pair("fid", "Fréchet Inception Distance (Heusel et al. 2017)", ("fid",))
    kid = pair("kid", "Kernel Inception Distance (Bińkowski et al. 2018)", ("kid",))
    kid_options(kid)
    kid.add_argument("--seed", type=_count, default=None,
                     help="seed of KID's random subsets (default 0, or the one --protocol fixes)")
    pr = pair("pr", "precision and recall (Kynkäänniemi et al. 2019)", ("pr",))
    pr.add_argument("--k", type=_positive, metavar="K",
                    help=f"the k-th nearest neighbour sets each sample's radius (default {pr_k})")

    def pr_weights(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pr-weights", metavar="FILE",
                       help="precision/recall under --protocol stylegan or torch-fidelity: the weights file of "
                            "its VGG16 (vgg16.pt, vgg16-397923af.pth), when not found where `fidkit weights "
                            "where` looks")

    pr_weights(pr)

    p = sub.add_parser("is", parents=[common, pipe], help="Inception Score (Salimans et al. 2016)")
    p.add_argument("input", help="generated images, or a features file with logits")
    is_options(p)
    p.set_defaults(func=_cmd_is)

    p = sub.add_parser(
        "score", parents=[common, pipe], help="every metric at once, with intervals",
        description=f"Every metric at once (those of --metrics), with {DEFAULT_BOOTSTRAP} bootstrap "
                    f"resamples for intervals unless --bootstrap says otherwise: the same metrics and "
                    f"defaults as fidkit.score() in Python.")
    p.add_argument("real", help="real/reference images or features")
    p.add_argument("fake", nargs="?", help="generated images or features (omitted with --generator)")
    g = p.add_argument_group("generator evaluation (fidkit.generators)")
    g.add_argument("--generator", metavar="MOD:ATTR",
                   help="sample the generated images from fn(seeds) -> images ('package.module:attribute' "
                        "or 'file.py:attribute'; image i of seed s from seed s * NUM + i), in batches of "
                        "--batch-size, none written; --range/--layout describe its output")
    g.add_argument("--num", type=_positive, metavar="N", help="images per seed (with --generator)")
    g.add_argument("--seeds", default="0", metavar="LIST",
                   help="comma-separated run seeds (default 0); each is scored, then mean ± std and min")
    g.add_argument("--quantize", action="store_true",
                   help="round the generated images to uint8 levels first, as saving them as PNG would")
    for side in ("real", "fake"):
        p.add_argument(f"--spatial-{side}", metavar="FILE",
                       help=f"sFID: {side}'s spatial statistics (fidkit stats --spatial), when {side} is not "
                            f"images")
    p.add_argument("--metrics", type=_metrics, default=None, metavar="LIST",
                   help=f"comma-separated subset of {','.join(METRICS)} (default: {','.join(DEFAULT_METRICS)}, "
                        f"or those --protocol reproduces)")
    kid_options(p)
    is_options(p)
    p.add_argument("--k", type=_positive, metavar="K",
                   help=f"precision/recall: the k-th nearest neighbour sets each radius (default {pr_k})")
    p.add_argument("--dc-k", type=_positive, metavar="K",
                   help=f"density/coverage: the k-th nearest neighbour sets each radius (default {dc_k})")
    pr_weights(p)
    p.add_argument("--bootstrap", type=_count, default=None, metavar="N",
                   help=f"bootstrap resamples for the intervals of FID, KID and the k-NN metrics (default "
                        f"{DEFAULT_BOOTSTRAP}, as fidkit.score, or none when B is a statistics file; 0: "
                        f"point values only)")
    p.add_argument("--level", type=_level, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--seed", type=_count, default=None,
                   help="seed of KID's random subsets and of the bootstrap resamples (default 0, or the one "
                        "--protocol fixes): the same seed gives the same numbers")
    cmmd_d = METRICS["cmmd"].defaults
    p.add_argument("--cmmd-sigma", type=float, default=None, metavar="SIGMA",
                   help=f"CMMD: the Gaussian kernel's bandwidth (default {cmmd_d['sigma']:g}, the authors')")
    p.add_argument("--cmmd-scale", type=float, default=None, metavar="S",
                   help=f"CMMD: the factor applied to MMD² (default {cmmd_d['scale']:g}, the authors')")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("protocols", parents=[common], help="list the evaluation protocols (--protocol NAME)")
    p.set_defaults(func=_cmd_protocols)

    def output_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                       help="file to write: a name ending .npz, or with no suffix (.npz is appended); "
                            "another suffix (out.txt) is refused; its folder must exist and be writable, "
                            "checked before any work")
        p.add_argument("--parents", action="store_true", help="create the output's missing folders")

    p = sub.add_parser("stats", parents=[common, pipe], help="compute and save feature statistics")
    p.add_argument("input", help="images or features (or statistics from another tool, to convert)")
    p.add_argument("--spatial", action="store_true",
                   help="save sFID's statistics (inception-tf2015's 2023-d spatial features, mixed_6/conv) "
                        "instead of the pool features'; score reads them with --spatial-real/--spatial-fake")
    output_options(p)
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("features", parents=[common, pipe], help="compute and save features and logits")
    p.add_argument("input", help="images: folder, zip or image array file")
    output_options(p)
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("extractors", parents=[common], help="list the registered extractors")
    p.set_defaults(func=_cmd_extractors)

    from .weights import add_cli

    add_cli(sub)
    from .explain import add_cli as add_explain_cli
    from .refstats import add_cli as add_refstats_cli

    add_refstats_cli(sub)
    add_explain_cli(sub)
    from .audit import add_cli as add_audit_cli

    add_audit_cli(sub, [common, pipe])
    return parser


def _warning_printer(seen: list[str]):
    """Returns a ``warnings.showwarning`` that prints each warning as one line and keeps its text in
    ``seen`` (the JSON output's ``"warnings"``)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        seen.append(str(message))
        print(f"fidkit: warning: {message}", file=sys.stderr)

    return show


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """Returns the (sub)parser of the command that ``args`` ran, e.g. that of ``fidkit weights convert``."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name not in (subs[0].choices if subs else {}):
            return parser
        parser = subs[0].choices[name]


def _json_error(message: str, status: int = 2) -> None:
    """Prints ``{"error": message, "exit_status": status}`` to stdout (the line is on stderr too)."""
    print(json.dumps({"error": message, "exit_status": status}))


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit code of ``fidkit`` run with ``argv`` (default: the process arguments)."""
    parser = build_parser()
    raw = iter(sys.argv[1:] if argv is None else argv)
    # "--range -1,1" would read as an unknown option "-1,1" to argparse: bind the value explicitly
    argv = [f"--range={next(raw, '')}" if a == "--range" else a for a in raw]
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the subcommand they were given to, which --help then explains
            _chosen(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return int(exc.code or 0)
    if getattr(args, "progress", False) and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        args.progress = False  # stderr redirected to a log: no \r bars flooding it (tqdm's disable=None)
    args.warnings_seen = []
    with warnings.catch_warnings():
        # the command line reports fidkit's warnings as one line each, whatever -W says
        warnings.simplefilter("always", FidkitWarning)
        warnings.showwarning = _warning_printer(args.warnings_seen)
        try:
            return int(args.func(args) or 0)
        except FidkitError as exc:
            from .distributed import says

            line = says(exc)  # under torchrun: an error every rank raised alike is said by rank 0 only
            if line is not None:
                print(line, file=sys.stderr)
                if getattr(args, "json", False):  # scripts parsing stdout get JSON on failure too
                    _json_error(line.removeprefix("fidkit: "))
            return 2
        except KeyboardInterrupt:
            print("fidkit: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # stdout closed early (| head): not an error of the computation
            return 0
