"""torchrun -m fidkit on 2 gloo processes equals one process; a run killed with SIGKILL resumes bit for bit.

Every process runs with OMP_NUM_THREADS=1 (torchrun's default): torch's CPU kernels split their sums
by thread, so features are reproducible only at a fixed thread count, and the single-process reference
uses the same one. Each image then goes through the network in the same batch in both runs
(`fidkit.distributed` shards by whole batches), so features are bit-identical, KID and PR computed on
them are equal exactly, and only the statistics' summation order differs (tolerances.toml
[distributed.stats]).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import tolerance

pytest.importorskip("torch")

from fidkit.checkpoint import Checkpoint  # noqa: E402
from fidkit.distributed import pack, shard_bounds, unpack  # noqa: E402
from fidkit.errors import InputError  # noqa: E402
from fidkit.features import load_features  # noqa: E402
from fidkit.mnist_data import load_mnist  # noqa: E402
from fidkit.stats import Provenance, Stats, StatsAccumulator  # noqa: E402
from fidkit.stats import load as load_stats  # noqa: E402

SLOW_EXTRACTOR = '''
import os, time
from fidkit.extraction import extractor

def build(device=None):
    """The mnist extractor, sleeping SLOW_DELAY seconds per batch (so a test can kill it mid-run)."""
    ex = extractor("mnist", "torch", device=device or "cpu")
    plain = ex.outputs
    def outputs(*args, **kwargs):
        time.sleep(float(os.environ.get("SLOW_DELAY", "0")))
        return plain(*args, **kwargs)
    ex.outputs = outputs
    return ex
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """MNIST test images as PNG folders of 13, 9, 3 and 1 images, an .npy of 11 and one of 2,000."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dist")
    x, _ = load_mnist()
    for name, first, n in (("a", 0, 13), ("b", 100, 9), ("three", 200, 3), ("one", 300, 1)):
        (root / name).mkdir()
        for i in range(n):
            Image.fromarray(x[first + i]).save(root / name / f"{i:03d}.png")
    np.save(root / "arr.npy", x[400:411])
    np.save(root / "big.npy", x[1000:3000])
    (root / "slow.py").write_text(SLOW_EXTRACTOR)
    return root


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_port()), "-m", "fidkit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=180, check=False)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's OMP_NUM_THREADS=1 in each process
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _single(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Returns the stdout of ``fidkit args`` run in this process on one thread (the reference)."""
    from fidkit.cli import main

    capsys.readouterr()
    with _one_thread():
        rc = main(list(args))
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _assert_close(a: Stats, b: Stats) -> None:
    tol = tolerance("distributed", "stats")
    assert a.n == b.n
    assert a.provenance == b.provenance
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=tol * np.abs(b.mean).max())
    np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=tol * np.abs(b.cov).max())


OPTS = ("--batch-size", "4", "--no-progress")


def test_shards_are_whole_contiguous_batches() -> None:
    for n in range(0, 40):
        for bs in (1, 3, 4, 50):
            for world in (1, 2, 3, 5):
                bounds = [shard_bounds(n, bs, r, world) for r in range(world)]
                assert bounds[0][0] == 0 and bounds[-1][1] == n
                for (lo, hi), (lo2, _) in zip(bounds[:-1], bounds[1:], strict=True):
                    assert hi == lo2 and lo <= hi
                for lo, hi in bounds:
                    assert lo % bs == 0 or lo == n
                    assert hi % bs == 0 or hi == n
                sizes = [-(-(hi - lo) // bs) for lo, hi in bounds]  # batches per rank differ by <= 1
                assert max(sizes) - min(sizes) <= 1


def test_one_message_merge_has_no_cancellation() -> None:
    """pack/unpack on 3 simulated ranks (one empty) against the float64 statistics of all rows, on
    features whose mean is 1e4 times their spread (raw sums of squares would lose 8 digits)."""
    rng = np.random.default_rng(3)
    x = 1e4 + rng.standard_normal((700, 6)) @ rng.standard_normal((6, 6))
    ref = Stats.from_features(x)
    parts = [x[:300], x[300:300], x[300:]]
    accs = [StatsAccumulator().update(p) if len(p) else None for p in parts]
    total = sum(pack(a, 6, r, 3) for r, a in enumerate(accs))
    got = unpack(total, 6, 3, Provenance(), "x")
    tol = tolerance("distributed", "stats")
    assert got.n == 700
    np.testing.assert_allclose(got.mean, ref.mean, rtol=tol)
    np.testing.assert_allclose(got.cov, ref.cov, rtol=0, atol=tol * np.abs(ref.cov).max())
    with pytest.raises(InputError, match="1 image"):
        unpack(pack(StatsAccumulator().update(x[:1]), 6, 0, 2) + pack(None, 6, 1, 2), 6, 2, Provenance(), "x")


@pytest.fixture(scope="module")
def stats_a(data: Path, tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``torchrun ... stats a/``: 13 images in batches of 4, rank 0 reads 8, rank 1 reads 5 (uneven)."""
    out = tmp_path_factory.mktemp("stats") / "a-2.npz"
    return _ok(_torchrun("stats", str(data / "a"), "-o", str(out), *OPTS)), out


def test_stats_two_processes_equal_one(data: Path, tmp_path: Path, stats_a, capsys) -> None:
    dist, out = stats_a
    assert dist.stdout.count("wrote") == 1  # rank 1 printed nothing
    assert dist.stderr.count("fidkit: extractor mnist") == 1
    _single(capsys, "stats", str(data / "a"), "-o", str(tmp_path / "a-1.npz"), *OPTS)
    _assert_close(load_stats(out), load_stats(tmp_path / "a-1.npz"))


def test_too_few_images_one_error_line(data: Path, tmp_path: Path) -> None:
    proc = _torchrun("stats", str(data / "one"), "-o", str(tmp_path / "x.npz"), *OPTS)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("fidkit: ") and "extractor mnist" not in ln]
    assert len(lines) == 1 and "1 image" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "x.npz").exists()


