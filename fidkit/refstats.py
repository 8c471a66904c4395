"""Published reference statistics by name: where each file comes from, how it is checked, what computed it.

Papers report FID against statistics files that someone published once: TTUR's ``fid_stats_*.npz``
(Heusel et al. 2017, http://bioinf.jku.at/research/ttur/), clean-fid's ``<dataset>_<mode>_<split>_<res>.npz``
(Parmar et al. 2022, https://www.cs.cmu.edu/~clean-fid/stats/) and the ADM evaluator's reference batches
``VIRTUAL_*.npz`` (Dhariwal & Nichol 2021, openai/guided-diffusion evaluations/README.md). Each is registered
here as a `RefStats` entry: dataset, split, resolution, image count, the fidkit protocol that reproduces the
tool that computed it (`fidkit.protocols`), URL, and the SHA-256 and size where one is published or pinned by
other projects (``digest_source`` cites where; where no digest is published anywhere it says so, and
`verify_file` reports "no published digest", never "ok").

`load` reads any statistics file and, when it is a registered one (by SHA-256 where a digest is known, else
by file name and shape, said in the provenance's description), fills the provenance from the entry
(extractor, weights file, resize policy, input size, protocol, dataset, URL, digest) instead of "unknown";
``spatial=True`` reads the ADM batches' sFID statistics. `get` downloads an entry through the weights
manager's machinery (`fidkit.weights.cache`: inter-process lock, resumed transfers, temp file renamed only
after the size and digest check), into ``$FIDKIT_HOME/refstats`` or a folder given. ``fidkit refstats
list|get|verify`` is the command line (`add_cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from . import npfile
from ._atomic import atomic_path
from .errors import FidkitWarning, InputError, WeightsError
from .stats import UNKNOWN, Provenance, Stats

Format = Literal["ttur", "clean-fid", "adm"]
#: The status words of `verify_file`, as ``fidkit refstats verify`` prints them.
Status = Literal["ok", "mismatch", "no published digest", "missing"]
NO_DIGEST = "no published digest"


@dataclass(frozen=True)
class RefStats:
    """One published statistics file.

    ``name``: fidkit's key (``ttur-cifar10-train``); ``filename``: the file's published name; ``dataset``,
    ``split``, ``resolution`` (pixels of the square images the statistics were computed from, None where the
    publisher does not say), ``images`` (how many images, None where not published); ``protocol``: the
    `fidkit.protocols` name that reproduces the tool that computed it; ``format``: whose layout
    (`fidkit.npfile.stats_layout`); ``sha256``/``size``: the published or pinned SHA-256 and byte size,
    None where none is published; ``digest_source``: where the digest comes from, or why there is none;
    ``dim``: the feature dimension of ``mu``; ``spatial``: whether it holds sFID statistics.
    """

    name: str
    filename: str
    url: str
    dataset: str
    split: str
    resolution: int | None
    images: int | None
    protocol: str
    format: Format
    sha256: str | None
    size: int | None
    digest_source: str
    note: str = ""
    dim: int = 2048
    spatial: bool = False

    @property
    def pinned(self) -> bool:
        """Returns whether a SHA-256 is registered for this file."""
        return self.sha256 is not None


# ----------------------------------------------------------------------------------------- the registry

_TTUR_URL = "http://bioinf.jku.at/research/ttur/ttur_stats"
_TTUR_NO_DIGEST = ("no published digest: TTUR's README lists the URL only, and no project pinning one was "
                   "found by full-text code search")
#: (name, file, dataset, split, resolution, note), from TTUR's README "Precalculated Statistics for FID".
_TTUR = (
    ("cifar10-train", "fid_stats_cifar10_train.npz", "CIFAR-10", "train", 32, "all 50,000 training images"),
    ("celeba", "fid_stats_celeba.npz", "CelebA (cropped, 64x64)", "all", 64,
     "all images of the 'cropped CelebA' at 64x64 (README); how it was cropped is not documented there"),
    ("lsun-bedroom-train", "fid_stats_lsun_train.npz", "LSUN bedroom", "train", None,
     "all training images; the resolution is not stated"),
    ("svhn-train", "fid_stats_svhn_train.npz", "SVHN", "train", 32, "all training images"),
    ("imagenet-train", "fid_stats_imagenet_train.npz", "ImageNet (64x64 downsampled)", "train", 64,
     "all training images; the README links the 64x64 downsampled ImageNet (image-net.org/small)"),
    ("imagenet-valid", "fid_stats_imagenet_valid.npz", "ImageNet (64x64 downsampled)", "valid", 64,
     "all validation images; the README links the 64x64 downsampled ImageNet (image-net.org/small)"),
)

_CLEANFID_URL = "https://www.cs.cmu.edu/~clean-fid/stats"
_CLEANFID_NO_DIGEST = ("no published digest: clean-fid's features.get_reference_statistics downloads without "
                       "a check, and no project pinning one was found by full-text code search")
#: clean-fid's mode -> fidkit protocol (fidkit/protocols.py records each mode).
_CLEANFID_MODES = {"clean": "clean-fid", "legacy_tensorflow": "clean-fid-legacy-tensorflow",
                   "legacy_pytorch": "clean-fid-legacy-pytorch"}
#: (dataset, resolutions, split, images), clean-fid README "Supported Precomputed Datasets" (v0.1.35); each
#: row exists in the three modes.
_CLEANFID = (
    ("cifar10", (32,), "train", 50_000), ("cifar10", (32,), "test", 10_000),
    ("ffhq", (1024, 256), "trainval", 50_000), ("ffhq", (1024, 256), "trainval70k", 70_000),
    ("lsun_church", (256,), "train", 50_000), ("lsun_horse", (256,), "train", 50_000),
    ("lsun_cat", (256,), "train", 50_000), ("lsun_cat", (256,), "trainfull", 1_657_264),
    ("afhq_cat", (512,), "train", 5153), ("afhq_dog", (512,), "train", 4739),
    ("afhq_wild", (512,), "train", 4738), ("brecahad", (512,), "train", 1944),
    ("metfaces", (1024,), "train", 1336), ("horse2zebra", (256,), "test", 140),
    ("cat2dog", (256,), "test", 500),
)

_ADM_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches"
_ADM_NO_DIGEST = ("no published digest: guided-diffusion's evaluations/README.md lists the URL only, and no "
                  "project pinning one was found by full-text code search")
_ADM_NOTE = ("statistics over the whole data set plus 10,000 images (arr_0) for precision/recall "
             "(evaluations/README.md); mu/sigma pool3, mu_s/sigma_s the sFID statistics")
#: (name, path under the URL, dataset, resolution, sha256, size, digest source)
_ADM = (
    ("imagenet64", "imagenet/64/VIRTUAL_imagenet64_labeled.npz", "ImageNet", 64, None, None, _ADM_NO_DIGEST),
    ("imagenet128", "imagenet/128/VIRTUAL_imagenet128_labeled.npz", "ImageNet", 128, None, None,
     _ADM_NO_DIGEST),
    ("imagenet256", "imagenet/256/VIRTUAL_imagenet256_labeled.npz", "ImageNet", 256,
     "b32732719497e42660a9affb4a966068cba0855ac449b82015e34ec376d20758", 2_037_122_530,
     "SHA-256 and size of the Git LFS pointer committed as VIRTUAL_imagenet256_labeled.npz in "
     "ruizegao/efficient-dit, and pinned with this URL as the download check of several unrelated public "
     "projects (found by full-text code search, each with the same size); OpenAI publishes none"),
    ("imagenet512", "imagenet/512/VIRTUAL_imagenet512.npz", "ImageNet", 512, None, None, _ADM_NO_DIGEST),
    ("lsun-bedroom256", "lsun/bedroom/VIRTUAL_lsun_bedroom256.npz", "LSUN bedroom", 256, None, None,
     _ADM_NO_DIGEST),
    ("lsun-cat256", "lsun/cat/VIRTUAL_lsun_cat256.npz", "LSUN cat", 256, None, None, _ADM_NO_DIGEST),
    ("lsun-horse256", "lsun/horse/VIRTUAL_lsun_horse256.npz", "LSUN horse", 256, None, None, _ADM_NO_DIGEST),
)


def _entries() -> list[RefStats]:
    out = [RefStats(f"ttur-{name}", file, f"{_TTUR_URL}/{file}", dataset, split, res, None, "ttur", "ttur",
                    None, None, _TTUR_NO_DIGEST, note)
           for name, file, dataset, split, res, note in _TTUR]
    for dataset, resolutions, split, images in _CLEANFID:
        for res in resolutions:
            for mode, protocol in _CLEANFID_MODES.items():
                file = f"{dataset}_{mode}_{split}_{res}.npz"
                out.append(RefStats(
                    f"cleanfid-{dataset}-{mode}-{split}-{res}".replace("_", "-"), file, f"{_CLEANFID_URL}/{file}",
                    dataset, split, res, images, protocol, "clean-fid", None, None, _CLEANFID_NO_DIGEST,
                    f"clean-fid mode={mode!r}; the URL is clean-fid's base_url + file name (clean-fid itself "
                    f"requests it with a doubled slash)"))
    for name, path, dataset, res, sha, size, source in _ADM:
        out.append(RefStats(f"adm-{name}", path.rsplit("/", 1)[1], f"{_ADM_URL}/{path}", dataset,
                            "train", res, None, "adm", "adm", sha, size, source, _ADM_NOTE, spatial=True))
    return out


#: The registered reference statistics, by name.
REFSTATS: Mapping[str, RefStats] = MappingProxyType({e.name: e for e in _entries()})


def entry(name: str) -> RefStats:
    """Returns the entry registered under ``name`` or under the published file name ``name``.

    Raises InputError naming the closest registered names when there is none.
    """
    if name in REFSTATS:
        return REFSTATS[name]
    for e in REFSTATS.values():
        if e.filename == name:
            return e
    import difflib

    close = difflib.get_close_matches(name, list(REFSTATS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "`fidkit refstats list` shows them"
    raise InputError(f"unknown reference statistics {name!r}; {hint}")


# ----------------------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Returns the folder where fidkit keeps downloaded reference statistics: ``$FIDKIT_HOME/refstats``."""
    from .weights.cache import fidkit_home

    return fidkit_home() / "refstats"


