"""The weights manager: digests, lookup order, downloads from a local HTTP server, locking, CLI."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fidkit
from fidkit import weights as W
from fidkit.errors import FidkitWarning, WeightsError
from fidkit.weights import cache, canonical, files

# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FIDKIT_HOME and TORCH_HOME, never the user's."""
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FIDKIT_OFFLINE", raising=False)
    return tmp_path


class _Server:
    """A bounded HTTP server on 127.0.0.1 serving bytes by path, honouring ``Range: bytes=N-``.

    Mode per path: ok; slow; truncate (every response stops halfway and the socket closes); truncate-once
    (the first response only); no-range (ignores Range, first response truncated).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                server.requests.append(self.path)
                server.ranges.append(self.headers.get("Range"))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                mode = server.modes.get(self.path, "ok")
                start = 0
                rng = self.headers.get("Range")
                if rng and mode != "no-range" and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                truncate = mode == "truncate" or (mode in ("truncate-once", "no-range")
                                                  and len(server.requests) == 1)
                if truncate:
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    for i in range(0, len(part), 4096):
                        self.wfile.write(part[i:i + 4096])
                        time.sleep(0.01)
                    return
                self.wfile.write(part)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.guard = threading.Timer(120, self.httpd.shutdown)  # stops itself if a test hangs

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> _Server:
        self.thread.start()
        self.guard.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.guard.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server() as s:
        yield s


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"b.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "a.bn.running_var": rng.uniform(0.5, 2, 4).astype(np.float32),
            "fc.weight": rng.standard_normal((5, 4)).astype(np.float32)}


def _npz_bytes(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "src.npz") -> bytes:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p.read_bytes()


def _register(monkeypatch: pytest.MonkeyPatch, *entries: W.WeightsFile) -> None:
    """Adds ``entries`` to the registered files (read through ``fidkit.weights.files`` by every module)."""
    monkeypatch.setattr(files, "WEIGHTS_FILES", {**files.WEIGHTS_FILES, **{e.name: e for e in entries}})


def _entry(name: str, url: str | None, data: bytes | None, *, prefix: bool = False,
           wrong: bool = False) -> W.WeightsFile:
    sha = hashlib.sha256(data).hexdigest() if data is not None else None
    if wrong and sha is not None:
        sha = ("0" if sha[0] != "0" else "1") + sha[1:]
    if prefix:
        return W.WeightsFile(name, url, None, sha[:8] if sha else None, "canonical-npz", None, None)
    return W.WeightsFile(name, url, sha, None, "canonical-npz", None, None)


def _leftovers(folder: Path, name: str) -> list[str]:
    """Returns files in ``folder`` that are the weights file or a partial download of it (not lock files)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if name in p.name and not p.name.endswith(".lock"))


# ----------------------------------------------------------------------------------------- digests


