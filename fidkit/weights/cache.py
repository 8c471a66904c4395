"""Where weights files are looked for and kept: fidkit's cache, ``$FIDKIT_WEIGHTS_DIR``, the bundled files and
torch hub's checkpoints; downloads into the cache, checked and atomic; and the cache's inter-process locks.

Downloads are hand-written on urllib rather than pooch: pooch is not a core dependency (tqdm, filelock and
platformdirs are), it cannot check a bare 8-hex torch-hub prefix or a byte size (all that is published for
some files), and it takes no inter-process lock, which a shared cache needs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .._atomic import atomic_path
from .._paths import fidkit_home
from ..errors import WeightsError
from . import files
from .files import _CHUNK, WeightsFile, _expected, _matches_pin, _size_mismatch, sha256_file
from .formats import damage


class _DigestMismatch(WeightsError):
    """A file fails its published digest: never retried from another source, always reported."""


# ----------------------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Returns the folder where fidkit keeps downloaded weights files."""
    return fidkit_home() / "weights"


def canonical_dir() -> Path:
    """Returns the folder where converted canonical files are cached by source digest."""
    return cache_dir() / "canonical"


def torch_hub_checkpoints() -> Path:
    """Returns torch hub's checkpoint folder, computed as torch.hub.get_dir() does, without importing torch."""
    env = os.environ.get("TORCH_HOME")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return root / "hub" / "checkpoints"


def search_dirs(entry: WeightsFile) -> list[tuple[str, Path]]:
    """Returns the (label, folder) pairs searched for ``entry``, in order."""
    dirs: list[tuple[str, Path]] = []
    for d in os.environ.get("FIDKIT_WEIGHTS_DIR", "").split(os.pathsep):
        if d:
            dirs.append(("FIDKIT_WEIGHTS_DIR", Path(d).expanduser()))
    if entry.bundled:
        dirs.append(("bundled", files._bundled_dir()))
    dirs.append(("cache", cache_dir()))
    if entry.format in ("torch-state-dict", "torchscript"):
        dirs.append(("torch hub", torch_hub_checkpoints()))
    dirs.extend((label, Path(folder).expanduser()) for label, folder in entry.also_in)
    return dirs


def find_local(entry: WeightsFile) -> tuple[str, Path] | None:
    """Returns (label, path) of the first existing copy of ``entry`` in the search folders, or None."""
    for label, d in search_dirs(entry):
        p = d / entry.name
        if p.is_file():
            return label, p
    return None


