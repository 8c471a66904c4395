"""Damaged weights files and missing ones, through the real ``fidkit`` CLI in a subprocess.

Issue 12.7: a truncated, empty or garbage weights file, on every route a user can send one down (``--weights
FILE``, the cache, ``$FIDKIT_WEIGHTS_DIR``, torch hub's checkpoints, ``weights verify``, ``weights convert``),
gives exit status 2 and one ``fidkit: `` line naming the file and what was found, never a traceback, and
leaves nothing behind. Issue 13: missing weights print no empty progress bar, leave no lock file, and
``weights where EXTRACTOR`` says that any one of the listed files is enough and which one would be used.

The valid files are synthetic weights (`fidkit.archs.synthetic`, of the small MNIST graph) written in each
container fidkit reads: torch.save zips named as pytorch-fid's, torch-fidelity's and torchvision's files, a
TorchScript archive named as NVIDIA's, TensorFlow's ``.tgz`` layout and a canonical ``.npz``; a truncated
file is the first half of one of them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime

from fidkit.archs.mnist import mnist_v1
from fidkit.archs.synthetic import synthetic_weights
from fidkit.weights import save_canonical

PFID = "pt_inception-2015-12-05-6726825d.pth"
TFID = "weights-inception-2015-12-05-6726825d.pth"
NVIDIA = "inception-2015-12-05.pt"
TGZ = "inception-2015-12-05.tgz"
TORCHVISION = "inception_v3_google-0cc3c7bd.pth"

#: Each container fidkit reads: (label, file name, needs torch to write).
FORMATS = [("pytorch-fid", PFID, True), ("torch-fidelity", TFID, True), ("nvidia-torchscript", NVIDIA, True),
           ("tf-tgz", TGZ, False), ("torchvision", TORCHVISION, True), ("canonical", "synthetic.npz", False)]


# ----------------------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return synthetic_weights(mnist_v1(), size=(28, 28))


def _write(label: str, path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Writes ``arrays`` in the container of ``label`` to ``path``."""
    if label == "canonical":
        save_canonical(arrays, path)
    elif label == "tf-tgz":
        pb = b"".join(a.tobytes() for a in arrays.values())  # incompressible: the cut lands mid-stream
        with tarfile.open(path, "w:gz") as tar:
            for name, data in (("classify_image_graph_def.pb", pb),
                               ("imagenet_synset_to_human_label_map.txt", b"n00004475\torganism, being\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    elif label == "nvidia-torchscript":
        import torch

        class Holder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                for i, a in enumerate(arrays.values()):
                    self.register_buffer(f"b{i}", torch.from_numpy(a.copy()))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x

        torch.jit.script(Holder()).save(str(path))
    else:
        import torch

        torch.save({k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, path)
    return path


def _valid(label: str, name: str, needs_torch: bool, folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    if needs_torch:
        require_runtime("torch")
    folder.mkdir(parents=True, exist_ok=True)
    return _write(label, folder / name, arrays)


def _truncated(valid: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = valid.read_bytes()
    out = folder / valid.name
    out.write_bytes(data[: len(data) // 2])
    return out


def _zip_of_images(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("images/0001.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    return path


#: Damaged files that need no valid file to start from: (id, file name, content or writer, what is said).
GARBAGE = [
    ("empty", "empty.pth", b"", "is empty"),
    ("html-page-as-pth", PFID, b"<html><body>404 Not Found</body></html>\n" * 20, "unknown weights format"),
    ("text-as-npz", "stats.npz", b"mu,sigma\n1,2\n" * 20, "unknown weights format"),
    ("gzip-not-tar", TGZ, None, "not a tar archive"),
    ("zip-of-images", "images.pth", _zip_of_images, "not a weights file"),
]


def _garbage(name: str, content: object, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if content is None:
        import gzip

        path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(4096)))
    elif callable(content):
        content(path)
    else:
        path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------------------- the CLI


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The subprocess environment: its own FIDKIT_HOME, TORCH_HOME and XDG cache, offline."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("FIDKIT_WEIGHTS_DIR", "FIDKIT_OFFLINE", "NO_PROXY", "no_proxy")}
    out.update(FIDKIT_HOME=str(tmp_path / "home"), TORCH_HOME=str(tmp_path / "torch"),
               XDG_CACHE_HOME=str(tmp_path / "xdg"), FIDKIT_OFFLINE="1")
    return out


@pytest.fixture
def images(tmp_path: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    return str(tmp_path / "a.npy"), str(tmp_path / "b.npy")


def _fidkit(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "fidkit"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "fidkit"]
    return subprocess.run([*cmd, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Asserts exit status 2 and a stderr of exactly one ``fidkit: `` line holding ``needles``; returns it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()  # splits on "\r" too: a progress bar would show as more lines
    assert len(lines) == 1 and lines[0].startswith("fidkit: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _routes(bad: Path, out: Path) -> dict[str, list[str]]:
    return {"fid --weights": ["fid", "a.npy", "b.npy", "--extractor", "inception-tf2015", "--weights", str(bad)],
            "weights verify": ["weights", "verify", str(bad)],
            "weights convert -o": ["weights", "convert", str(bad), "-o", str(out / "converted.npz")],
            "weights convert": ["weights", "convert", str(bad)]}


def _check_every_route(bad: Path, what: str, tmp_path: Path, env: dict[str, str]) -> None:
    before = bad.read_bytes()
    out = tmp_path / "out"
    for route, args in _routes(bad, out).items():
        proc = _fidkit(*args, env=env, cwd=tmp_path)
        line = _one_error_line(proc, str(bad), what)
        assert _everything_under(tmp_path / "home") == [], (route, line)
        assert _everything_under(out) == [], (route, line)
        assert bad.read_bytes() == before, route


# ----------------------------------------------------------------------------------------- issue 12.7


@pytest.mark.parametrize(("label", "name", "needs_torch"), FORMATS, ids=[f[0] for f in FORMATS])
def test_a_truncated_file_is_one_clear_error_on_every_explicit_route(
        label: str, name: str, needs_torch: bool, arrays: dict[str, np.ndarray], images: tuple[str, str],
        tmp_path: Path, env: dict[str, str]) -> None:
    valid = _valid(label, name, needs_torch, tmp_path / "valid", arrays)
    bad = _truncated(valid, tmp_path / "bad")
    _check_every_route(bad, "is truncated", tmp_path, env)


@pytest.mark.parametrize(("name", "content", "what"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_an_empty_or_garbage_file_is_one_clear_error_on_every_explicit_route(
        name: str, content: object, what: str, images: tuple[str, str], tmp_path: Path,
        env: dict[str, str]) -> None:
    bad = _garbage(name, content, tmp_path / "bad")
    _check_every_route(bad, what, tmp_path, env)


#: Registered files and an extractor that looks for each, for the cache routes.
CACHED = [("pytorch-fid", PFID, True, "inception-tf2015"), ("nvidia-torchscript", NVIDIA, True, "inception-tf2015"),
          ("tf-tgz", TGZ, False, "inception-tf2015"), ("torchvision", TORCHVISION, True, "inception-torchvision")]


@pytest.mark.parametrize("place", ["cache", "FIDKIT_WEIGHTS_DIR", "torch hub"])
@pytest.mark.parametrize(("label", "name", "needs_torch", "extractor"), CACHED, ids=[c[0] for c in CACHED])
def test_a_truncated_file_found_locally_says_so_and_is_left_alone(
        label: str, name: str, needs_torch: bool, extractor: str, place: str, arrays: dict[str, np.ndarray],
        images: tuple[str, str], tmp_path: Path, env: dict[str, str]) -> None:
    """Found in the cache, $FIDKIT_WEIGHTS_DIR or torch hub: the error says the file is truncated and to
    delete it or pass a good copy with --weights, not to pass this one (which then crashed)."""
    if place == "torch hub" and name == TGZ:
        pytest.skip("torch hub holds torch files only")
    folder = {"cache": tmp_path / "home" / "weights", "FIDKIT_WEIGHTS_DIR": tmp_path / "envdir",
              "torch hub": tmp_path / "torch" / "hub" / "checkpoints"}[place]
    if place == "FIDKIT_WEIGHTS_DIR":
        env["FIDKIT_WEIGHTS_DIR"] = str(folder)
    bad = _truncated(_valid(label, name, needs_torch, tmp_path / "valid", arrays), folder)
    before, home = _everything_under(tmp_path / "home"), tmp_path / "home"
    proc = _fidkit("fid", "a.npy", "b.npy", "--extractor", extractor, env=env, cwd=tmp_path)
    line = _one_error_line(proc, str(bad), "is truncated", "delete it", "--weights")
    assert "unofficial" not in line
    assert _everything_under(home) == before and bad.is_file()
    proc = _fidkit("weights", "verify", env=env, cwd=tmp_path)  # every registered file found locally
    _one_error_line(proc, str(bad), "is truncated")
    assert _everything_under(home) == before


# ----------------------------------------------------------------------------------------- issue 13


@pytest.mark.parametrize("how", ["FIDKIT_OFFLINE", "no network"])
def test_missing_weights_print_one_line_no_bar_and_leave_no_lock(
        how: str, images: tuple[str, str], tmp_path: Path, env: dict[str, str]) -> None:
    """No network is simulated by a proxy on a closed port: every download attempt is refused at once."""
    if how == "no network":
        del env["FIDKIT_OFFLINE"]
        proxy = f"http://127.0.0.1:{_closed_port()}"
        env.update(http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy)
    proc = _fidkit("fid", "a.npy", "b.npy", "--extractor", "inception-tf2015", env=env, cwd=tmp_path)
    line = _one_error_line(proc, PFID, "not found and not downloadable")
    assert "B/s" not in proc.stderr and "\r" not in proc.stderr, "an empty download bar was printed"
    assert [p.name for p in (tmp_path / "home").rglob("*.lock")] == [], line
    assert [p for p in (tmp_path / "home").rglob("*") if p.is_file()] == []


def test_where_says_any_one_file_is_enough_and_which_would_be_used(tmp_path: Path, env: dict[str, str]) -> None:
    from fidkit.registry import get_spec

    names = get_spec("inception-tf2015").weights
    proc = _fidkit("weights", "where", "inception-tf2015", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.splitlines()[0]
    assert f"any one of these {len(names)} is enough" in head and "FIDKIT_OFFLINE is set" in head, head

    del env["FIDKIT_OFFLINE"]  # online: the first file it would try is named, and marked
    proc = _fidkit("weights", "where", "inception-tf2015", "--json", env=env, cwd=tmp_path)
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == list(names) and {r["extractor"] for r in rows} == {"inception-tf2015"}
    assert sum(r["used"] for r in rows) == 1
    proc = _fidkit("weights", "where", "inception-tf2015", env=env, cwd=tmp_path)
    marked = [line for line in proc.stdout.splitlines() if line.endswith("this one would be downloaded")]
    assert len(marked) == 1 and "would download" in proc.stdout.splitlines()[0], proc.stdout

    folder = tmp_path / "envdir"  # one file present, the least preferred: it is the one used
    folder.mkdir()
    shutil.copyfile(__file__, folder / names[-1])
    env["FIDKIT_WEIGHTS_DIR"] = str(folder)
    proc = _fidkit("weights", "where", "inception-tf2015", env=env, cwd=tmp_path)
    head = proc.stdout.splitlines()[0]
    assert f"it uses {names[-1]} (found at {folder / names[-1]})" in head, head
    assert f"{names[-1]}: found at {folder / names[-1]} — this one is used" in proc.stdout
    assert not (tmp_path / "home").exists()