def _reference_digest(arrays: dict[str, np.ndarray]) -> str:
    """The documented recipe, written out independently: tag, then per sorted name its header and bytes."""
    h = hashlib.sha256(b"fidkit-canonical-weights-v1\n")
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype=arrays[name].dtype.newbyteorder("<"))
        h.update(f"{name}\t{a.dtype.str}\t{','.join(map(str, a.shape))}\n".encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


def test_canonical_digest_is_the_documented_recipe_and_ignores_order_and_zip(tmp_path: Path) -> None:
    arrays = _arrays()
    digest = W.canonical_digest(arrays)
    assert digest == _reference_digest(arrays)
    assert W.canonical_digest(dict(reversed(list(arrays.items())))) == digest
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez_compressed(tmp_path / "b.npz", **arrays)
    assert W.sha256_file(tmp_path / "a.npz") != W.sha256_file(tmp_path / "b.npz")
    assert W.canonical_digest(W.load_canonical(tmp_path / "b.npz")) == digest
    big_endian = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
    assert W.canonical_digest(big_endian) == digest


@pytest.mark.parametrize("change", ["value", "name", "shape", "dtype"])
def test_canonical_digest_changes_with_content(change: str) -> None:
    arrays = _arrays()
    other = dict(arrays)
    if change == "value":
        w = other["fc.weight"].copy()
        w.flat[0] = np.nextafter(w.flat[0], np.float32(np.inf))
        other["fc.weight"] = w
    elif change == "name":
        other["fc.weight2"] = other.pop("fc.weight")
    elif change == "shape":
        other["fc.weight"] = other["fc.weight"].reshape(4, 5)
    else:
        other["fc.weight"] = other["fc.weight"].view(np.int32)
    assert W.canonical_digest(other) != W.canonical_digest(arrays)


def test_load_canonical_rejects_non_float32_and_nan(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", w=np.zeros(3, np.float64))
    with pytest.raises(WeightsError, match="float64"):
        W.load_canonical(tmp_path / "d.npz")
    np.savez(tmp_path / "n.npz", w=np.array([np.nan], np.float32))
    with pytest.raises(WeightsError, match="NaN"):
        W.load_canonical(tmp_path / "n.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="junk.npz"):
        W.load_canonical(tmp_path / "junk.npz")


def test_save_canonical_is_atomic_and_returns_the_digest(tmp_path: Path) -> None:
    arrays = _arrays()
    out = tmp_path / "out" / "w.npz"
    digest = W.save_canonical(arrays, out)
    assert digest == _reference_digest(arrays)
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.npz"]
    with pytest.raises(WeightsError):
        W.save_canonical({"x": np.zeros(2, np.float64)}, tmp_path / "out" / "bad.npz")
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.npz"]


# ----------------------------------------------------------------------------------------- registry


def test_registry_entries_are_complete() -> None:
    for name, e in W.WEIGHTS_FILES.items():
        assert e.name == name
        assert e.format in W.FORMATS
        assert (e.converter, e.runtime) == W.FORMATS[e.format]
        assert e.bundled or e.url, name
        assert e.note, f"{name}: say where its digest comes from"
        if e.sha256_prefix:  # torch hub convention: the prefix is in the file name
            assert e.sha256_prefix in name
    from fidkit.registry import available_extractors, get_spec

    for ext in available_extractors():
        for name in get_spec(ext).weights:
            assert name in W.WEIGHTS_FILES, f"extractor {ext!r} names unregistered weights {name!r}"


def test_registered_digests_and_sizes_are_well_formed() -> None:
    """Full digests are 64 lowercase hex digits extending the torch hub prefix; every downloadable file has
    a digest or a published size to be checked by, and the files with no published digest say so."""
    for name, e in W.WEIGHTS_FILES.items():
        if e.sha256 is not None:
            assert len(e.sha256) == 64 and set(e.sha256) <= set("0123456789abcdef"), name
            assert e.sha256.startswith(e.sha256_prefix or ""), name
        assert e.size is None or (isinstance(e.size, int) and e.size > 0), name
        if e.url is not None:
            assert e.sha256 is not None or e.size is not None, f"{name}: nothing to check a download by"
        if e.url is not None and e.sha256 is None:
            assert "no digest" in e.note.lower(), name
    pfid = W.WEIGHTS_FILES["pt_inception-2015-12-05-6726825d.pth"]
    tfid = W.WEIGHTS_FILES["weights-inception-2015-12-05-6726825d.pth"]
    assert (pfid.sha256, pfid.size) == (tfid.sha256, tfid.size)  # torch-fidelity re-hosts pytorch-fid's file


def test_registered_digests_match_the_readme() -> None:
    """The sources table in tests/weights_keys/README.md and the registry give the same values."""
    readme = (Path(__file__).parent / "weights_keys" / "README.md").read_text()
    for name, e in W.WEIGHTS_FILES.items():
        if e.bundled:
            continue
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        if e.sha256 is not None and "same as above" not in row:
            assert e.sha256 in row, name
        if e.size is not None:
            assert f"{e.size:,}" in row, name


@pytest.mark.peers
def test_peer_urls_match_the_registry() -> None:
    """The URLs and file names are the ones the peer libraries themselves download."""
    pytest.importorskip("torch")
    from cleanfid import downloads_helper
    from pytorch_fid import inception as pfid
    from torch_fidelity import feature_extractor_inceptionv3 as tfid

    assert W.WEIGHTS_FILES[pfid.FID_WEIGHTS_URL.rsplit("/", 1)[1]].url == pfid.FID_WEIGHTS_URL
    assert W.WEIGHTS_FILES[tfid.URL_INCEPTION_V3.rsplit("/", 1)[1]].url == tfid.URL_INCEPTION_V3
    assert W.WEIGHTS_FILES["inception-2015-12-05.pt"].url == downloads_helper.inception_url
    from torchvision.models import Inception_V3_Weights

    tv = Inception_V3_Weights.IMAGENET1K_V1.url
    assert W.WEIGHTS_FILES[tv.rsplit("/", 1)[1]].url == tv


# ----------------------------------------------------------------------------------------- lookup order


def test_lookup_order_env_dir_then_cache_then_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    e = _entry("t.npz", None, data)
    _register(monkeypatch, e)
    hub = W.torch_hub_checkpoints()
    assert hub == tmp_path / "torch" / "hub" / "checkpoints"
    assert W.find_local(e) is None
    # canonical-npz files are not looked for in torch hub; a torch-format entry is
    e_pt = W.WeightsFile("t.pth", None, None, None, "torch-state-dict", *W.FORMATS["torch-state-dict"])
    _register(monkeypatch, e, e_pt)
    hub.mkdir(parents=True)
    (hub / "t.pth").write_bytes(b"x")
    assert W.find_local(e_pt) == ("torch hub", hub / "t.pth")
    cache = W.cache_dir()
    cache.mkdir(parents=True)
    (cache / "t.pth").write_bytes(b"x")
    assert W.find_local(e_pt) == ("cache", cache / "t.pth")
    env1, env2 = tmp_path / "env1", tmp_path / "env2"
    env2.mkdir()
    (env2 / "t.pth").write_bytes(b"x")
    monkeypatch.setenv("FIDKIT_WEIGHTS_DIR", os.pathsep.join([str(env1), str(env2)]))
    assert W.find_local(e_pt) == ("FIDKIT_WEIGHTS_DIR", env2 / "t.pth")


def test_default_cache_dir_is_platform_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("FIDKIT_HOME")
    assert W.cache_dir() == Path(platformdirs.user_cache_dir("fidkit")) / "weights"


def test_resolve_prefers_a_local_lower_preference_file_over_downloading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    first, second = _npz_bytes(tmp_path, _arrays(1), "1.npz"), _npz_bytes(tmp_path, _arrays(2), "2.npz")
    server.files["/first.npz"] = first
    _register(monkeypatch, _entry("first.npz", server.url("/first.npz"), first),
              _entry("second.npz", None, second))
    envdir = tmp_path / "env"
    envdir.mkdir()
    (envdir / "second.npz").write_bytes(second)
    monkeypatch.setenv("FIDKIT_WEIGHTS_DIR", str(envdir))
    cw = W.resolve_weights(("first.npz", "second.npz"), None)
    assert cw.source == "second.npz" and cw.official
    assert cw.digest == _reference_digest(_arrays(2))
    assert server.requests == []


# ----------------------------------------------------------------------------------------- downloads


def test_download_with_progress_and_verified_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    server: _Server, capsys: pytest.CaptureFixture) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    server.files["/w.npz"] = data
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data))
    cw = W.resolve_weights(("w.npz",), None)
    assert Path(cw.path) == W.cache_dir() / "w.npz"
    assert hashlib.sha256(Path(cw.path).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert cw.official and cw.digest == _reference_digest(_arrays()) and cw.source == "w.npz"
    assert "w.npz" in capsys.readouterr().err  # the tqdm bar, on stderr
    assert list(W.cache_dir().glob("*.lock")) == []  # the download's lock is removed after it
    cw2 = W.resolve_weights(("w.npz",), None)  # now cached: no second request
    assert cw2 == cw and server.requests == ["/w.npz"]


def test_a_refused_request_prints_no_bar_and_leaves_no_lock(monkeypatch: pytest.MonkeyPatch, server: _Server,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Issue 13: the bar appears once the server answers, and a lock file is removed after the attempt."""
    url = f"http://127.0.0.1:{_closed_port()}/w.npz"
    _register(monkeypatch, _entry("w.npz", url, b"x"), _entry("v.npz", server.url("/missing.npz"), b"x"))
    for name in ("w.npz", "v.npz"):  # connection refused; HTTP 404
        with pytest.raises(WeightsError, match="cannot download"):
            W.download(files.WEIGHTS_FILES[name], progress=True)
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in W.fidkit_home().rglob("*") if p.is_file()) == []


def test_a_cached_file_is_returned_without_taking_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, _entry("w.npz", "http://127.0.0.1:9/w.npz", data))
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "w.npz").write_bytes(data)

    def no_lock(path: Path, timeout: float = 0.0) -> None:
        raise AssertionError("a lookup that downloads nothing takes no lock")

    monkeypatch.setattr(cache, "_lock", no_lock)
    monkeypatch.setattr(canonical, "_lock", no_lock)
    assert W.download(files.WEIGHTS_FILES["w.npz"]) == W.cache_dir() / "w.npz"
    assert W.resolve_weights(("w.npz",), None).official
    assert sorted(p.name for p in W.cache_dir().iterdir()) == ["w.npz"]


def test_download_checks_the_torch_hub_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              server: _Server) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    server.files["/p.npz"] = data
    _register(monkeypatch, _entry("p.npz", server.url("/p.npz"), data, prefix=True))
    assert W.resolve_weights(("p.npz",), None).official


def test_download_digest_mismatch_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                server: _Server) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    server.files["/w.npz"] = data
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data, wrong=True))
    with pytest.raises(WeightsError, match=r"SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}") as exc:
        W.resolve_weights(("w.npz",), None)
    assert hashlib.sha256(data).hexdigest() in str(exc.value)
    assert _leftovers(W.cache_dir(), "w.npz") == []


def test_download_of_another_size_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               server: _Server) -> None:
    from dataclasses import replace

    data = _npz_bytes(tmp_path, _arrays())
    server.files["/w.npz"] = data
    _register(monkeypatch, replace(_entry("w.npz", server.url("/w.npz"), data), size=len(data) + 7))
    with pytest.raises(WeightsError, match=rf"is {len(data)} bytes, expected {len(data) + 7}.*truncated"):
        W.resolve_weights(("w.npz",), None)
    assert _leftovers(W.cache_dir(), "w.npz") == []


def test_a_local_file_of_another_size_is_refused_before_hashing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, replace(_entry("w.npz", None, data), size=len(data)))
    W.cache_dir().mkdir(parents=True)
    cut = W.cache_dir() / "w.npz"
    cut.write_bytes(data[:-1])

    def no_hashing(path: object) -> str:
        raise AssertionError("the size check comes first")

    monkeypatch.setattr(cache, "sha256_file", no_hashing)
    with pytest.raises(WeightsError, match=r"truncated.*delete it"):
        W.resolve_weights(("w.npz",), None)
    assert cut.read_bytes() == data[:-1]  # reported, not touched


def test_a_size_only_entry_checks_the_size_and_warns_of_no_digest(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Like TensorFlow's .tgz: a published size but no published digest."""
    data = _npz_bytes(tmp_path, _arrays())
    entry = W.WeightsFile("s.npz", None, None, None, "canonical-npz", None, None, size=len(data))
    _register(monkeypatch, entry)
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "s.npz").write_bytes(data)
    with pytest.warns(FidkitWarning, match="no published SHA-256.*size is the published one"):
        cw = W.resolve_weights(("s.npz",), None)
    assert not cw.official
    (W.cache_dir() / "s.npz").write_bytes(data + b"\0")
    with pytest.raises(WeightsError, match="longer than published"):
        W.resolve_weights(("s.npz",), None)


def test_interrupted_transfer_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             server: _Server) -> None:
    data = _npz_bytes(tmp_path, _arrays()) * 8
    server.files["/w.npz"] = data
    server.modes["/w.npz"] = "truncate"
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data))
    with pytest.raises(WeightsError, match="interrupted 3 times") as exc:
        W.download(files.WEIGHTS_FILES["w.npz"], progress=False)
    assert "w.npz" in str(exc.value) and "retry" in str(exc.value)
    assert len(server.requests) == 3
    assert _leftovers(W.cache_dir(), "w.npz") == []
    server.modes["/w.npz"] = "ok"  # a clean retry then works
    assert W.download(files.WEIGHTS_FILES["w.npz"], progress=False).read_bytes() == data


