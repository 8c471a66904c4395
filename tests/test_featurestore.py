"""fidkit.featurestore: the bound, the spill file's life, and the metrics on memory-mapped features.

KID, IS and PR/DC on features spilled to disk must give exactly the numbers of the same features in
memory (same seeds): the metrics read both through the same float64 blocks, so not a bit may differ.
PR/DC on tiled distances is also checked against the ``prdc`` package, an independent computation.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys

import numpy as np
import pytest

from fidkit import featurestore
from fidkit.errors import InputError
from fidkit.featurestore import FeatureStore
from fidkit.inception_score import inception_score
from fidkit.kid import kid

prdc = importlib.import_module("fidkit.prdc")  # the module (fidkit.prdc the attribute is the function)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


def _store(x: np.ndarray, folder, max_bytes: int | None, batch: int = 37) -> np.ndarray:
    s = FeatureStore(max_bytes=max_bytes, directory=folder)
    for lo in range(0, len(x), batch):
        s.append(x[lo:lo + batch])
    out = s.finalize()
    assert s.spilled == (max_bytes is not None and x.nbytes > max_bytes)
    return out


def _open_in(folder) -> list[str]:
    """Returns what this process holds open or mapped in ``folder`` (file descriptors and mappings)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
    with open("/proc/self/maps") as f:
        held += [line.split(None, 5)[-1].strip() for line in f if len(line.split()) >= 6]
    return [h for h in held if h.startswith(str(folder))]


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, d)) + shift).astype(np.float32)


