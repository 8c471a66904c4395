"""``fidkit explain A.npz B.npz``: what differs between two statistics files, what each difference does to the
score, and whether scores computed with them are comparable.

Both files are read with `fidkit.refstats.load`, so a published file (TTUR, clean-fid, the ADM evaluator's
reference batches) gets the provenance of its registry entry rather than "unknown". Each field is one `Row`:
the two values, whether they agree, and the field's effect on the number:

* ``blocks``: a difference makes the scores incomparable — extractor, feature dimension, weights, resize
  policy, network input size (the fields `fidkit.stats.check_provenance` refuses to mix);
* ``moves``: a difference is allowed but moves the score by a known amount — protocol, sample count;
* ``none``: recorded for the reader — data set description, runtime, fidkit version.

The verdict is ``comparable`` (exit status 0) when every ``blocks`` field is known on both sides and agrees,
``not comparable`` (1) when one differs, ``unknown`` (1) when one is unknown on a side (a file from another
tool that is not registered): fidkit cannot show them comparable. Bad input (a missing or non-statistics
file) raises InputError, which the CLI turns into exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from typing import Literal

from .stats import UNKNOWN, Provenance, Stats

Effect = Literal["blocks", "moves", "none"]
Verdict = Literal["comparable", "not comparable", "unknown"]

#: What a difference in each field does to the score, with its source. The spread of fidkit's own
#: real-vs-real FID (10,000 MNIST training images against the test set) is quoted from
#: reference_stats/README.md (tests/test_explain.py checks the quote against noise_floor.json).
EFFECTS: dict[str, tuple[str, Effect, str]] = {
    "extractor": ("extractor", "blocks",
                  "another network is another feature space: FIDs are on different scales and cannot be "
                  "compared at all (docs/mnist.md: the MNIST extractor's FIDs against Inception's)"),
    "dim": ("feature dimension", "blocks",
            "statistics of different dimensions come from different layers or networks; no Fréchet "
            "distance can be computed between them"),
    "weights": ("weights", "blocks",
                "other weights move every feature: Barratt & Sharma 2018 ('A Note on the Inception Score') "
                "measure the Inception Score of CIFAR-10 as 9.37 vs 11.24 between torchvision's and the "
                "TensorFlow 2015 Inception weights"),
    "resize_policy": ("resize policy", "blocks",
                      "the resize and quantisation before the network move FID: clean-fid's leaderboard "
                      "(Parmar et al. 2022, README) gives the same StyleGAN2 CIFAR-10 model 11.07 with the "
                      "legacy TensorFlow resize and 12.96 with the clean one (FFHQ 1024: 2.86 vs 3.07)"),
    "input_size": ("network input size", "blocks",
                   "another input size resamples every image differently and changes every feature"),
    "protocol": ("protocol", "moves",
                 "a protocol also fixes sample counts, the covariance divisor and the KID/IS settings "
                 "(docs/protocols.md): numbers reported under different protocols differ even where the "
                 "features agree"),
    "n": ("sample count", "moves",
          "FID is biased upward by a term that falls as 1/N (Chong & Forsyth 2020, 'Effectively Unbiased "
          "FID and Inception Score'), so different sample counts shift the score; fidkit's real-vs-real "
          "noise floor at 10,000 MNIST images is FID 7.463 ± 1.334 (reference_stats/README.md)"),
    "description": ("data set", "none",
                    "another data set or split is another reference distribution: expected when A is "
                    "real data and B generated, a different experiment when both are references"),
    "runtime": ("runtime", "none",
                "fidkit's runtimes compute the same features to float32 tolerance "
                "(tests/test_conformance.py); not a difference in the number"),
    "fidkit_version": ("fidkit version", "none",
                       "recorded so the number can be reproduced; the fields above decide comparability"),
}


@dataclass(frozen=True)
class Row:
    """One field of the comparison: its values in A and B, ``state`` ("same", "differs", "unknown": unknown
    in at least one file), its ``effect`` on the score when it differs, ``why`` (how it moves the score,
    with the source) and ``note`` (how the values were matched, e.g. two files of one network)."""

    field: str
    label: str
    a: str
    b: str
    state: Literal["same", "differs", "unknown"]
    effect: Effect
    why: str
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    """The field-by-field comparison of two statistics files and its verdict (see the module docstring)."""

    a: str
    b: str
    rows: tuple[Row, ...]
    verdict: Verdict

    @property
    def exit_code(self) -> int:
        """Returns the CLI's exit status: 0 comparable, 1 not comparable or unknown."""
        return 0 if self.verdict == "comparable" else 1

    @property
    def reasons(self) -> list[str]:
        """Returns the labels of the fields that decide the verdict (differing, else unknown, blocking fields)."""
        state = "differs" if self.verdict == "not comparable" else "unknown"
        return [r.label for r in self.rows if r.effect == "blocks" and r.state == state]

    def to_dict(self) -> dict:
        """Returns the explanation as JSON-ready data: files, verdict, exit status, reasons and rows."""
        return {"a": self.a, "b": self.b, "verdict": self.verdict, "exit_status": self.exit_code,
                "reasons": self.reasons, "rows": [asdict(r) for r in self.rows]}

    def lines(self) -> list[str]:
        """Returns the human report: a table of the fields, then what each difference does, then the verdict."""
        table = [("field", "A", "B", "")] + [(r.label, r.a, r.b, r.state) for r in self.rows]
        w = [min(max(len(t[i]) for t in table), 48) for i in range(3)]
        out = [f"A: {self.a}", f"B: {self.b}", ""]
        out += [f"{lab.ljust(w[0])}  {_cut(a, 48).ljust(w[1])}  {_cut(b, 48).ljust(w[2])}  {st}".rstrip()
                for lab, a, b, st in table]
        notable = [r for r in self.rows if r.state != "same" and r.effect != "none"]
        if notable:
            out += ["", "what the differences do:"]
            for r in notable:
                tag = "not comparable" if r.effect == "blocks" else "moves the score"
                what = "is not recorded in a file" if r.state == "unknown" else "differs"
                out.append(f"- {r.label} {what} ({tag}): {r.why}" + (f" [{r.note}]" if r.note else ""))
        out += [""]
        if self.verdict == "comparable":
            out.append("verdict: comparable (extractor, weights, resize policy and input size agree)")
        elif self.verdict == "not comparable":
            verb = "differs" if len(self.reasons) == 1 else "differ"
            out.append(f"verdict: not comparable ({', '.join(self.reasons)} {verb})")
        else:
            out.append(f"verdict: unknown — {', '.join(self.reasons)} not recorded in a file, so fidkit cannot "
                       f"show them comparable; recompute with `fidkit stats`, or use a registered file "
                       f"(`fidkit refstats list`)")
        return out


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _row(field: str, a: str, b: str, note: str = "", state: str | None = None) -> Row:
    label, effect, why = EFFECTS[field]
    if state is None:
        state = "unknown" if UNKNOWN in (a, b) else "same" if a == b else "differs"
    return Row(field, label, a, b, state, effect, why, note)  # type: ignore[arg-type]