def test_unreadable_file_in_one_shard_stops_every_rank(data: Path, tmp_path: Path) -> None:
    """5 files in batches of 4: the truncated last one is rank 1's alone; rank 0 says it, once."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for i, f in enumerate(sorted((data / "a").iterdir())[:4]):
        (bad / f"{i:03d}.png").write_bytes(f.read_bytes())
    (bad / "004.png").write_bytes((data / "a" / "000.png").read_bytes()[:40])
    proc = _torchrun("stats", str(bad), "-o", str(tmp_path / "x.npz"), *OPTS)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("fidkit: ") and "extractor mnist" not in ln]
    assert len(lines) == 1 and lines[0].startswith("fidkit: rank 1 of 2: ") and "004.png" in lines[0], lines
    assert "--skip-bad" in lines[0]


def test_features_gathered_in_input_order(data: Path, tmp_path: Path, capsys) -> None:
    """An .npy of 11 images in batches of 8: rank 0 reads 8, rank 1 reads 3."""
    opts = ("--batch-size", "8", "--no-progress")
    _ok(_torchrun("features", str(data / "arr.npy"), "-o", str(tmp_path / "d.npz"), *opts))
    _single(capsys, "features", str(data / "arr.npy"), "-o", str(tmp_path / "s.npz"), *opts)
    d, s = load_features(tmp_path / "d.npz"), load_features(tmp_path / "s.npz")
    assert d.names == s.names == [str(i) for i in range(11)]
    np.testing.assert_array_equal(d.features, s.features)
    np.testing.assert_array_equal(d.logits, s.logits)


def test_fid_and_score_equal_one_process(data: Path, capsys) -> None:
    """real: 13 images (8 + 5); fake: 3 images in one batch (rank 1 reads none)."""
    a, b = str(data / "a"), str(data / "three")
    fid2 = json.loads(_ok(_torchrun("fid", a, b, *OPTS, "--json")).stdout)
    fid1 = json.loads(_single(capsys, "fid", a, b, *OPTS, "--json"))
    assert fid2["fid"] == pytest.approx(fid1["fid"], rel=tolerance("distributed", "fid"), abs=0)
    assert (fid2["n_real"], fid2["n_fake"]) == (13, 3)
    opts = ("--metrics", "fid,kid,pr", "--bootstrap", "2", "--subset-size", "3", "--k", "2", "--dc-k", "2", *OPTS, "--json")
    s2 = json.loads(_ok(_torchrun("score", a, b, *opts)).stdout)
    s1 = json.loads(_single(capsys, "score", a, b, *opts))
    for key in ("kid", "pr", "intervals", "fid", "n_real", "n_fake"):  # features bit-identical: equal
        assert s2[key] == s1[key]


def test_checkpointed_distributed_run_equals_plain(data: Path, tmp_path: Path, stats_a) -> None:
    ck, out = tmp_path / "ck", tmp_path / "c.npz"
    _ok(_torchrun("stats", str(data / "a"), "-o", str(out), *OPTS, "--checkpoint", str(ck),
                  "--checkpoint-every", "4"))
    a, b = load_stats(stats_a[1]), load_stats(out)
    np.testing.assert_array_equal(a.mean, b.mean)  # two ranks: the all-reduce is exact
    np.testing.assert_array_equal(a.cov, b.cov)
    assert len(list(ck.glob("*.rank0-of-2.npz"))) == len(list(ck.glob("*.rank1-of-2.npz"))) == 1


def _saved_done(path: Path) -> int:
    try:
        with np.load(path) as z:
            return int(json.loads(str(z["meta"]))["done"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0


def test_sigkill_then_resume_is_bit_identical(data: Path, tmp_path: Path, capsys) -> None:
    """2,000 images in batches of 200, a checkpoint every 400, 0.4 s per batch: killed once the
    checkpoint holds 1,600 images (merged moments after the 1,200-row flush, plus 400 pooled rows),
    restarted, and compared with an uninterrupted run without checkpoints (all on one thread)."""
    big, ck = str(data / "big.npy"), tmp_path / "ck"
    args = ("stats", big, "--extractor", f"{data / 'slow.py'}:build", "--batch-size", "200", "--no-progress")
    resume = ("-o", str(tmp_path / "res.npz"), "--checkpoint", str(ck), "--checkpoint-every", "400")
    proc = subprocess.Popen([sys.executable, "-m", "fidkit", *args, *resume], env=_env(SLOW_DELAY="0.4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            state = next(ck.glob("*.rank0-of-1.npz"), None) if ck.exists() else None
            if state is not None and _saved_done(state) >= 1600:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert state is not None and 1600 <= _saved_done(state) < 2000
    assert not (tmp_path / "res.npz").exists()
    _single(capsys, *args, *resume)
    _single(capsys, *args, "-o", str(tmp_path / "plain.npz"))
    plain, resumed = load_stats(tmp_path / "plain.npz"), load_stats(tmp_path / "res.npz")
    assert resumed.n == plain.n == 2000
    np.testing.assert_array_equal(resumed.mean, plain.mean)
    np.testing.assert_array_equal(resumed.cov, plain.cov)
    # another job (a different batch size) is refused in one line
    from fidkit.cli import main

    assert main([*args[:-3], "--batch-size", "100", "--no-progress", "-o", str(tmp_path / "o.npz"),
                 "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fidkit: --checkpoint") and "belongs to another job (batch_size 200 vs 100)" in err


def test_features_resume_in_process(tmp_path: Path) -> None:
    """compute_features interrupted after 3 batches, resumed from its chunks: the same rows."""
    from fidkit.extraction import extractor
    from fidkit.pipeline import compute_features

    x = load_mnist()[0][:23]
    ex = extractor("mnist", "torch")
    plain = compute_features(x, ex, batch_size=4, progress=False)
    calls = {"n": 0}
    inner = ex.outputs

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return inner(*args, **kwargs)

    ex.outputs = failing
    with pytest.raises(KeyboardInterrupt):
        compute_features(x, ex, batch_size=4, progress=False, checkpoint=tmp_path, checkpoint_every=5)
    ex.outputs = inner
    # rows 0..7 saved after the batch that crossed 5 images, rows 8..11 after the one that crossed 10
    assert len(list(tmp_path.glob("array.features.rank0-of-1.0*.npz"))) == 2
    resumed = compute_features(x, ex, batch_size=4, progress=False, checkpoint=tmp_path, checkpoint_every=5)
    np.testing.assert_array_equal(resumed.features, plain.features)
    np.testing.assert_array_equal(resumed.logits, plain.logits)
    assert resumed.names == plain.names
    with pytest.raises(InputError, match="--checkpoint"):
        Checkpoint(tmp_path / "array.features.rank0-of-1.npz", "array", {})  # a file where a folder is expected