@pytest.mark.parametrize("mode", ["truncate-once", "no-range"])
def test_broken_transfer_is_resumed_with_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               server: _Server, mode: str) -> None:
    data = _npz_bytes(tmp_path, _arrays()) * 8
    server.files["/w.npz"] = data
    server.modes["/w.npz"] = mode
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data))
    path = W.download(files.WEIGHTS_FILES["w.npz"], progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(server.requests) == 2 and server.ranges[0] is None
    assert server.ranges[1] is not None and int(server.ranges[1][len("bytes="):-1]) > 0
    assert _leftovers(W.cache_dir(), "w.npz") == ["w.npz"]


def test_http_error_is_reported_without_retry(monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    _register(monkeypatch, _entry("w.npz", server.url("/missing.npz"), b"x"))
    with pytest.raises(WeightsError, match="HTTP 404"):
        W.download(files.WEIGHTS_FILES["w.npz"], progress=False)
    assert server.requests == ["/missing.npz"]
    assert _leftovers(W.cache_dir(), "w.npz") == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_error_names_file_url_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/w.npz"
    _register(monkeypatch, _entry("w.npz", url, b"whatever"), _entry("alt.npz", None, b"x"))
    with pytest.raises(WeightsError) as exc:
        W.resolve_weights(("w.npz", "alt.npz"), None)
    msg = str(exc.value)
    assert "w.npz" in msg and url in msg and str(W.cache_dir() / "w.npz") in msg and "alt.npz" in msg
    assert "\n" not in msg


def test_fidkit_offline_makes_no_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         server: _Server) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    server.files["/w.npz"] = data
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    with pytest.raises(WeightsError, match="FIDKIT_OFFLINE"):
        W.resolve_weights(("w.npz",), None)
    assert server.requests == []


def test_two_threads_download_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    data = _npz_bytes(tmp_path, {"w": np.arange(20000, dtype=np.float32)})
    server.files["/w.npz"] = data
    server.modes["/w.npz"] = "slow"
    _register(monkeypatch, _entry("w.npz", server.url("/w.npz"), data))
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(W.download(files.WEIGHTS_FILES["w.npz"], progress=False))
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [W.cache_dir() / "w.npz"] * 2
    assert server.requests == ["/w.npz"]
    assert _leftovers(W.cache_dir(), "w.npz") == ["w.npz"]


_PROC = """
import sys, time
from fidkit import weights as W
e = W.WeightsFile("w.npz", sys.argv[1], sys.argv[2], None, "canonical-npz", None, None)
print(W.download(e, progress=False))
"""


def test_two_processes_share_the_cache_safely(tmp_path: Path, server: _Server) -> None:
    data = _npz_bytes(tmp_path, {"w": np.arange(20000, dtype=np.float32)})
    server.files["/w.npz"] = data
    server.modes["/w.npz"] = "slow"
    args = [sys.executable, "-c", _PROC, server.url("/w.npz"), hashlib.sha256(data).hexdigest()]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o.strip() for o, _ in outs} == {str(W.cache_dir() / "w.npz")}
    assert server.requests == ["/w.npz"]
    assert (W.cache_dir() / "w.npz").read_bytes() == data