def _weights_row(sa: Stats, sb: Stats) -> Row:
    """The weights: by digest when both files record one, else by file name, where the extractor's accepted
    files (`fidkit.registry.ExtractorSpec.weights`: one network in several containers, converted to the same
    canonical arrays) count as the same weights."""
    pa, pb = sa.provenance, sb.provenance

    def show(p: Provenance) -> str:
        digest, source = p.weights_sha256, p.weights_source
        d = digest if digest == UNKNOWN else digest[:12] + "…"
        return d if source == UNKNOWN else f"{d} ({source})"

    a, b = show(pa), show(pb)
    if UNKNOWN not in (pa.weights_sha256, pb.weights_sha256):
        return _row("weights", a, b, state="same" if pa.weights_sha256 == pb.weights_sha256 else "differs")
    if UNKNOWN in (pa.weights_source, pb.weights_source):
        return _row("weights", a, b, state="unknown")
    if pa.weights_source == pb.weights_source:
        return _row("weights", a, b, "the same weights file by name; its digest is not recorded in one file",
                    state="same")
    accepted = _accepted(pa.extractor) if pa.extractor == pb.extractor else ()
    if pa.weights_source in accepted and pb.weights_source in accepted:
        return _row("weights", a, b, f"two files of {pa.extractor}'s one network (they convert to the same "
                                     f"canonical weights); digest not recorded in one file", state="same")
    return _row("weights", a, b, state="differs")


