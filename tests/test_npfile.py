"""npfile: .npy/.npz told by content from headers alone, read without unpickling, one-line errors."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fidkit import npfile
from fidkit.errors import InputError
from fidkit.stats import Stats

MARKER = "unpickled.marker"


class _Trap:
    """Unpickling this object creates a file: proof that something unpickled."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self):
        return (open, (str(self.where), "w"))


def _stats_file(tmp_path: Path, name: str = "s.npz", d: int = 6) -> Path:
    x = np.random.default_rng(0).standard_normal((20, d))
    return Stats.from_features(x).save(tmp_path / name)


def _one_line(exc: pytest.ExceptionInfo[InputError], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    return msg


# --- content, not extension -----------------------------------------------------------------------


def test_container_by_content_not_extension(tmp_path: Path) -> None:
    written = _stats_file(tmp_path)
    renamed = tmp_path / "b"
    written.rename(renamed)
    np.save(tmp_path / "img.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "img.npy").rename(tmp_path / "img.png")
    (tmp_path / "fake.npz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with zipfile.ZipFile(tmp_path / "pics.npz", "w") as zf:
        zf.writestr("a.png", b"not really")
    assert npfile.container(renamed) == "npz"
    assert npfile.container(tmp_path / "img.png") == "npy"
    assert npfile.container(tmp_path / "fake.npz") is None
    assert npfile.container(tmp_path / "pics.npz") == "zip"
    assert npfile.container(tmp_path) is None
    info = npfile.sniff(renamed)
    assert (info.container, info.kind, info.format) == ("npz", "stats", npfile.STATS_FORMAT)
    assert npfile.sniff(tmp_path / "img.png").kind == "images"


@pytest.mark.parametrize(("write", "kind", "main"), [
    (lambda p: np.savez(p, mu=np.zeros(3), sigma=np.eye(3)), "stats", None),             # pytorch-fid / TTUR
    (lambda p: np.savez_compressed(p, mu=np.zeros(3), sigma=np.eye(3)), "stats", None),  # clean-fid stats
    (lambda p: np.savez_compressed(p, feats=np.zeros((5, 3))), "features", "feats"),     # clean-fid KID
    (lambda p: np.savez(p, format=np.array(npfile.FEATURES_FORMAT), features=np.zeros((5, 3), np.float32),
                        names=np.array(["a"] * 5), provenance=np.array("{}")), "features", "features"),
    (lambda p: np.save(p, np.zeros((5, 3))), "features", "arr_0"),
    (lambda p: np.save(p, np.zeros((5, 8, 8, 3), np.uint8)), "images", "arr_0"),
    (lambda p: np.save(p, np.zeros((5, 8, 8), np.float32)), "images", "arr_0"),
    (lambda p: np.savez(p, images=np.zeros((5, 3, 8, 8)), labels=np.arange(5)), "images", "images"),
    (lambda p: np.savez(p, np.zeros((5, 8, 8, 3)), np.arange(5)), "images", "arr_0"),
    (lambda p: np.savez(p, embeddings=np.zeros((5, 3))), "features", "embeddings"),
    (lambda p: np.savez(p, mean=np.zeros(3), cov=np.eye(3)), "unknown", None),          # stats, other names
    (lambda p: np.savez(p, m=np.zeros(3), s=np.eye(3)), "unknown", None),
    (lambda p: np.savez(p, sigma=np.eye(3)), "unknown", None),                           # named like a statistic
    (lambda p: np.savez(p, mean=np.zeros((4, 3))), "unknown", None),
    (lambda p: np.savez(p, feats=np.zeros((5, 3, 2))), "unknown", None),
    (lambda p: np.save(p, np.zeros(5)), "unknown", None),
    (lambda p: np.save(p, np.zeros((1, 2, 3, 4, 5))), "unknown", None),
    (lambda p: np.save(p, {"mu": 1}, allow_pickle=True), "unknown", None),               # a pickled dict
    (lambda p: np.savez(p, format=np.array("fidkit-stats-v9"), mu=np.zeros(2), sigma=np.eye(2)), "unknown", None),
])
def test_sniff_kinds(tmp_path: Path, write, kind: str, main: str | None) -> None:
    path = tmp_path / "file"
    with open(path, "wb") as fh:  # a file object: numpy adds no extension
        write(fh)
    info = npfile.sniff(path)
    assert (info.kind, info.main) == (kind, main)
    assert info.container == npfile.container(path)


def test_sniff_reads_headers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.npy"
    np.lib.format.open_memmap(big, mode="w+", dtype=np.uint8, shape=(64, 256, 256, 3)).flush()
    np.savez_compressed(tmp_path / "feats.npz", feats=np.zeros((3000, 64), np.float32))

    def refuse(*args, **kwargs):
        raise AssertionError("sniff read array data")

    monkeypatch.setattr(np.lib.format, "read_array", refuse)
    monkeypatch.setattr(np, "load", refuse)
    assert npfile.sniff(big).arrays == {"arr_0": ((64, 256, 256, 3), np.dtype(np.uint8), False)}
    assert npfile.sniff(tmp_path / "feats.npz").arrays["feats"].shape == (3000, 64)


def test_nothing_is_ever_unpickled(tmp_path: Path) -> None:
    from fidkit.stats import load

    marker = tmp_path / MARKER
    np.save(tmp_path / "trap.npy", np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "trap.npz", mu=np.array([_Trap(marker)], dtype=object), sigma=np.eye(1))
    for name in ("trap.npy", "trap.npz"):
        path = tmp_path / name
        info = npfile.sniff(path)
        assert info.kind == "unknown" and info.pickled
        for call in (lambda p=path: npfile.read(p), lambda p=path: npfile.require(p, "stats"),
                     lambda p=path: load(p)):
            with pytest.raises(InputError, match="never unpickles") as exc:
                call()
            _one_line(exc, path)
    assert not marker.exists()


# --- the messages ---------------------------------------------------------------------------------


def test_statistics_under_other_names_say_what_was_found_and_how_to_rename(tmp_path: Path) -> None:
    ref = tmp_path / "ref.npz"
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    np.savez(ref, mean=mu, cov=sigma)
    with pytest.raises(InputError) as exc:
        npfile.require(ref, "stats")
    msg = _one_line(exc, ref)
    assert msg.startswith(f"{ref}: not a statistics file: found arrays ['cov', 'mean'], expected 'mu' and "
                          f"'sigma'; ")
    code = shlex.split(msg[msg.index("python -c "):])
    subprocess.run([sys.executable, *code[1:]], check=True, cwd=tmp_path)
    fixed = npfile.require(tmp_path / "ref-fixed.npz", "stats")
    got = npfile.read(fixed, ["mu", "sigma"])
    np.testing.assert_array_equal(got["mu"], mu)
    np.testing.assert_array_equal(got["sigma"], sigma)


def test_pickled_dict_message_converts_a_trusted_file(tmp_path: Path) -> None:
    ref = tmp_path / "ref.npy"
    mu, sigma = np.arange(3.0), np.eye(3)
    np.save(ref, {"mu": mu, "sigma": sigma}, allow_pickle=True)
    with pytest.raises(InputError, match="pickled Python object") as exc:
        npfile.require(ref, "stats")
    msg = _one_line(exc, ref)
    code = shlex.split(msg[msg.index("python -c "):msg.index(" (with the dict")])
    subprocess.run([sys.executable, *code[1:]], check=True, cwd=tmp_path)
    got = npfile.read(npfile.require(tmp_path / "ref.npz", "stats"))
    np.testing.assert_array_equal(got["sigma"], sigma)


@pytest.mark.parametrize(("make", "kinds", "pattern"), [
    (lambda p: np.save(p, np.zeros((4, 8, 8, 3), np.uint8)), ("stats",),
     r"not a statistics file: found image array \(4, 8, 8, 3\) uint8, expected 'mu' and 'sigma'; compute"),
    (lambda p: np.savez(p, mu=np.zeros(2), sigma=np.eye(2)), ("images",),
     r"not an image array: found statistics, expected one array of shape"),
    (lambda p: np.savez(p, weights=np.ones(3)), ("stats", "features"),
     r"not a statistics file or a features file: found arrays \['weights'\], expected 'mu' and 'sigma'; or a 2-D"),
    (lambda p: np.savez(p, feats=np.zeros((5, 3, 2))), ("features",),
     r"found 'feats' \(5, 3, 2\) float64, expected a 2-D \(N, d\) array"),
    (lambda p: np.savez(p, format=np.array("fidkit-stats-v9"), mu=np.zeros(2), sigma=np.eye(2)), ("stats",),
     r"fidkit file format 'fidkit-stats-v9', which this fidkit does not read .*; upgrade fidkit"),
    (lambda p: np.savez(p, format=np.array(npfile.STATS_FORMAT), mu=np.zeros(2)), ("stats",),
     r"a 'fidkit-stats-v1' file lacking its arrays \(found arrays \['format', 'mu'\]\)"),
])
def test_require_names_what_was_found_and_expected(tmp_path: Path, make, kinds, pattern: str) -> None:
    path = tmp_path / "in.npz"
    with open(path, "wb") as fh:
        make(fh)
    assert npfile.sniff(path).kind not in kinds
    with pytest.raises(InputError, match=pattern) as exc:
        npfile.require(path, *kinds)
    _one_line(exc, path)


def test_empty_garbage_truncated_and_foreign_files(tmp_path: Path) -> None:
    good = _stats_file(tmp_path, "good.npz", d=40)
    data = good.read_bytes()
    np.save(tmp_path / "img.npy", np.zeros((4, 8, 8, 3), np.uint8))
    npy = (tmp_path / "img.npy").read_bytes()
    cases = {
        "empty.npz": (b"", r"empty file \(0 bytes\)"),
        "garbage.npz": (b"hello world", r"neither a numpy .npy nor an .npz file \(it starts with b'hello wo'"),
        "trunc.npz": (data[: len(data) // 2], "cannot be read, truncated or corrupt"),
        "trunc": (data[: len(data) // 2], "directory cannot be read"),
        "header.npy": (npy[:20], "truncated inside the .npy header"),
        "data.npy": (npy[:-10], r"header announces a \(4, 8, 8, 3\) uint8 array \(896 bytes with the header\) "
                                r"but only 886"),
        "magic.npy": (b"\x93NUMPY\x07\x00" + npy[8:], "format version 7.0"),
        "header2.npy": (npy[:10] + b"{'descr': nonsense}".ljust(npy[8] + 256 * npy[9]) + npy[10 + npy[8]:],
                        "malformed .npy header"),
    }
    for name, (content, pattern) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=pattern) as exc:
            npfile.sniff(path)
        _one_line(exc, path)
    with zipfile.ZipFile(tmp_path / "readme.npz", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match=r"a zip archive with members 'readme.txt' but not only .npy arrays"):
        npfile.sniff(tmp_path / "readme.npz")
    with pytest.raises(InputError, match=r"missing.npz: no such file"):
        npfile.sniff(tmp_path / "missing.npz")
    with pytest.raises(InputError, match="a folder"):
        npfile.sniff(tmp_path)


def test_bad_crc_is_found_when_read(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, mu=np.zeros(200), sigma=np.eye(200))
    data = bytearray(path.read_bytes())
    data[data.index(b"\x93NUMPY", 100) + 400] ^= 0xFF  # inside sigma's data: headers intact, CRC wrong
    path.write_bytes(bytes(data))
    assert npfile.sniff(path).kind == "stats"
    with pytest.raises(InputError, match=r"s.npz: cannot be read, truncated or corrupt \(BadZipFile"):
        npfile.read(path)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                                                 max_size=3), compressed=st.booleans())
def test_damaged_files_raise_input_error_only(tmp_path_factory, cut: int, flips, compressed: bool) -> None:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, mu=np.arange(30.0), sigma=np.eye(30),
                                                      format=np.array(npfile.STATS_FORMAT))
    data = bytearray(buf.getvalue())
    for at, x in flips:
        data[at % len(data)] ^= x
    path = tmp_path_factory.mktemp("fuzz") / "s.npz"
    path.write_bytes(bytes(data[: cut % (len(data) + 1)]))
    try:
        npfile.read(npfile.sniff(path))
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


# --- reading --------------------------------------------------------------------------------------


def test_read_names_mmap_and_missing(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.save(tmp_path / "img.npy", images)
    got = npfile.read(tmp_path / "img.npy", mmap=True)["arr_0"]
    assert isinstance(got, np.memmap) and not got.flags.writeable
    np.testing.assert_array_equal(got, images)
    assert not isinstance(npfile.read(tmp_path / "img.npy")["arr_0"], np.memmap)
    path = _stats_file(tmp_path)
    info = npfile.sniff(path)
    assert set(npfile.read(info, ["mu"])) == {"mu"}
    assert set(npfile.read(info)) == {"format", "mu", "sigma", "n", "provenance"}
    with pytest.raises(InputError, match=r"s.npz: no array 'features' \(found arrays \["):
        npfile.read(info, ["features"])


def test_require_needs_a_kind(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        npfile.require(_stats_file(tmp_path))
    assert npfile.require(os.fspath(_stats_file(tmp_path, "t.npz")), "stats", "features").kind == "stats"


def test_every_npy_header_version_is_read(tmp_path: Path) -> None:
    arrays = {"v1": np.zeros((2, 3), np.float32),
              "v2": np.zeros(3, dtype=[(f"f{i}_" + "x" * 40, "f8") for i in range(1700)]),  # header > 64 KiB
              "v3": np.zeros(3, dtype=[("\u00fc\u4e2d", "<f8")])}                               # utf-8 names
    for name, arr in arrays.items():
        path = tmp_path / f"{name}.npy"
        with warnings.catch_warnings():  # numpy warns that versions 2 and 3 need a newer numpy to read
            warnings.simplefilter("ignore", UserWarning)
            np.save(path, arr)
        assert path.read_bytes()[6] == int(name[1])
        if name == "v2":  # numpy's own limit on header size applies, as np.load's does
            with pytest.raises(InputError, match=r"v2.npy: an .npy file, .npy header of \d+ bytes, more than"):
                npfile.sniff(path)
            continue
        assert npfile.sniff(path).arrays["arr_0"][:2] == (arr.shape, arr.dtype)
        np.testing.assert_array_equal(npfile.read(path)["arr_0"], arr)


def test_stats_layout_and_read_stats_of_each_tool(tmp_path: Path) -> None:
    """TTUR's np.savez, clean-fid's np.savez_compressed, an ADM reference batch and fidkit's own file are told
    apart from the zip's member table and headers; read_stats returns the stored pool or spatial arrays."""
    rng = np.random.default_rng(0)
    mu, sigma, mu_s, sigma_s = rng.standard_normal(5), np.eye(5), rng.standard_normal(3), 2 * np.eye(3)
    np.savez(tmp_path / "ttur.npz", mu=mu, sigma=sigma)
    np.savez_compressed(tmp_path / "cleanfid.npz", mu=mu, sigma=sigma)
    np.savez(tmp_path / "adm.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8), mu=mu, sigma=sigma, mu_s=mu_s,
             sigma_s=sigma_s)
    own = _stats_file(tmp_path, "own.npz", d=5)
    assert npfile.stats_layout(tmp_path / "ttur.npz") == ("plain", 5, None, None)
    assert npfile.stats_layout(tmp_path / "cleanfid.npz") == ("compressed", 5, None, None)
    assert npfile.stats_layout(tmp_path / "adm.npz") == ("adm", 5, 3, "arr_0")
    assert npfile.stats_layout(own).layout == "fidkit"
    assert "spatial statistics d = 3" in npfile.stats_layout(tmp_path / "adm.npz").describe()
    for name in ("ttur.npz", "cleanfid.npz", "adm.npz"):
        m, s = npfile.read_stats(tmp_path / name)
        np.testing.assert_array_equal(m, mu)
        np.testing.assert_array_equal(s, sigma)
    m, s = npfile.read_stats(tmp_path / "adm.npz", spatial=True)
    np.testing.assert_array_equal(m, mu_s)
    np.testing.assert_array_equal(s, sigma_s)
    with pytest.raises(InputError, match=r"cleanfid\.npz: no spatial statistics"):
        npfile.read_stats(tmp_path / "cleanfid.npz", spatial=True)
    assert npfile.sniff(tmp_path / "adm.npz").kind == "stats"  # statistics first, its images second