def _offline() -> bool:
    """Returns whether ``$FIDKIT_OFFLINE`` forbids downloading (set, and not ``0``/``false``/``no``)."""
    return os.environ.get("FIDKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def _lock(path: Path, timeout: float = 3600.0) -> Iterator[None]:
    """Holds the inter-process lock ``<path>.lock`` (creating ``path``'s folder), and removes the lock file.

    Callers take it only to write ``path`` (a download, a conversion), never to read: a lookup that finds
    nothing leaves no lock file behind. The lock file is unlinked while still held, so a process that was
    waiting on it finds its inode unlinked and takes a fresh one (filelock 4 checks for that; with older
    filelock a third process arriving in that instant may duplicate the work, which stays safe because
    every file is written to a temp file and renamed into place). On Windows filelock removes it itself.
    """
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{path}.lock")
    with filelock.FileLock(str(lock_path), timeout=timeout):
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()


# ----------------------------------------------------------------------------------------- download


def download(entry: WeightsFile, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Returns the path of ``entry`` in fidkit's cache, downloading and verifying it first if it is absent.

    The body streams into a temp file in the cache folder (a broken transfer is resumed with HTTP Range), is
    checked against the published digest and only then renamed into place; a transfer that cannot be
    completed, or a corrupt one, leaves no file behind. A file lock, taken only when a download is needed
    and removed afterwards, makes two processes filling the cache at once download it once. The progress bar
    (``progress``, on stderr) appears once the server answers.

    Raises `WeightsError`: no URL, the transfer fails (naming the URL and the reason), or the file in the
    cache or the downloaded one fails its published size or digest.
    """
    if entry.url is None:
        raise WeightsError(f"{entry.name}: has no download URL; it is expected in {files._bundled_dir()}")
    final = cache_dir() / entry.name
    if final.is_file():
        _verify_or_raise(entry, final)
        return final
    with _lock(final):
        if final.is_file():  # another process downloaded it while this one waited for the lock
            _verify_or_raise(entry, final)
            return final
        with atomic_path(final) as tmp:
            _fetch(entry.url, tmp, entry.name, progress=progress, timeout=timeout)
            problem, _sha = _check(entry, tmp)
            if problem:
                raise _DigestMismatch(f"{entry.name}: downloaded from {entry.url}, {problem}; nothing was kept "
                                      f"— retry, or report a changed file")
    return final


def _fetch(url: str, dest: Path, name: str, *, progress: bool, timeout: float, attempts: int = 3) -> None:
    """Streams ``url`` into ``dest``; a transfer that breaks mid-body is resumed with an HTTP Range request
    (or restarted where the server ignores Range), at most ``attempts`` times in all. The progress bar is
    opened at the first response, so a request that fails prints none."""
    from tqdm.auto import tqdm

    have, total = 0, None
    with contextlib.ExitStack() as stack:
        bar = None
        for _ in range(attempts):
            headers = {"User-Agent": "fidkit"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                raise WeightsError(f"{name}: cannot download {url} ({_reason(exc)})") from None
            with resp:
                if bar is None:
                    bar = stack.enter_context(tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024,
                                                   desc=name, file=sys.stderr, disable=not progress,
                                                   leave=False))
                resumed = have > 0 and resp.status == 206 and \
                    resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                if not resumed:
                    have = 0
                    bar.reset()
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                bar.total = total
                bar.refresh()
                broken = False
                with open(dest, "ab" if resumed else "wb") as out:
                    while True:
                        try:
                            chunk = resp.read(_CHUNK)
                        except (OSError, http.client.HTTPException):  # the body broke off: resume it
                            broken = True
                            break
                        if not chunk:
                            break
                        out.write(chunk)
                        have += len(chunk)
                        bar.update(len(chunk))
            if not broken and (total is None or have == total):
                return
    raise WeightsError(f"{name}: download from {url} was interrupted {attempts} times (last after {have} of "
                       f"{total if total is not None else '?'} bytes); nothing was kept — retry later")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------- checks


def _verify_or_raise(entry: WeightsFile, path: Path) -> str:
    """Returns the file's SHA-256 after checking it against ``entry``'s size and pin; deletes nothing.

    A file that fails and is damaged (empty, truncated, not an archive) is reported as such, with the advice
    to replace it; only an intact file of another digest is suggested for use as unofficial weights.
    """
    problem, sha = _check(entry, path)
    if problem or sha is None:
        broken = damage(path)
        if broken:
            raise _DigestMismatch(f"{path}: {broken}; fidkit did not touch it — delete it "
                                  f"so that fidkit looks further and downloads a fresh copy, or pass a good copy "
                                  f"with weights=/--weights")
        raise _DigestMismatch(f"{path}: {problem}; fidkit did not touch it — delete it to download a fresh "
                              f"copy, or pass it explicitly (weights=/--weights) to use it as unofficial weights")
    return sha


def _check(entry: WeightsFile, path: Path) -> tuple[str | None, str | None]:
    """Returns (what is wrong with ``path`` as ``entry``: its size, else its SHA-256; None if nothing,
    the SHA-256 if it was computed): the size first, which needs no read of the file."""
    bad_size = _size_mismatch(entry, path)
    if bad_size:
        return bad_size, None
    sha = sha256_file(path)
    if _matches_pin(entry, sha) is False:
        return f"has SHA-256 {sha}, expected {_expected(entry)} for {entry.name}", sha
    return None, sha
