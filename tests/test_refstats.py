"""Published reference statistics: the registry, readers for TTUR / clean-fid / ADM files, downloads from a local
HTTP server (digest, resume, offline), and ``fidkit refstats list|get|verify``."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fidkit import npfile, refstats
from fidkit.cli import main
from fidkit.errors import FidkitWarning, InputError, WeightsError
from fidkit.protocols import available_protocols, get_protocol
from fidkit.registry import get_spec
from fidkit.stats import UNKNOWN, Stats
from fidkit.stats import load as load_stats

D = 8  # the registered files' dimension in these tests (2048 in the registry: small files keep the tests fast)

# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FIDKIT_HOME, no FIDKIT_REFSTATS_DIR, online, and no clean-fid stats folder."""
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FIDKIT_REFSTATS_DIR", raising=False)
    monkeypatch.delenv("FIDKIT_OFFLINE", raising=False)
    monkeypatch.setattr(refstats, "_cleanfid_stats_dir", lambda: tmp_path / "cleanfid-stats")
    assert {e.dim for e in refstats.REFSTATS.values()} == {2048}  # pool3 of the 2015 Inception, every one
    monkeypatch.setattr(refstats, "REFSTATS", {k: replace(e, dim=D) for k, e in refstats.REFSTATS.items()})
    return tmp_path


def _moments(seed: int = 0, d: int = D) -> tuple[np.ndarray, np.ndarray]:
    """A mean (d,) and an exactly symmetric PSD covariance (d, d), float64 (so loading is exact)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, 8))
    cov = a @ a.T / 8
    return rng.standard_normal(d), (cov + cov.T) / 2


def _ttur(path: Path, seed: int = 0, d: int = D) -> Path:
    mu, sigma = _moments(seed, d)
    np.savez(path, mu=mu, sigma=sigma)  # TTUR's fid.py: np.savez(f, mu=mu, sigma=sigma)
    return path


def _cleanfid(path: Path, seed: int = 0) -> Path:
    mu, sigma = _moments(seed)
    np.savez_compressed(path, mu=mu, sigma=sigma)  # clean-fid's make_custom_stats
    return path


def _adm(path: Path, seed: int = 0, spatial_d: int = 23) -> Path:
    mu, sigma = _moments(seed)
    mu_s, sigma_s = _moments(seed + 1, spatial_d)
    images = np.random.default_rng(seed).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(path, arr_0=images, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    return path


def _pin(monkeypatch: pytest.MonkeyPatch, e: refstats.RefStats) -> refstats.RefStats:
    monkeypatch.setattr(refstats, "REFSTATS", {**refstats.REFSTATS, e.name: e})
    return e


def _synthetic_entry(data: bytes | None, url: str, *, name: str = "test-stats", filename: str = "t_stats.npz",
                     wrong: bool = False) -> refstats.RefStats:
    sha = hashlib.sha256(data).hexdigest() if data is not None else None
    if wrong and sha is not None:
        sha = ("0" if sha[0] != "0" else "1") + sha[1:]
    source = "test digest" if sha else "no published digest: a test entry"
    return refstats.RefStats(name, filename, url, "synthetic", "train", 32, 10, "ttur", "ttur", sha,
                             len(data) if data is not None else None, source, dim=D)


class _Server:
    """HTTP on 127.0.0.1 serving bytes by path; honours ``Range: bytes=N-``; mode ``truncate-once`` cuts the
    first response in half and closes the socket."""

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
                start, rng = 0, self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.modes.get(self.path) == "truncate-once" and len(server.requests) == 1:
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(part)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    s.thread.start()
    guard = threading.Timer(120, s.httpd.shutdown)  # stops itself if a test hangs
    guard.start()
    yield s
    guard.cancel()
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


# ----------------------------------------------------------------------------------------- the registry


def test_registry_entries_are_complete_and_cite_their_digests() -> None:
    assert len(refstats.REFSTATS) == 6 + 17 * 3 + 7  # TTUR's 6, clean-fid's 17 (dataset, res, split) x 3 modes, ADM's 7
    files = [e.filename for e in refstats.REFSTATS.values()]
    assert len(set(files)) == len(files)
    for e in refstats.REFSTATS.values():
        assert e.protocol in available_protocols(), e.name
        assert e.url.startswith(("http://", "https://")) and e.url.endswith("/" + e.filename), e.name
        assert e.dataset and e.split and e.digest_source, e.name
        if e.sha256 is None:
            assert e.digest_source.startswith("no published digest"), e.name
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and "no published digest" not in e.digest_source
        assert e.spatial == (e.format == "adm")
    adm256 = refstats.entry("VIRTUAL_imagenet256_labeled.npz")  # by file name too
    assert adm256.name == "adm-imagenet256" and adm256.pinned and adm256.size == 2_037_122_530


def test_cleanfid_entries_are_the_urls_cleanfid_itself_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every clean-fid entry's URL is what clean-fid's get_reference_statistics fetches (captured, not typed)."""
    features = pytest.importorskip("cleanfid.features")
    asked: list[str] = []

    def capture(local_folder: str, url: str) -> str:
        asked.append(url)
        raise LookupError("captured")

    monkeypatch.setattr(features, "check_download_url", capture)
    for e in (x for x in refstats.REFSTATS.values() if x.format == "clean-fid"):
        mode = next(m for m, p in refstats._CLEANFID_MODES.items() if p == e.protocol)
        with pytest.raises(LookupError):
            features.get_reference_statistics(e.dataset, e.resolution, mode=mode, split=e.split)
        assert asked[-1].replace("stats//", "stats/") == e.url


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(InputError, match="did you mean ttur-cifar10-train"):
        refstats.entry("ttur-cifar10-trian")
    with pytest.raises(InputError, match="fidkit refstats list"):
        refstats.entry("zzz")