# ----------------------------------------------------------------------------------------- verification


def test_cached_file_with_wrong_digest_raises_and_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _npz_bytes(tmp_path, _arrays(1), "good.npz")
    _register(monkeypatch, _entry("w.npz", "http://127.0.0.1:9/w.npz", good))
    W.cache_dir().mkdir(parents=True)
    bad = W.cache_dir() / "w.npz"
    bad.write_bytes(_npz_bytes(tmp_path, _arrays(2), "bad.npz"))
    with pytest.raises(WeightsError, match="expected") as exc:
        W.resolve_weights(("w.npz",), None)
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in str(exc.value)
    assert bad.exists()


def test_explicit_official_file_gives_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, _entry("w.npz", None, data))
    mine = tmp_path / "renamed.npz"
    mine.write_bytes(data)
    cw = W.resolve_weights(("w.npz",), str(mine))
    assert cw.official and cw.source == "renamed.npz" and cw.digest == _reference_digest(_arrays())


def test_explicit_unofficial_file_is_used_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, _entry("w.npz", None, _npz_bytes(tmp_path, _arrays(1), "official.npz")))
    mine = tmp_path / "mine.npz"
    mine.write_bytes(_npz_bytes(tmp_path, _arrays(2), "x.npz"))
    with pytest.warns(FidkitWarning, match="unofficial"):
        cw = W.resolve_weights(("w.npz",), str(mine))
    assert not cw.official
    assert cw.digest == _reference_digest(_arrays(2))
    assert cw.source_sha256 == hashlib.sha256(mine.read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match="does not exist"):
        W.resolve_weights(("w.npz",), str(tmp_path / "missing.npz"))