def test_spilled_and_in_memory_give_identical_metrics(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(prdc, "COLUMN_TILE", 64)  # several column tiles at a small N
    real, fake = _features(300, 12, 0), _features(280, 12, 1, 0.3)
    logits = _features(290, 10, 2) * 3
    mem = [_store(a, tmp_path, None) for a in (real, fake, logits)]
    disk = [_store(a, tmp_path, 1000) for a in (real, fake, logits)]
    assert all(isinstance(a, np.memmap) for a in disk) and not any(isinstance(a, np.memmap) for a in mem)
    assert kid(disk[0], disk[1], subsets=7, subset_size=50, seed=3) == kid(mem[0], mem[1], subsets=7,
                                                                           subset_size=50, seed=3)
    for kw in ({}, {"shuffle_seed": None}, {"splits": 4, "parts": "chunk", "ddof": 1}):
        assert inception_score(disk[2], **kw) == inception_score(mem[2], **kw)
    assert prdc.prdc(disk[0], disk[1], 5) == prdc.prdc(mem[0], mem[1], 5)
    assert prdc.prdc(disk[0], disk[1]) == prdc.prdc(mem[0], mem[1])
    assert prdc.precision_recall(disk[0], disk[1], 3, block_size=17) == prdc.precision_recall(mem[0], mem[1], 3)
    # and the tiled distances are the prdc package's numbers (an independent computation)
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        peer = compute_prdc(real.astype(np.float64), fake.astype(np.float64), 5)
    assert prdc.prdc(disk[0], disk[1], 5)._asdict() == pytest.approx(peer, rel=0, abs=0)


def test_bound_triggers(tmp_path) -> None:
    x = _features(10, 4, 0)  # 160 bytes
    assert not isinstance(_store(x, tmp_path, 160, batch=3), np.memmap)  # at the bound: in memory
    spilled = _store(x, tmp_path, 159, batch=3)
    assert isinstance(spilled, np.memmap) and not spilled.flags.writeable
    np.testing.assert_array_equal(spilled, x)
    assert isinstance(_store(x, tmp_path, 0, batch=3), np.memmap)
    assert not isinstance(_store(x, tmp_path, None, batch=3), np.memmap)
    assert os.listdir(tmp_path) == []  # the spill file never has a name in the folder


def test_bound_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(featurestore.SPILL_DIR_ENV, str(tmp_path))
    x = _features(100, 8, 0)  # 3200 bytes
    for value, spills in (("3K", True), ("4k", False), ("3200", False), ("3199", True), ("none", False),
                          ("0", True)):
        monkeypatch.setenv(featurestore.MAX_BYTES_ENV, value)
        assert FeatureStore().append(x).spilled is spills, value
    monkeypatch.delenv(featurestore.MAX_BYTES_ENV)
    assert featurestore.default_max_bytes() == featurestore.DEFAULT_MAX_BYTES == 2**30
    assert featurestore.parse_bytes("1.5G") == 3 * 2**29
    monkeypatch.setenv(featurestore.MAX_BYTES_ENV, "lots")
    with pytest.raises(InputError, match=r"^FIDKIT_MAX_FEATURES_BYTES='lots': expected a byte count"):
        FeatureStore()


@linux_only
def test_spill_file_released_after_use(tmp_path) -> None:
    s = FeatureStore(max_bytes=0, directory=tmp_path)
    s.append(_features(50, 8, 0))
    assert _open_in(tmp_path) and os.listdir(tmp_path) == []
    m = s.finalize()
    view = m[10:20]
    del m, s
    assert _open_in(tmp_path)  # a view still maps the file
    del view
    assert _open_in(tmp_path) == []  # the last reference gone, the space is the file system's again


@linux_only
def test_spill_file_released_on_error(tmp_path) -> None:
    with pytest.raises(InputError, match="a batch of shape"), FeatureStore(max_bytes=0, directory=tmp_path) as s:
        s.append(_features(5, 8, 0))
        assert _open_in(tmp_path)
        s.append(_features(5, 9, 0))
    assert _open_in(tmp_path) == []
    with pytest.raises(RuntimeError), FeatureStore(max_bytes=0, directory=tmp_path) as s:
        s.append(_features(5, 8, 0))
        raise RuntimeError("user code failed")
    assert _open_in(tmp_path) == []


def test_disk_full_is_an_input_error(tmp_path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    s = FeatureStore(max_bytes=0, directory=tmp_path)
    s.append(_features(5, 8, 0))
    s._file.close()  # stands for the disk: writes to /dev/full fail with ENOSPC
    s._file = open("/dev/full", "wb", buffering=0)  # noqa: SIM115
    with pytest.raises(InputError, match=r"cannot write features to the spill file .*No space left.*"
                                         r"FIDKIT_SPILL_DIR"):
        s.append(_features(5, 8, 1))
    assert s._file is None


@linux_only
def test_reading_releases_mapped_pages(tmp_path) -> None:
    """The block readers leave (almost) none of a 32 MB spill file resident in this process."""
    x = _store(_features(4096, 2048, 0), tmp_path, 0, batch=512)
    total = 0.0
    for _, block in featurestore.blocks(x, 256):
        total += float(block.sum())
    assert total == pytest.approx(float(np.asarray(x, dtype=np.float64).sum()), rel=1e-12)
    featurestore.release(x)
    for _ in featurestore.blocks(x, 256):
        pass
    with open("/proc/self/smaps") as f:
        text = f.read()
    sections = [s for s in text.split("\n") if s]
    rss_kb, inside = 0, False
    for line in sections:
        if "-" in line.split()[0] and len(line.split()) >= 5 and ":" not in line.split()[0]:
            inside = str(tmp_path) in line
        elif inside and line.startswith("Rss:"):
            rss_kb += int(line.split()[1])
    assert rss_kb < 2 * 256 * 2048 * 4 / 1024  # at most the last block's pages, not the file's 32 MB


def test_memory_mapped_input_checked_without_a_copy(tmp_path) -> None:
    x = _features(20, 3, 0)
    x[7, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match=r"^real: expected finite values, found 1 NaN/inf \(first: NaN at "
                                         r"index \(7, 2\)\)"):
        prdc.prdc(np.load(tmp_path / "x.npy", mmap_mode="r"), _features(20, 3, 1), 3)
    np.save(tmp_path / "y.npy", _features(20, 3, 0)[:, :, None])
    with pytest.raises(InputError, match=r"^features1: expected a 2-D array"):
        kid(np.load(tmp_path / "y.npy", mmap_mode="r"), x, subset_size=5)


def test_concatenate_consumes_the_pieces(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(featurestore.SPILL_DIR_ENV, str(tmp_path))
    x = _features(30, 4, 0)
    pieces = [x[:10], x[10:25], x[25:]]
    out = featurestore.concatenate(pieces, max_bytes=100)
    assert pieces == [] and isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, x)
    pieces = [x[:10], x[10:]]
    out = featurestore.concatenate(pieces)
    assert pieces == [] and not isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, x)


@pytest.fixture(scope="module")
def mnist_numpy(tmp_path_factory):
    """The mnist graph on the numpy runtime with seeded synthetic weights (as tests/test_pipeline.py)."""
    from types import SimpleNamespace

    from fidkit.archs.mnist import mnist_v1
    from fidkit.backends.numpy.network import network
    from fidkit.extraction import assemble, builtin_convention
    from fidkit.registry import get_spec
    from fidkit.resize import get_policy

    graph = mnist_v1()
    rng = np.random.default_rng(7)
    params = {k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.standard_normal(s) * 0.1)
              .astype(np.float32) for k, s in graph.param_shapes().items()}
    path = tmp_path_factory.mktemp("w") / "w.npz"
    np.savez(path, **params)
    spec, policy = get_spec("mnist"), get_policy("mnist")
    forward = network(spec=spec, weights=SimpleNamespace(path=path), device="cpu")
    return assemble(spec, "numpy", "cpu", policy, builtin_convention(spec, policy, forward.layout), forward,
                    weights_sha256="f" * 64, weights_source="w.npz")