# ----------------------------------------------------------------------------------------- readers


def test_layouts_of_each_tool_are_told_apart(tmp_path: Path) -> None:
    assert npfile.stats_layout(_ttur(tmp_path / "a.npz")) == ("plain", D, None, None)
    assert npfile.stats_layout(_cleanfid(tmp_path / "b.npz")) == ("compressed", D, None, None)
    assert npfile.stats_layout(_adm(tmp_path / "c.npz")) == ("adm", D, 23, "arr_0")
    own = Stats(5, *_moments(0, 4)).save(tmp_path / "d.npz")
    assert npfile.stats_layout(own).layout == "fidkit"
    assert "TTUR" in npfile.stats_layout(tmp_path / "a.npz").describe()
    np.save(tmp_path / "f.npy", np.zeros((5, 3)))
    with pytest.raises(InputError, match="not a statistics file"):
        npfile.stats_layout(tmp_path / "f.npy")


@pytest.mark.parametrize("name, writer, protocol", [
    ("fid_stats_cifar10_train.npz", _ttur, "ttur"),
    ("cifar10_legacy_tensorflow_train_32.npz", _cleanfid, "clean-fid-legacy-tensorflow"),
    ("cifar10_clean_test_32.npz", _cleanfid, "clean-fid"),
    ("VIRTUAL_imagenet64_labeled.npz", _adm, "adm"),
])
def test_registered_files_load_with_the_registry_provenance(tmp_path: Path, name: str, writer, protocol: str) -> None:
    path = writer(tmp_path / name)
    s = refstats.load(path)
    with np.load(path) as z:  # the arrays as numpy reads them
        np.testing.assert_array_equal(s.mean, z["mu"])
        np.testing.assert_array_equal(s.cov, z["sigma"])
    proto = get_protocol(protocol)
    p = s.provenance
    h, w = get_spec(proto.extractor).input_size
    assert (p.extractor, p.resize_policy, p.input_size) == (proto.extractor, proto.policy, f"{h}x{w}")
    assert p.weights_source in proto.weights and p.weights_sha256 == UNKNOWN
    assert getattr(p, "protocol", proto.label) == proto.label
    assert refstats.entry(name).url in p.description and "by file name and shape only" in p.description
    assert s.n is None
    plain = load_stats(path)  # fidkit.stats.load itself knows nothing of the registry
    assert plain.provenance.extractor == UNKNOWN


def test_unregistered_or_misshapen_files_keep_unknown_provenance(tmp_path: Path) -> None:
    assert refstats.load(_ttur(tmp_path / "mine.npz")).provenance.extractor == UNKNOWN
    small = _ttur(tmp_path / "fid_stats_celeba.npz", d=5)  # the name of a registered file, not its shape
    assert refstats.identify(small) == (None, "not a registered file")
    x = np.random.default_rng(0).standard_normal((30, 4))
    np.save(tmp_path / "feats.npy", x)  # features: statistics computed, nothing to identify
    s = refstats.load(tmp_path / "feats.npy")
    np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=0, atol=0)
    assert s.provenance.extractor == UNKNOWN


def test_a_pinned_entry_is_matched_by_digest_even_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _ttur(tmp_path / "t_stats.npz", seed=3)
    data = path.read_bytes()
    e = _pin(monkeypatch, _synthetic_entry(data, "http://127.0.0.1:9/t_stats.npz"))
    renamed = tmp_path / "renamed.npz"
    renamed.write_bytes(data)
    for p in (path, renamed):
        found, how = refstats.identify(p)
        assert found == e and how == "matched test-stats by SHA-256"
        assert "by SHA-256" in refstats.load(p).provenance.description
    (tmp_path / "other").mkdir()
    other = _ttur(tmp_path / "other" / "t_stats.npz", seed=4)
    found, how = refstats.identify(other)  # the registered name, other bytes: not taken for the entry
    assert found is None and "SHA-256 is not the registered one" in how
    assert refstats.load(other).provenance.extractor == UNKNOWN