def _accepted(extractor: str) -> tuple[str, ...]:
    from .errors import InputError
    from .registry import get_spec

    try:
        return tuple(get_spec(extractor).weights)
    except InputError:
        return ()


def explain_stats(a: Stats, b: Stats, a_name: str = "A", b_name: str = "B") -> Explanation:
    """Returns the field-by-field `Explanation` of two `Stats` (named ``a_name``/``b_name`` in the report)."""
    pa, pb = a.provenance, b.provenance
    rows = [
        _row("extractor", pa.extractor, pb.extractor),
        _row("dim", str(a.dim), str(b.dim)),
        _weights_row(a, b),
        _row("resize_policy", pa.resize_policy, pb.resize_policy),
        _row("input_size", pa.input_size, pb.input_size),
        _row("protocol", str(getattr(pa, "protocol", UNKNOWN) or UNKNOWN),
             str(getattr(pb, "protocol", UNKNOWN) or UNKNOWN)),
        _row("n", a.describe_n, b.describe_n),
        _row("description", pa.description or UNKNOWN, pb.description or UNKNOWN),
        _row("runtime", pa.runtime, pb.runtime),
        _row("fidkit_version", pa.fidkit_version, pb.fidkit_version),
    ]
    blocking = [r for r in rows if r.effect == "blocks"]
    if any(r.state == "differs" for r in blocking):
        verdict: Verdict = "not comparable"
    elif any(r.state == "unknown" for r in blocking):
        verdict = "unknown"
    else:
        verdict = "comparable"
    return Explanation(a_name, b_name, tuple(rows), verdict)


def explain(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Explanation:
    """Returns the `Explanation` of two statistics files (or feature files, whose statistics are computed).

    Read with `fidkit.refstats.load`: a registered published file gets its entry's provenance. Raises
    InputError naming the file when one is missing or not statistics or features.
    """
    return explain_stats(_load(a), _load(b), os.fspath(a), os.fspath(b))


def _load(path: str | os.PathLike[str]) -> Stats:
    """Statistics through `fidkit.refstats.load`; a features file's statistics carry the provenance it
    records (`fidkit.features.load_features`), as ``fidkit fid`` reads it."""
    from . import npfile
    from .refstats import load

    if npfile.sniff(path).kind == "features":
        from .features import load_features

        fr = load_features(path)
        return Stats.from_features(fr.features, fr.provenance)
    return load(path)


def add_cli(subparsers: argparse._SubParsersAction,
            parents: list[argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
    """Returns the ``explain`` parser after adding it to ``subparsers``; ``args.func(args)`` prints the report
    (or JSON with ``--json``) and returns 0 when the files are comparable, 1 when not or when fidkit cannot
    tell, and raises InputError for a bad file (the CLI's exit status 2)."""
    p = subparsers.add_parser(
        "explain", parents=parents or [], help="what differs between two statistics files, and whether they "
                                                "are comparable",
        description="Field by field: what differs between two statistics files (extractor, weights, resize "
                    "policy, protocol, sample count, data set, fidkit version), what each difference does to "
                    "the score, and whether the two are comparable. Exit status: 0 comparable, 1 not "
                    "comparable (or not shown comparable), 2 bad input.")
    p.add_argument("a", metavar="A", help="statistics file (.npz), e.g. fidkit's, TTUR's, clean-fid's, ADM's")
    p.add_argument("b", metavar="B", help="statistics file to compare with A")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cli_explain)
    return p


def _cli_explain(args: argparse.Namespace) -> int:
    import warnings

    from .errors import FidkitWarning

    with warnings.catch_warnings():
        # the report says what is unknown; the loaders' warnings would repeat it
        warnings.simplefilter("ignore", FidkitWarning)
        res = explain(args.a, args.b)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        print("\n".join(res.lines()))
    return res.exit_code