def _cleanfid_stats_dir() -> Path | None:
    """Returns clean-fid's own statistics folder (``<site-packages>/cleanfid/stats``) without importing it."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("cleanfid")
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0]) / "stats"
    return None


def search_dirs(e: RefStats) -> list[tuple[str, Path]]:
    """Returns the (label, folder) pairs searched for ``e``, in order: ``$FIDKIT_REFSTATS_DIR`` (os.pathsep-
    separated folders), fidkit's cache, and for clean-fid files clean-fid's own statistics folder."""
    dirs = [("FIDKIT_REFSTATS_DIR", Path(d).expanduser())
            for d in os.environ.get("FIDKIT_REFSTATS_DIR", "").split(os.pathsep) if d]
    dirs.append(("cache", cache_dir()))
    if e.format == "clean-fid":
        cf = _cleanfid_stats_dir()
        if cf is not None:
            dirs.append(("clean-fid", cf))
    return dirs


def find_local(e: RefStats) -> Path | None:
    """Returns the first existing copy of ``e`` in `search_dirs`, or None."""
    for _, d in search_dirs(e):
        if (d / e.filename).is_file():
            return d / e.filename
    return None


# ----------------------------------------------------------------------------------------- checks


def _problem(e: RefStats, path: Path) -> tuple[str | None, str]:
    """Returns (what is wrong with ``path`` as ``e``'s file, or None; its SHA-256, or "" when not hashed):
    the size first (no read), then the digest when one is registered."""
    from .weights.files import sha256_file

    have = path.stat().st_size
    if e.size is not None and have != e.size:
        how = "truncated" if have < e.size else "longer than published"
        return f"is {have} bytes, expected {e.size} for {e.filename} ({how})", ""
    if e.sha256 is None:
        return None, ""
    sha = sha256_file(path)
    if sha != e.sha256:
        return f"has SHA-256 {sha}, expected {e.sha256} for {e.filename}", sha
    return None, sha


def _headers(e: RefStats, path: Path) -> str:
    """Returns the stored shapes in words after checking that ``path`` holds ``e``'s statistics (headers only);
    raises InputError naming the file when it is damaged or holds something else."""
    info = npfile.require(path, "stats")
    mu, sigma = info.arrays["mu"], info.arrays["sigma"]
    if mu.shape != (e.dim,) or sigma.shape != (e.dim, e.dim):
        raise InputError(f"{path}: holds mu {mu.shape} and sigma {sigma.shape}, expected ({e.dim},) and "
                         f"{(e.dim, e.dim)} for {e.name}; download it again (`fidkit refstats get {e.name}`)")
    return f"mu {mu.describe()}, sigma {sigma.describe()}"


@dataclass(frozen=True)
class Verified:
    """The result of checking one file: ``status`` (`Status`), the path, its SHA-256 ("" when not computed,
    e.g. no digest to compare with) and ``detail`` (what was checked, or what is wrong)."""

    name: str
    path: str
    status: Status
    sha256: str
    detail: str


def verify_file(e: RefStats, path: str | os.PathLike[str]) -> Verified:
    """Returns whether the file at ``path`` is ``e``'s published file: size and SHA-256 where registered.

    Status ``"ok"`` only when a registered digest matches; ``"no published digest"`` when there is none to
    check (the headers are checked: the shapes must be ``e``'s); ``"mismatch"`` for another size or digest;
    ``"missing"`` when there is no file. Raises InputError naming the file when it is damaged (truncated,
    not a statistics .npz) and its size or digest does not already say so.
    """
    p = Path(path)
    if not p.is_file():
        return Verified(e.name, str(p), "missing", "", "no such file")
    problem, sha = _problem(e, p)
    if problem:
        return Verified(e.name, str(p), "mismatch", sha, problem)
    shapes = _headers(e, p)
    if not e.pinned:
        from .weights.files import sha256_file

        return Verified(e.name, str(p), NO_DIGEST, sha256_file(p),
                        f"{shapes}; {NO_DIGEST} to check against, only the shapes were checked")
    return Verified(e.name, str(p), "ok", sha, f"{shapes}; SHA-256 matches ({e.digest_source.split(';')[0]})")


# ----------------------------------------------------------------------------------------- download


def _offline() -> bool:
    from .weights.cache import _offline as offline

    return offline()


def _where_to_put(e: RefStats, dest: Path) -> str:
    return f"download {e.url} and put it at {dest} (or in $FIDKIT_REFSTATS_DIR)"


def get(name: str, to: str | os.PathLike[str] | None = None, *, progress: bool = True,
        timeout: float = 60.0) -> Path:
    """Returns the path of reference statistics ``name`` (a registered name or file name), downloading it first
    into ``to`` (default: fidkit's cache, `cache_dir`) when no copy is found.

    Without ``to``, a copy in any of `search_dirs` is used after its check. The transfer reuses the weights
    manager's (`fidkit.weights.cache`): an inter-process lock, resumed with HTTP Range when it breaks, into a
    temp file renamed into place only after the size and digest check; a file with no published digest is
    checked for its shapes and kept with a FidkitWarning saying so. Raises InputError for an unknown name,
    WeightsError when a found or downloaded file fails its size or digest (nothing downloaded is kept), when
    the transfer fails, or when ``$FIDKIT_OFFLINE`` is set and there is no copy: each names the file, the URL
    and where to put it.
    """
    from .weights.cache import _fetch, _lock

    e = entry(name)
    dest = Path(to).expanduser() / e.filename if to is not None else cache_dir() / e.filename
    found = dest if dest.is_file() else None if to is not None else find_local(e)
    if found is not None:
        return _checked(e, found, downloaded=False)
    if _offline():
        raise WeightsError(f"reference statistics {e.filename} ({e.name}) not found and FIDKIT_OFFLINE is set; "
                           f"{_where_to_put(e, dest)}")
    if dest.parent.exists() and not dest.parent.is_dir():
        raise InputError(f"--to {dest.parent}: is a file, not a folder; name a folder to download into")
    with _lock(dest):
        if dest.is_file():  # another process downloaded it while this one waited
            return _checked(e, dest, downloaded=False)
        with atomic_path(dest) as tmp:
            try:
                _fetch(e.url, tmp, e.filename, progress=progress, timeout=timeout)
            except WeightsError as exc:
                raise WeightsError(f"{exc}; or {_where_to_put(e, dest)}") from None
            problem, _ = _problem(e, tmp)
            if problem:
                raise WeightsError(f"{e.filename}: downloaded from {e.url}, {problem}; nothing was kept — "
                                   f"retry, or report a changed file")
            _headers_or_raise(e, tmp, e.url)
    return _checked(e, dest, downloaded=True)


def _headers_or_raise(e: RefStats, path: Path, url: str) -> None:
    try:
        _headers(e, path)
    except InputError as exc:
        raise WeightsError(f"{e.filename}: downloaded from {url}, but {str(exc).split(': ', 1)[1]}; nothing "
                           f"was kept") from None


def _checked(e: RefStats, path: Path, *, downloaded: bool) -> Path:
    v = verify_file(e, path)
    if v.status == "mismatch":
        raise WeightsError(f"{path}: {v.detail}; fidkit did not touch it — delete it to download a fresh copy "
                           f"(`fidkit refstats get {e.name}`)")
    if v.status == NO_DIGEST:
        warnings.warn(f"{path}: {e.filename} has {NO_DIGEST} to check against; its shapes are right and it is "
                      f"used as found (SHA-256 {v.sha256[:12]}…)", FidkitWarning, stacklevel=3)
    return path


# ----------------------------------------------------------------------------------------- loading


def identify(path: str | os.PathLike[str]) -> tuple[RefStats | None, str]:
    """Returns (the registered entry the file at ``path`` is, or None; how it was matched, in words).

    By SHA-256 when an entry with a registered digest has the file's size (or name); else by file name and
    ``mu`` shape, for entries without a digest ("matched by name and shape only"). A file named like an entry
    whose registered digest it fails is not that entry (returned None with the reason). Reads headers and,
    only for candidates, the file's bytes. Raises InputError when the file is not statistics.
    """
    from .weights.files import sha256_file

    p = Path(path)
    info = npfile.require(p, "stats")
    size = p.stat().st_size
    mu = info.arrays["mu"].shape
    named = [e for e in REFSTATS.values() if e.filename == p.name]
    pinned = [e for e in REFSTATS.values() if e.pinned and (e.size == size or e in named)]
    if pinned:
        sha = sha256_file(p)
        for e in pinned:
            if sha == e.sha256:
                return e, f"matched {e.name} by SHA-256"
    for e in named:
        if e.pinned:
            return None, (f"named like {e.name} but its SHA-256 is not the registered one, so it is not "
                          f"taken for it")
        if mu == (e.dim,):
            return e, f"matched {e.name} by file name and shape only ({NO_DIGEST})"
    return None, "not a registered file"


def provenance_for(e: RefStats, how: str) -> Provenance:
    """Returns the provenance of ``e``'s statistics as the registry knows it.

    Extractor, resize policy and input size come from ``e``'s protocol (`fidkit.protocols`), the weights
    file name from the protocol's weights; the weights' canonical digest stays "unknown" (not recorded by the
    publishers); ``runtime`` names the publishing tool; ``description`` says the data set, split, resolution,
    URL, the file's digest and ``how`` it was matched; the protocol label goes in ``protocol`` when
    `Provenance` has that field.
    """
    from .protocols import get_protocol
    from .registry import get_spec

    proto = get_protocol(e.protocol)
    h, w = get_spec(proto.extractor).input_size
    res = f"{e.resolution}x{e.resolution}" if e.resolution else "resolution not stated"
    n = f"{e.images:,} images" if e.images else "image count not stated"
    digest = f"SHA-256 {e.sha256}" if e.sha256 else NO_DIGEST
    values: dict[str, Any] = {
        "extractor": proto.extractor, "runtime": f"{e.format} (published)",
        "weights_sha256": UNKNOWN, "weights_source": proto.weights[0], "resize_policy": proto.policy,
        "input_size": f"{h}x{w}",
        "description": f"{e.dataset} {e.split}, {res}, {n}; {e.filename} from {e.url} ({digest}); {how}",
        "protocol": proto.label,
    }
    names = {f.name for f in fields(Provenance)}
    return Provenance(**{k: v for k, v in values.items() if k in names})


def load(path: str | os.PathLike[str], *, spatial: bool = False) -> Stats:
    """Returns the statistics in the file at ``path`` (any layout `fidkit.stats.load` reads), with the
    provenance of its registry entry when it is a registered file (`identify`), else the file's own.

    ``spatial`` reads the sFID statistics (``mu_s``/``sigma_s``, 2023-d) of an ADM reference batch, with
    the same provenance and "spatial" in the description. ``n`` is None for published files (none records
    it). Raises InputError naming the file when it is not statistics or, with ``spatial``, has none.
    """
    from .stats import load as load_stats

    e, how = identify(path) if npfile.sniff(path).kind == "stats" else (None, "")
    if not spatial:
        s = load_stats(path)
        if e is not None:  # the arrays are validated already: set the provenance without a second check
            object.__setattr__(s, "provenance", provenance_for(e, how))
        return s
    mean, cov = npfile.read_stats(path, spatial=True)
    prov = provenance_for(e, how) if e is not None else Provenance()
    prov = replace(prov, description=f"spatial (sFID) statistics mu_s/sigma_s; {prov.description}".rstrip("; "))
    try:
        return Stats(None, mean, cov, prov)
    except InputError as exc:
        raise InputError(f"{path}: spatial statistics: {exc}") from None


def markdown() -> str:
    """Returns reference_stats/published.md: the registry as a Markdown table, with each digest's source
    (tests/test_refstats.py checks the file is this text)."""
    lines = [
        "# Published reference statistics fidkit knows",
        "",
        "Generated from `fidkit/refstats.py` by `fidkit.refstats.markdown()`; do not edit by hand. "
        "`fidkit refstats list` shows the same, with where each file is found locally; `fidkit refstats get "
        "NAME` downloads one into `$FIDKIT_HOME/refstats` (lock, resume, size and SHA-256 check, atomic), "
        "`fidkit refstats verify` checks copies, and `fidkit.refstats.load(path)` reads any of them with "
        "the provenance below (extractor, weights file, resize policy and input size from the protocol) "
        "instead of \"unknown\", so `fidkit explain` can say whether two files are comparable. A file with "
        "no published digest is matched by name and shape only, and `verify` says \"no published digest\", "
        "never \"ok\". The ADM batches also hold the sFID statistics (`mu_s`/`sigma_s`, "
        "`fidkit.refstats.load(path, spatial=True)`).",
        "",
        "| name | file | data set | split | res | images | protocol | SHA-256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in REFSTATS.values():
        sha = f"`{e.sha256[:16]}…`" if e.sha256 else NO_DIGEST
        lines.append(f"| `{e.name}` | [{e.filename}]({e.url}) | {e.dataset} | {e.split} | "
                     f"{e.resolution or '?'} | {f'{e.images:,}' if e.images else '?'} | {e.protocol} | {sha} |")
    sources = dict.fromkeys(e.digest_source for e in REFSTATS.values())
    lines += ["", "Where the digests come from:", ""] + [f"- {s}" for s in sources] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- command line


def add_cli(subparsers: argparse._SubParsersAction,
            parents: list[argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
    """Returns the ``refstats`` parser after adding it, with ``list``, ``get`` and ``verify``, to ``subparsers``.

    Each leaf sets ``func``: ``args.func(args)`` returns the exit code (0 fine; 1 for ``verify``, a file that
    is not the published one or a named file that is missing) or raises `InputError` / `WeightsError` (an
    unknown name, a damaged file, a failed download), which fidkit's CLI prints as one line with status 2.
    """
    parents = parents or []
    p = subparsers.add_parser("refstats", parents=parents, help="published reference statistics: list, "
                                                                 "download, verify")
    sub = p.add_subparsers(dest="refstats_command", required=True)
    ls = sub.add_parser("list", parents=parents, help="the registered reference statistics and where they are")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_cli_list)
    g = sub.add_parser("get", parents=parents, help="download (or find) and verify reference statistics")
    g.add_argument("name", help="a registered name or published file name (see `fidkit refstats list`)")
    g.add_argument("--to", metavar="DIR", help=f"download into DIR (default: fidkit's cache, {cache_dir()})")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.set_defaults(func=_cli_get)
    v = sub.add_parser("verify", parents=parents, help="check files against their published SHA-256")
    v.add_argument("names", nargs="*", metavar="NAME",
                   help="registered names, file names or paths (default: every registered file found locally)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=_cli_verify)
    return p


def _cli_list(args: argparse.Namespace) -> int:
    rows = []
    for e in REFSTATS.values():
        found = find_local(e)
        rows.append({**asdict(e), "found": str(found) if found else None})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    head = ("name", "dataset", "split", "res", "images", "protocol", "sha256", "size", "local")
    table = [head] + [(r["name"], r["dataset"], r["split"], str(r["resolution"] or "?"),
                       f"{r['images']:,}" if r["images"] else "?", r["protocol"],
                       r["sha256"][:12] + "…" if r["sha256"] else NO_DIGEST,
                       f"{r['size']:,}" if r["size"] else "?", r["found"] or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"({len(rows)} files; `fidkit refstats get NAME` downloads one into {cache_dir()})")
    return 0


def _cli_get(args: argparse.Namespace) -> int:
    e = entry(args.name)
    path = get(args.name, args.to, progress=not args.json)
    v = verify_file(e, path)
    if args.json:
        print(json.dumps({**asdict(v), "url": e.url}, indent=1))
    else:
        print(f"{v.status:9s} {path}  {v.detail}")
    return 0


_PATHLIKE = re.compile(r"[/\\]")


def _cli_verify(args: argparse.Namespace) -> int:
    targets: list[tuple[RefStats, Path]] = []
    if args.names:
        for n in args.names:
            p = Path(n).expanduser()
            if p.is_file() or _PATHLIKE.search(n):
                e, _how = identify(p) if p.is_file() else (None, "")
                e = e or (entry(p.name) if p.name in {x.filename for x in REFSTATS.values()} else None)
                if e is None:
                    raise InputError(f"{n}: not a registered reference statistics file (by name or SHA-256); "
                                     f"`fidkit refstats list` shows them")
                targets.append((e, p))
            else:
                e = entry(n)
                targets.append((e, find_local(e) or cache_dir() / e.filename))
    else:
        targets = [(e, p) for e in REFSTATS.values() if (p := find_local(e)) is not None]
    results = [verify_file(e, p) for e, p in targets]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        for r in results:
            print(f"{r.status:9s} {r.name}  {r.path}  {r.detail}")
        if not results:
            print("no registered reference statistics found locally")
    return 1 if any(r.status in ("mismatch", "missing") for r in results) else 0