def test_spatial_statistics_of_an_adm_batch(tmp_path: Path) -> None:
    path = _adm(tmp_path / "VIRTUAL_imagenet256_labeled.npz", spatial_d=23)
    s = refstats.load(path, spatial=True)
    with np.load(path) as z:
        np.testing.assert_array_equal(s.mean, z["mu_s"])
        np.testing.assert_array_equal(s.cov, z["sigma_s"])
    assert s.dim == 23 and s.provenance.description.startswith("spatial (sFID)")
    # its digest is registered and this synthetic file is not it: no registry provenance
    assert s.provenance.extractor == UNKNOWN
    with pytest.raises(InputError, match=r"no spatial statistics \['mu_s', 'sigma_s'\].*ADM evaluator"):
        refstats.load(_ttur(tmp_path / "t.npz"), spatial=True)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(4), sigma=np.eye(4), mu_s=np.zeros(3), sigma_s=np.eye(4))
    with pytest.raises(InputError, match="bad.npz: spatial statistics"):
        refstats.load(tmp_path / "bad.npz", spatial=True)


# ----------------------------------------------------------------------------------------- downloads


def test_get_downloads_verifies_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           server: _Server) -> None:
    data = _ttur(tmp_path / "src.npz").read_bytes()
    server.files["/t_stats.npz"] = data
    e = _pin(monkeypatch, _synthetic_entry(data, server.url("/t_stats.npz")))
    path = refstats.get(e.name, progress=False)
    assert path == refstats.cache_dir() / "t_stats.npz" and path.read_bytes() == data
    assert _leftovers(refstats.cache_dir()) == ["t_stats.npz"]
    assert refstats.get("t_stats.npz", progress=False) == path and len(server.requests) == 1  # found, not fetched
    to = tmp_path / "elsewhere"
    assert refstats.get(e.name, to, progress=False) == to / "t_stats.npz" and len(server.requests) == 2


def test_get_digest_mismatch_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    data = _ttur(tmp_path / "src.npz").read_bytes()
    server.files["/t_stats.npz"] = data
    e = _pin(monkeypatch, _synthetic_entry(data, server.url("/t_stats.npz"), wrong=True))
    with pytest.raises(WeightsError, match=r"t_stats\.npz: downloaded from .*has SHA-256 .*nothing was kept"):
        refstats.get(e.name, progress=False)
    assert _leftovers(refstats.cache_dir()) == []
    _pin(monkeypatch, replace(e, sha256=None, size=len(data) + 1))  # a published size that the file is not
    with pytest.raises(WeightsError, match="longer than published|truncated"):
        refstats.get(e.name, progress=False)
    assert _leftovers(refstats.cache_dir()) == []


def test_get_a_file_with_no_digest_checks_shapes_and_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            server: _Server) -> None:
    good = _ttur(tmp_path / "src.npz").read_bytes()
    server.files["/t_stats.npz"] = good
    e = _pin(monkeypatch, _synthetic_entry(None, server.url("/t_stats.npz")))
    with pytest.warns(FidkitWarning, match="no published digest"):
        path = refstats.get(e.name, progress=False)
    assert path.read_bytes() == good
    path.unlink()
    server.files["/t_stats.npz"] = _ttur(tmp_path / "small.npz", d=5).read_bytes()  # not the entry's shapes
    with pytest.raises(WeightsError, match=r"holds mu \(5,\).*nothing was kept"):
        refstats.get(e.name, progress=False)
    assert _leftovers(refstats.cache_dir()) == []