def test_unpinned_registered_file_is_used_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, W.WeightsFile("u.npz", "http://127.0.0.1:9/u.npz", None, None, "canonical-npz",
                                         None, None))
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "u.npz").write_bytes(data)
    with pytest.warns(FidkitWarning, match="no published SHA-256"):
        cw = W.resolve_weights(("u.npz",), None)
    assert not cw.official and cw.digest == _reference_digest(_arrays())


def test_bundled_mnist_weights_resolve_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = Path(fidkit.__file__).parent / "data" / "fidkit-mnist-v1.npz"
    if not bundled.is_file():
        pytest.skip("fidkit/data/fidkit-mnist-v1.npz is not committed yet")
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    cw = W.resolve_weights(("fidkit-mnist-v1.npz",), None)
    with np.load(bundled, allow_pickle=False) as z:
        expected = _reference_digest({k: z[k] for k in z.files})
    assert cw.official and cw.digest == expected and Path(cw.path) == bundled


def test_unknown_name_and_unknown_format(tmp_path: Path) -> None:
    from fidkit.errors import InputError

    with pytest.raises(InputError, match="nope.pth"):
        W.resolve_weights(("nope.pth",), None)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02\x03")
    with pytest.raises(WeightsError, match="unknown weights format"):
        W.detect_format(junk)


