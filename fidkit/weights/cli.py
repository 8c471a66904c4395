"""``fidkit weights where|verify|convert``: where each weights file is looked for, whether files are the
published ones, and conversion to a canonical ``.npz``. `add_cli` plugs the subcommands into fidkit's parser."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError, WeightsError
from . import files
from .cache import _offline, cache_dir, find_local, search_dirs
from .canonical import convert, save_canonical, to_canonical
from .files import WeightsFile, _expected, _matches_pin, _size_mismatch, sha256_file
from .formats import damage, detect_format
from .resolve import _plan

_REDOWNLOAD = "download it again (`fidkit weights where` says from where)"


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Returns the ``weights`` parser after adding it, with ``where``, ``verify`` and ``convert``, to ``subparsers``.

    Each leaf sets ``func``: call ``args.func(args)``, which returns the process exit code (0 fine, 1 a file
    that is not the published one) or raises `WeightsError` / `InputError` for a damaged file, a missing
    one or an unknown name, which fidkit's CLI prints as one line and exits with status 2.
    """
    p = subparsers.add_parser("weights", help="find, verify and convert network weights files")
    sub = p.add_subparsers(dest="weights_command", required=True)

    w = sub.add_parser("where", help="where each weights file is looked for, found, or would be downloaded to")
    w.add_argument("names", nargs="*", help="registered file names or extractor names (default: all files)")
    w.add_argument("--json", action="store_true", help="print JSON")
    w.set_defaults(func=_cli_where)

    v = sub.add_parser("verify", help="check weights files against their published SHA-256")
    v.add_argument("paths", nargs="*", help="files to check (default: every registered file found locally)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=_cli_verify)

    c = sub.add_parser("convert", help="convert a weights file to a canonical .npz and print its digest")
    c.add_argument("source", help="a .pth, TorchScript .pt, .pb, .tgz, .safetensors or .npz file")
    c.add_argument("-o", "--output", help="where to write the .npz (default: fidkit's canonical cache)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_cli_convert)
    return p


def _groups(args_names: list[str]) -> list[tuple[str | None, list[str]]]:
    """Returns (extractor name or None, file names): one group per extractor named, one per file named."""
    if not args_names:
        return [(None, list(files.WEIGHTS_FILES))]
    return [(None, [n]) if n in files.WEIGHTS_FILES else (n, list(_extractor_files(n))) for n in args_names]


def _extractor_files(name: str) -> tuple[str, ...]:
    """Returns the weights file names of extractor ``name``, in preference order.

    The registry is looked up in ``sys.modules``, not imported, so that this package stays below it (the
    registry builds extractors on resolved weights). It is always there: ``fidkit/__init__.py`` imports it
    (``fidkit.get_spec``) before anything in ``fidkit.weights`` runs. Raises `InputError` for a name that is
    neither a registered file nor an extractor.
    """
    registry = sys.modules.get("fidkit.registry")
    if registry is None:
        raise InputError(f"unknown weights file {name!r}; registered: {', '.join(files.WEIGHTS_FILES)}")
    return tuple(registry.get_spec(name).weights)


def _emit(args: argparse.Namespace, payload: object, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        print("\n".join(lines))


def _cli_where(args: argparse.Namespace) -> int:
    rows, lines = [], []
    for extractor, names in _groups(args.names):
        chosen, chosen_at = _plan(tuple(names)) if extractor else (None, None)
        if extractor:
            lines.append(_summary(extractor, names, chosen, chosen_at))
        for name in names:
            entry = files.WEIGHTS_FILES[name]
            found = find_local(entry)
            used = chosen is not None and chosen.name == name
            row = {**asdict(entry), "searched": [str(d / name) for _, d in search_dirs(entry)],
                   "found": str(found[1]) if found else None, "download_to": str(cache_dir() / name),
                   "extractor": extractor, "used": used}
            rows.append(row)
            mark = (" — this one is used" if found else " — this one would be downloaded") if used else ""
            lines.append(f"{name}: {'found at ' + str(found[1]) if found else 'missing'}{mark}")
            lines.extend(f"  searched {s}" for s in row["searched"])
            if not found and entry.url:
                lines.append(f"  download {entry.url} -> {row['download_to']}")
    if not args.names:
        lines.append("(an extractor needs only one of its files: `fidkit weights where EXTRACTOR` says which one "
                     "it uses or would download)")
    _emit(args, rows, lines)
    return 0


def _summary(extractor: str, names: list[str], chosen: WeightsFile | None, chosen_at: Path | None) -> str:
    """Returns the line saying which of an extractor's files is enough and which one would be used."""
    if not names:
        return f"{extractor}: needs no weights file"
    need = f"{extractor}: needs one weights file; any one of these {len(names)} is enough" \
        if len(names) > 1 else f"{extractor}: needs this weights file"
    if chosen is not None and chosen_at is not None:
        return f"{need}; it uses {chosen.name} (found at {chosen_at})"
    if chosen is not None:
        return f"{need}; none is here, so it would download {chosen.name} into {cache_dir()}"
    why = "FIDKIT_OFFLINE is set" if _offline() else "none can be downloaded"
    return (f"{need}; none is here and {why}: put one at a path searched below, or pass one with "
            f"weights=/--weights")


def _cli_verify(args: argparse.Namespace) -> int:
    targets: list[tuple[WeightsFile | None, Path]] = []
    if args.paths:
        for p in args.paths:
            targets.append((files.WEIGHTS_FILES.get(Path(p).name), Path(p)))
    else:
        for entry in files.WEIGHTS_FILES.values():
            found = find_local(entry)
            if found:
                targets.append((entry, found[1]))
    rows, lines, bad, damaged = [], [], 0, []
    for entry, path in targets:
        if not path.is_file():
            row = {"path": str(path), "status": "missing"}
        elif broken := damage(path):
            row = {"path": str(path), "status": "damaged", "problem": broken}
            damaged.append(f"{path}: {broken}")
        else:
            sha = sha256_file(path)
            matches = [e.name for e in files.WEIGHTS_FILES.values() if _matches_pin(e, sha)]
            pin = _matches_pin(entry, sha) if entry else None
            if _size_mismatch(entry, path):
                pin = False
            status = ("ok" if pin else "mismatch" if pin is False else
                      "unpinned" if entry else "ok" if matches else "unknown")
            pinned = entry is not None and (entry.sha256 or entry.sha256_prefix)
            row = {"path": str(path), "sha256": sha, "status": status,
                   "expected": _expected(entry) if pinned and entry else None, "matches": matches}
        bad += row["status"] in ("mismatch", "missing")
        rows.append(row)
        detail = f"  sha256 {row['sha256']}" if "sha256" in row else f"  {row['problem']}" if "problem" in row \
            else ""
        lines.append(f"{row['status']:9s} {row['path']}{detail}")
    if damaged and len(rows) == 1:
        raise WeightsError(f"{damaged[0]}; {_REDOWNLOAD}")
    _emit(args, rows, lines or ["no registered weights file found locally"])
    if damaged:
        more = f" (and {len(damaged) - 1} more, listed above)" if len(damaged) > 1 else " (listed above)"
        raise WeightsError(f"{damaged[0]}{more}; {_REDOWNLOAD}")
    return 1 if bad else 0


def _cli_convert(args: argparse.Namespace) -> int:
    src = Path(args.source)
    if not src.is_file():
        raise WeightsError(f"{src}: no such file; expected a weights file to convert")
    broken = damage(src)  # before anything is written, and before a framework is imported
    if broken:
        raise WeightsError(f"{src}: {broken}; {_REDOWNLOAD}")
    fmt = detect_format(src)
    sha = sha256_file(src)
    if args.output:
        digest = save_canonical(convert(src, fmt), args.output)
        out = Path(args.output)
    else:
        canon, digest = to_canonical(src, sha)
        out = canon
    matches = [e.name for e in files.WEIGHTS_FILES.values() if _matches_pin(e, sha)]
    _emit(args, {"source": str(src), "source_sha256": sha, "format": fmt, "output": str(out),
                 "digest": digest, "official": bool(matches)},
          [f"{src} -> {out}", f"digest {digest}"])
    return 0
