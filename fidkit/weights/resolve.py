"""Choosing an extractor's weights: an explicit file, else the first registered file found locally, else the
first one that downloads; checked, converted to canonical form and returned as `CanonicalWeights`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FidkitWarning, InputError, WeightsError
from . import files
from .cache import _DigestMismatch, _offline, _verify_or_raise, cache_dir, download, find_local
from .canonical import load_canonical, to_canonical
from .files import WeightsFile, _matches_pin, sha256_file


@dataclass(frozen=True)
class CanonicalWeights:
    """A canonical ``.npz`` ready for any runtime, with the digest of its content and where it came from."""

    path: str
    digest: str
    source: str
    official: bool
    source_sha256: str = ""

    def load(self) -> dict[str, np.ndarray]:
        """Returns the arrays of the canonical file, by name."""
        return load_canonical(self.path)


def _entries(names: tuple[str, ...]) -> list[WeightsFile]:
    unknown = [n for n in names if n not in files.WEIGHTS_FILES]
    if unknown:
        raise InputError(f"unknown weights file(s) {unknown}; registered: {', '.join(files.WEIGHTS_FILES)}")
    return [files.WEIGHTS_FILES[n] for n in names]


def _ordered(entries: list[WeightsFile]) -> list[WeightsFile]:
    """Returns ``entries`` with those whose converter can run here (its framework is installed) first."""
    usable = [e for e in entries if e.runtime is None or files.runtime_installed(e.runtime)]
    return usable + [e for e in entries if e not in usable]


def _plan(names: tuple[str, ...]) -> tuple[WeightsFile | None, Path | None]:
    """Returns the file `locate` would use and where it lies: (entry, path) for the first found locally,
    (entry, None) for the first it would download, (None, None) when none is here and none can be fetched
    (no URL, or ``$FIDKIT_OFFLINE``). Downloads nothing. Raises `InputError` for an unregistered name."""
    ordered = _ordered(_entries(names))
    for entry in ordered:
        found = find_local(entry)
        if found is not None:
            return entry, found[1]
    if not _offline():
        for entry in ordered:
            if entry.url is not None:
                return entry, None
    return None, None


def locate(names: tuple[str, ...], *, download_missing: bool = True,
           progress: bool = True) -> tuple[WeightsFile, Path]:
    """Returns the first registered file of ``names`` found locally, else the first one downloaded.

    Files whose converter can run here (its framework is installed) come first, so a TensorFlow-only
    install uses or fetches the ``.tgz`` rather than a ``.pth`` it could not convert. Raises `InputError`
    for an unregistered name, and `WeightsError` when none is found and none downloads (offline, or
    ``download_missing`` False), naming the first file, its URL and where to put it, or when a downloaded
    file fails its digest.
    """
    entries = _entries(names)
    ordered = _ordered(entries)
    for entry in ordered:
        found = find_local(entry)
        if found is not None:
            return entry, found[1]
    errors = []
    if download_missing and not _offline():
        for entry in ordered:
            if entry.url is None:
                continue
            try:
                return entry, download(entry, progress=progress)
            except _DigestMismatch:
                raise
            except WeightsError as exc:
                errors.append(str(exc))
    first = next((e for e in entries if e.url is not None), entries[0])
    why = f" ({errors[0]})" if errors else " (FIDKIT_OFFLINE is set)" if _offline() else ""
    others = [e.name for e in entries if e is not first]
    alt = f"; any of {', '.join(others)} in the same place also works" if others else ""
    raise WeightsError(f"weights file {first.name} not found and not downloadable{why}; download "
                       f"{first.url} and put it at {cache_dir() / first.name} (or in $FIDKIT_WEIGHTS_DIR, "
                       f"or pass weights=/--weights PATH){alt}")


def resolve_weights(names: tuple[str, ...], explicit: str | None) -> CanonicalWeights:
    """Returns the canonical weights for an extractor: ``explicit`` if given, else the first registered file found.

    ``names`` are the registered file names in preference order. An explicit file whose SHA-256 matches none
    of them is used with a `FidkitWarning` and ``official=False``; a found or downloaded file that fails its
    check raises `WeightsError`. A registered file with no published digest is used with a warning.

    Raises `InputError` for an unregistered name, and `WeightsError`, naming the file and what to do, when
    ``explicit`` is missing, unreadable or damaged (empty, truncated, not a zip or tar archive, an unknown
    format), when a file found locally fails its size or digest or is damaged, or when none is found and none
    downloads. Converting a non-canonical file may raise `BackendUnavailableError` (its framework is missing).
    """
    entries = _entries(tuple(names))
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {explicit} does not exist; expected one of "
                               f"{', '.join(names) or 'a canonical .npz'} (see `fidkit weights where`)")
        sha = sha256_file(path)
        canon, digest = to_canonical(path, sha)
        official = _official(entries, path, sha, digest)
        named = files.WEIGHTS_FILES.get(path.name)
        if not official and named is not None and _matches_pin(named, sha) is None:
            warnings.warn(f"{path}: {named.name} has no published SHA-256 to check against; using it as "
                          f"given (SHA-256 {sha[:12]}…, canonical digest {digest[:12]}…)", FidkitWarning,
                          stacklevel=2)
        elif not official:
            warnings.warn(f"weights {path} (SHA-256 {sha[:12]}…) match no official file of "
                          f"{', '.join(names) or 'this extractor'}; using them as unofficial weights, "
                          f"recorded as digest {digest[:12]}…", FidkitWarning, stacklevel=2)
        return CanonicalWeights(str(canon), digest, path.name, official, sha)
    entry, path = locate(tuple(names))
    sha = _verify_or_raise(entry, path)
    canon, digest = to_canonical(path, sha)
    if entry.canonical_digest and digest != entry.canonical_digest:
        raise WeightsError(f"{path}: converts to canonical digest {digest}, expected {entry.canonical_digest} "
                           f"for {entry.name}; the converter or the file changed — report it to fidkit")
    pin = _matches_pin(entry, sha)
    if pin is None and not entry.bundled:
        sized = ", its size is the published one" if entry.size is not None else ""
        warnings.warn(f"{path}: {entry.name} has no published SHA-256 to check against; using it as found "
                      f"(SHA-256 {sha[:12]}…, canonical digest {digest[:12]}…{sized})", FidkitWarning,
                      stacklevel=2)
    return CanonicalWeights(str(canon), digest, entry.name, bool(pin) or entry.bundled, sha)


def _official(entries: list[WeightsFile], path: Path, sha: str, digest: str) -> bool:
    """Returns whether an explicit file is one of the registered files, by file or canonical digest."""
    for entry in entries:
        if _matches_pin(entry, sha) or (entry.canonical_digest and entry.canonical_digest == digest):
            return True
        if entry.bundled:
            bundled = files._bundled_dir() / entry.name
            if bundled.is_file() and sha256_file(bundled) == sha:
                return True
    return False