def test_conversion_is_cached_by_source_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    src = tmp_path / "x.pb"
    src.write_bytes(b"graph")

    def fake_convert(source: str | os.PathLike[str], fmt: str | None = None) -> dict[str, np.ndarray]:
        calls.append(fmt)
        return _arrays()

    monkeypatch.setattr(canonical, "convert", fake_convert)
    out, digest = W.to_canonical(src)
    assert out == W.canonical_dir() / f"{hashlib.sha256(b'graph').hexdigest()}.npz"
    assert digest == _reference_digest(_arrays())
    assert W.to_canonical(src) == (out, digest) and calls == ["tf-graphdef"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["digest"] == digest and meta["source"] == "x.pb"
    assert sorted(p.suffix for p in out.parent.iterdir()) == [".json", ".npz"]  # and no lock file


def test_missing_runtime_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fidkit.errors import BackendUnavailableError

    monkeypatch.setattr(files, "runtime_installed", lambda rt: False)
    src = tmp_path / "g.pb"
    src.write_bytes(b"graph")
    with pytest.raises(BackendUnavailableError, match=r"tensorflow.*fidkit\[tf\]"):
        W.convert(src)


def test_a_converter_failing_on_a_file_raises_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a framework's parser raises on a user's file comes out as a WeightsError naming the file."""
    src = tmp_path / "g.pb"
    src.write_bytes(b"graph")
    monkeypatch.setattr(canonical, "FORMATS", {**W.FORMATS, "tf-graphdef": ("json:loads", "tf")})
    monkeypatch.setattr(files, "runtime_installed", lambda rt: True)
    with pytest.raises(WeightsError, match=r"g\.pb: the tf-graphdef converter cannot read it \(JSONDecodeError"):
        W.convert(src)


# ----------------------------------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fidkit")
    W.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_where_verify_convert_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, _entry("w.npz", "http://127.0.0.1:9/w.npz", data))
    rc = _cli("weights", "where", "w.npz", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and rows[0]["found"] is None and rows[0]["download_to"] == str(W.cache_dir() / "w.npz")
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "w.npz").write_bytes(data)
    rc = _cli("weights", "where", "w.npz", "--json")
    assert json.loads(capsys.readouterr().out)[0]["found"] == str(W.cache_dir() / "w.npz")

    rc = _cli("weights", "verify", str(W.cache_dir() / "w.npz"), "--json")
    row = json.loads(capsys.readouterr().out)[0]
    assert rc == 0 and row["status"] == "ok" and row["sha256"] == hashlib.sha256(data).hexdigest()
    (W.cache_dir() / "w.npz").write_bytes(_npz_bytes(tmp_path, _arrays(5), "other.npz"))
    rc = _cli("weights", "verify", str(W.cache_dir() / "w.npz"), "--json")
    assert rc == 1 and json.loads(capsys.readouterr().out)[0]["status"] == "mismatch"
    _register(monkeypatch, W.WeightsFile("w.npz", None, None, None, "canonical-npz", None, None, size=len(data)))
    (W.cache_dir() / "w.npz").write_bytes(data)  # no digest registered: the size alone decides
    rc = _cli("weights", "verify", str(W.cache_dir() / "w.npz"), "--json")
    assert rc == 0 and json.loads(capsys.readouterr().out)[0]["status"] == "unpinned"
    (W.cache_dir() / "w.npz").write_bytes(data + b"\0\0\0")  # an intact zip of another size
    rc = _cli("weights", "verify", str(W.cache_dir() / "w.npz"), "--json")
    assert rc == 1 and json.loads(capsys.readouterr().out)[0]["status"] == "mismatch"
    (W.cache_dir() / "w.npz").write_bytes(data[:-3])  # a damaged file is an error, not a row
    with pytest.raises(WeightsError, match=r"w\.npz: is truncated"):
        _cli("weights", "verify", str(W.cache_dir() / "w.npz"), "--json")

    out = tmp_path / "conv" / "c.npz"
    rc = _cli("weights", "convert", str(tmp_path / "src.npz"), "-o", str(out), "--json")
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["digest"] == _reference_digest(_arrays()) and out.is_file()
    rc = _cli("weights", "where", "inception-tf2015")
    text = capsys.readouterr().out
    assert "pt_inception-2015-12-05-6726825d.pth" in text and "inception-2015-12-05.tgz" in text


def test_the_weights_package_imports_no_module_above_it() -> None:
    """fidkit.weights sits below the registry, the extractors, the pipeline and the CLI: none is imported."""
    import ast

    above = {"fidkit.registry", "fidkit.extractors", "fidkit.pipeline", "fidkit.cli"}
    for path in sorted(Path(W.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = "fidkit" if node.level == 2 else "fidkit.weights" if node.level == 1 else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                targets = {module} | {f"{module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                continue
            assert not targets & above, f"{path.name}:{node.lineno} imports {sorted(targets & above)}"


def test_importing_weights_and_converters_imports_no_framework() -> None:
    code = ("import sys, fidkit.weights, fidkit.backends.torch.convert, fidkit.backends.tf.convert; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_canonical_digest_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered canonical digest makes an already converted file official and checks conversions."""
    from dataclasses import replace

    data = _npz_bytes(tmp_path, _arrays())
    source = replace(_entry("src.pth", None, b"some other source file"),
                     canonical_digest=_reference_digest(_arrays()))
    _register(monkeypatch, source)
    converted = tmp_path / "converted.npz"
    converted.write_bytes(data)
    cw = W.resolve_weights(("src.pth",), str(converted))
    assert cw.official and cw.digest == source.canonical_digest
    wrong = replace(_entry("w.npz", None, data), canonical_digest="0" * 64)
    _register(monkeypatch, wrong)
    W.cache_dir().mkdir(parents=True)
    (W.cache_dir() / "w.npz").write_bytes(data)
    with pytest.raises(WeightsError, match="expected 0000"):
        W.resolve_weights(("w.npz",), None)


def test_a_damaged_conversion_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_convert(source: str | os.PathLike[str], fmt: str | None = None) -> dict[str, np.ndarray]:
        calls.append(fmt)
        return _arrays()

    monkeypatch.setattr(canonical, "convert", fake_convert)
    src = tmp_path / "x.pb"
    src.write_bytes(b"graph")
    out, digest = W.to_canonical(src)
    out.with_suffix(".json").write_text("{not json")
    assert W.to_canonical(src) == (out, digest) and len(calls) == 2
    out.write_bytes(out.read_bytes()[:100])  # truncated by hand: the recorded size no longer matches
    assert W.to_canonical(src) == (out, digest) and len(calls) == 3
    assert W.canonical_digest(W.load_canonical(out)) == digest


def test_bundled_file_is_checked_against_its_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = _npz_bytes(tmp_path, _arrays())
    (data_dir / "b.npz").write_bytes(data)
    monkeypatch.setattr(files, "_bundled_dir", lambda: data_dir)
    _register(monkeypatch, W.WeightsFile("b.npz", None, None, None, "canonical-npz", None, None, bundled=True))
    cw = W.resolve_weights(("b.npz",), None)  # no sidecar: trusted as shipped
    assert cw.official and cw.digest == _reference_digest(_arrays())
    (data_dir / "b.json").write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest()}))
    assert W.resolve_weights(("b.npz",), None).official
    (data_dir / "b.json").write_text(json.dumps({"sha256": "f" * 64}))
    with pytest.raises(WeightsError, match="expected f{64}"):
        W.resolve_weights(("b.npz",), None)