def test_broken_transfer_is_resumed_with_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               server: _Server) -> None:
    data = _ttur(tmp_path / "src.npz").read_bytes()
    server.files["/t_stats.npz"] = data
    server.modes["/t_stats.npz"] = "truncate-once"
    e = _pin(monkeypatch, _synthetic_entry(data, server.url("/t_stats.npz")))
    path = refstats.get(e.name, progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
    assert len(server.requests) == 2 and server.ranges[0] is None
    assert int(server.ranges[1][len("bytes="):-1]) > 0  # the second request resumed, not restarted


def test_offline_and_unreachable_errors_name_the_file_url_and_place(monkeypatch: pytest.MonkeyPatch,
                                                                    server: _Server) -> None:
    server.files["/t_stats.npz"] = b"x"
    e = _pin(monkeypatch, _synthetic_entry(b"x", server.url("/t_stats.npz")))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    with pytest.raises(WeightsError) as exc:
        refstats.get(e.name, progress=False)
    msg = str(exc.value)
    assert "FIDKIT_OFFLINE" in msg and e.url in msg and str(refstats.cache_dir() / e.filename) in msg
    assert server.requests == [] and "\n" not in msg
    monkeypatch.delenv("FIDKIT_OFFLINE")
    url = f"http://127.0.0.1:{_closed_port()}/t_stats.npz"
    e = _pin(monkeypatch, replace(e, url=url))
    with pytest.raises(WeightsError) as exc:
        refstats.get(e.name, progress=False)
    msg = str(exc.value)
    assert "cannot download" in msg and f"put it at {refstats.cache_dir() / e.filename}" in msg
    assert _leftovers(refstats.cache_dir()) == []


def test_a_local_copy_that_fails_its_digest_is_reported_and_kept(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = _ttur(tmp_path / "src.npz").read_bytes()
    e = _pin(monkeypatch, _synthetic_entry(data, "http://127.0.0.1:9/t_stats.npz"))
    monkeypatch.setenv("FIDKIT_REFSTATS_DIR", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    _ttur(tmp_path / "mine" / "t_stats.npz", seed=1)  # same size (same shapes), other bytes
    with pytest.raises(WeightsError, match="did not touch it"):
        refstats.get(e.name, progress=False)
    assert (tmp_path / "mine" / "t_stats.npz").exists()


# ----------------------------------------------------------------------------------------- command line


def test_cli_list_table_and_json(capsys: pytest.CaptureFixture) -> None:
    assert main(["refstats", "list"]) == 0
    out = capsys.readouterr().out
    assert "ttur-cifar10-train" in out and "no published digest" in out and "b32732719497" in out
    assert "2,037,122,530" in out
    assert main(["refstats", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(refstats.REFSTATS) and all(r["found"] is None for r in rows)


def test_cli_get_and_verify_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: _Server,
                                       capsys: pytest.CaptureFixture) -> None:
    data = _ttur(tmp_path / "src.npz").read_bytes()
    server.files["/t_stats.npz"] = data
    e = _pin(monkeypatch, _synthetic_entry(data, server.url("/t_stats.npz")))
    assert main(["refstats", "get", e.name, "--to", str(tmp_path / "dl"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["status"] == "ok" and got["sha256"] == e.sha256 and got["path"] == str(tmp_path / "dl" / e.filename)
    assert main(["refstats", "verify", str(tmp_path / "dl" / e.filename), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "ok"
    assert main(["refstats", "verify", e.name]) == 1  # named, but not in the cache or the search folders
    assert "missing" in capsys.readouterr().out
    assert main(["refstats", "verify"]) == 0  # nothing found locally: nothing wrong
    assert "no registered reference statistics found locally" in capsys.readouterr().out
    assert main(["refstats", "get", e.name]) == 0
    capsys.readouterr()
    assert main(["refstats", "verify"]) == 0  # every file found locally
    assert f"ok        {e.name}" in capsys.readouterr().out
    (refstats.cache_dir() / e.filename).write_bytes(_ttur(tmp_path / "o.npz", seed=9).read_bytes())
    assert main(["refstats", "verify", e.name, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["status"] == "mismatch"
    # no published digest: reported as such, never "ok"
    plain = _ttur(tmp_path / "fid_stats_svhn_train.npz", seed=5)
    assert main(["refstats", "verify", str(plain)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no published digest ttur-svhn-train") and "only the shapes were checked" in out
    # bad input: exit 2 with one line
    assert main(["refstats", "verify", "no-such-name"]) == 2
    assert main(["refstats", "verify", str(_ttur(tmp_path / "unregistered.npz", seed=6))]) == 2
    (tmp_path / "fid_stats_celeba.npz").write_bytes(b"PK\x03\x04 damaged")
    assert main(["refstats", "verify", str(tmp_path / "fid_stats_celeba.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and all(line.startswith("fidkit: ") for line in err.splitlines())
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    assert main(["refstats", "get", "ttur-celeba"]) == 2
    assert "fid_stats_celeba.npz" in capsys.readouterr().err


def test_python_m_fidkit_refstats_list() -> None:
    env = {**os.environ, "FIDKIT_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "fidkit", "refstats", "list", "--json"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == len(refstats.REFSTATS)


def test_published_md_is_generated_from_the_registry() -> None:
    text = (Path(__file__).resolve().parents[1] / "reference_stats" / "published.md").read_text()
    assert text == refstats.markdown()
    assert all(f"`{e.name}`" in text for e in refstats.REFSTATS.values())