@pytest.mark.filterwarnings("ignore::fidkit.errors.FidkitWarning")  # few images, on purpose
def test_pipeline_spills_past_the_bound_and_scores_the_same(mnist_numpy, tmp_path, monkeypatch) -> None:
    from fidkit.pipeline import compute_features
    from fidkit.scoring import score

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (40, 28, 28, 3), dtype=np.uint8)
    fake = rng.integers(0, 200, (36, 28, 28, 3), dtype=np.uint8)
    opts = {"batch_size": 8, "progress": False}
    monkeypatch.setenv(featurestore.SPILL_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(featurestore.MAX_BYTES_ENV, raising=False)
    mem = compute_features(real, mnist_numpy, **opts)
    kw = {"metrics": ["fid", "kid", "is", "pr", "dc"], "kid_subset_size": 20, "bootstrap": 0, **opts}
    want = score(real, fake, extractor=mnist_numpy, **kw)
    monkeypatch.setenv(featurestore.MAX_BYTES_ENV, "0")
    disk = compute_features(real, mnist_numpy, **opts)
    assert isinstance(disk.features, np.memmap) and isinstance(disk.logits, np.memmap)
    np.testing.assert_array_equal(disk.features, mem.features)
    np.testing.assert_array_equal(disk.logits, mem.logits)
    got = score(real, fake, extractor=mnist_numpy, **kw)
    assert {k: got[k] for k in ("fid", "kid", "is", "pr", "dc")} == {k: want[k] for k in ("fid", "kid", "is", "pr", "dc")}
    del disk, got
    if sys.platform.startswith("linux"):
        assert _open_in(tmp_path) == []


def _mapped_rss_kb(folder) -> int:
    """Returns the resident KB of this process's mappings of files in ``folder`` (/proc/self/smaps)."""
    rss, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = str(folder) in line
            elif inside and line.startswith("Rss:"):
                rss += int(head[1])
    return rss


@linux_only
def test_take_bounds_the_pages_of_scattered_rows(tmp_path, monkeypatch) -> None:
    """Scattered rows are read a few at a time with the pages dropped in between: a fault can map a
    whole large folio (Linux 6.18), so one fancy index over the map could make all of it resident."""
    x = _store(_features(4096, 2048, 0), tmp_path, 0, batch=512)  # 32 MB
    index = np.random.default_rng(0).permutation(4096)[:256]
    monkeypatch.setattr(featurestore, "TAKE_ROWS", 4)
    seen: list[int] = []
    release = featurestore.release
    monkeypatch.setattr(featurestore, "release", lambda a: (seen.append(_mapped_rss_kb(tmp_path)), release(a)))
    np.testing.assert_array_equal(featurestore.take(x, index), np.asarray(x, dtype=np.float64)[index])
    assert len(seen) == 256 // 4
    assert max(seen) < 4 * 2048 + 4096  # at most 4 rows' folios (2 MB each, the largest common size)


def test_large_in_memory_array_is_not_copied_whole(monkeypatch) -> None:
    """An array whose float64 copy would pass the bound is read in blocks like a spilled one: same numbers."""
    real, fake, logits = _features(200, 6, 0), _features(190, 6, 1, 0.2), _features(150, 5, 2) * 3
    want = (kid(real, fake, subsets=4, subset_size=30), inception_score(logits), prdc.prdc(real, fake, 3))
    monkeypatch.setenv(featurestore.MAX_BYTES_ENV, "1K")
    assert featurestore.validated(real, "real") is real  # float32, not a float64 copy
    assert (kid(real, fake, subsets=4, subset_size=30), inception_score(logits), prdc.prdc(real, fake, 3)) == want
    small = _features(5, 6, 0)
    assert featurestore.validated(small, "x").dtype == np.float64  # under the bound: as before