def test_files_this_install_can_convert_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pth = W.WeightsFile("a.pth", None, None, None, "torch-state-dict", *W.FORMATS["torch-state-dict"])
    tgz = W.WeightsFile("b.tgz", None, None, None, "tf-graphdef-tgz", *W.FORMATS["tf-graphdef-tgz"])
    _register(monkeypatch, pth, tgz)
    W.cache_dir().mkdir(parents=True)
    for e in (pth, tgz):
        (W.cache_dir() / e.name).write_bytes(b"x")
    assert W.locate(("a.pth", "b.tgz"))[0] == pth
    monkeypatch.setattr(files, "runtime_installed", lambda rt: rt != "torch")
    assert W.locate(("a.pth", "b.tgz"))[0] == tgz


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.text("abcxyz._", min_size=1, max_size=6),
                          st.lists(st.integers(0, 3), max_size=3)), min_size=1, max_size=4,
                unique_by=lambda t: t[0]),
       st.integers(0, 2**32 - 1))
def test_digest_survives_a_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                                spec: list[tuple[str, list[int]]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in spec}
    path = tmp_path_factory.mktemp("rt") / "w.npz"
    digest = W.save_canonical(arrays, path)
    assert digest == _reference_digest(arrays) == W.canonical_digest(W.load_canonical(path))


def test_explicit_unpinned_registered_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz_bytes(tmp_path, _arrays())
    _register(monkeypatch, W.WeightsFile("u.npz", None, None, None, "canonical-npz", None, None))
    mine = tmp_path / "u.npz"
    mine.write_bytes(data)
    with pytest.warns(FidkitWarning, match="no published SHA-256"):
        cw = W.resolve_weights(("u.npz",), str(mine))
    assert not cw.official


def test_torch_hub_dir_agrees_with_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    for env in ({"TORCH_HOME": str(tmp_path / "t")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert W.torch_hub_checkpoints() == Path(torch.hub.get_dir()) / "checkpoints"
