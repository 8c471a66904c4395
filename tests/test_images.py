"""Image sources: folders, zips, array files, arrays, tensors and generators; colour, range and size rules."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.backends.numpy import preprocess as numpy_preprocess
from fidkit.errors import FidkitWarning, InputError
from fidkit.extraction import InputConvention
from fidkit.image_rules import resolve_layout
from fidkit.images import open_source, parse_value_range
from fidkit.resize import get_policy, resize

RNG = np.random.default_rng(0)


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def collect(source, batch_size: int = 4, workers=None):
    """Returns the source's raw batches (decoded and grouped, not converted) and the names in order."""
    batches = list(source.iter_batches(batch_size, workers))
    names = [n for _, ns in batches for n in ns]
    return batches, names


def seen(source, batch_size: int = 4, policy: str = "legacy-pytorch", size=None, workers=None):
    """Returns (batches, names): each batch as the numpy reference preprocess of ``policy`` hands it to a
    network taking ``size`` (float32 NHWC RGB on 0..255, before normalisation), run as the pipeline runs
    it; ``size`` None keeps each (uniform) batch's own size, so nothing is resized."""
    batches, names = collect(source, batch_size, workers)
    out = []
    for batch, batch_names in batches:
        hw = size
        if hw is None:
            shape = np.shape(batch)
            hw = resolve_layout(shape, source.layout, "batch").shape(shape)[1:3]
        run = numpy_preprocess(get_policy(policy), InputConvention(hw), "cpu")
        x = run(batch, layout=source.layout, value_range=source.value_range, name=source.description,
                checked=True)
        out.append((np.asarray(x, np.float32), batch_names))
    return out, names


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(rgb(16, 12, 0)).save(root / "z.png")
    Image.fromarray(rgb(16, 12, 1)).save(root / "a.PNG")
    Image.fromarray(rgb(16, 12, 2)).save(root / "b" / "deep" / "c.bmp")
    Image.fromarray(rgb(16, 12, 3)).save(root / "b" / "d.tiff")
    Image.fromarray(rgb(16, 12, 4)).save(root / ".hidden" / "e.png")
    Image.fromarray(rgb(16, 12, 5)).save(root / "._f.png")
    (root / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------------------------------------- files


def test_folder_is_recursive_sorted_and_skips_hidden_files(folder: Path) -> None:
    src = open_source(folder)
    assert src.names == ["a.PNG", "b/d.tiff", "b/deep/c.bmp", "z.png"]
    assert len(src) == 4
    batches, names = collect(src, batch_size=3)
    assert names == src.names and [len(b) for b, _ in batches] == [3, 1]
    assert src.layout == "NHWC" and src.value_range == (0.0, 255.0)
    for (b, _), seeds in zip(batches, ([1, 3, 2], [0]), strict=True):
        assert b.dtype == np.uint8 and b.shape[1:] == (16, 12, 3)  # decoded as stored; the preprocess resizes
        np.testing.assert_array_equal(b, np.stack([rgb(16, 12, s) for s in seeds]))


def test_mixed_sizes_work_with_any_batch_size_and_equal_the_per_image_reference(tmp_path: Path) -> None:
    sizes = [(20, 30), (31, 17), (20, 30), (64, 64), (9, 40)]
    imgs = [rgb(h, w, i) for i, (h, w) in enumerate(sizes)]
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"{i:02d}.png")
    for policy in ("clean", "legacy-tensorflow", "pil-bilinear"):
        expected = np.concatenate([resize(img[None].astype(np.float32), policy, (29, 33)) for img in imgs])
        for batch_size in (1, 2, 3, 7):
            raw, _ = collect(open_source(tmp_path), batch_size, workers=3)
            assert all(isinstance(b, list) for b, _ in raw)  # mixed sizes: a list of HWC images per batch
            assert [img.shape for b, _ in raw for img in b] == [img.shape for img in imgs]
            batches, names = seen(open_source(tmp_path), batch_size, policy, (29, 33), workers=3)
            assert names == [f"{i:02d}.png" for i in range(5)]
            np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), expected)
        np.testing.assert_array_equal(fidkit.preprocess(tmp_path, policy, (29, 33)), expected)


def test_zip_equals_folder(folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder).as_posix())
        z.writestr("__MACOSX/._a.png", b"resource fork")
    src = open_source(archive)
    assert src.names == open_source(folder).names
    zb, _ = collect(src)
    fb, _ = collect(open_source(folder))
    np.testing.assert_array_equal(zb[0][0], fb[0][0])


def test_parallel_decoding_is_deterministic(tmp_path: Path) -> None:
    for i in range(9):
        Image.fromarray(rgb(10 + i, 12, i)).save(tmp_path / f"{i}.jpg", quality=90)
    one, names1 = seen(open_source(tmp_path), 4, "clean", (15, 15), workers=1)
    many, names4 = seen(open_source(tmp_path), 4, "clean", (15, 15), workers=4)
    assert names1 == names4
    np.testing.assert_array_equal(np.concatenate([b for b, _ in one]), np.concatenate([b for b, _ in many]))


def test_corrupt_and_truncated_files_name_the_file_or_are_skipped(tmp_path: Path) -> None:
    Image.fromarray(rgb(8, 8, 0)).save(tmp_path / "good.png")
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"garbage\.png: cannot decode.*skip-bad"):
        collect(open_source(tmp_path))
    src = open_source(tmp_path, skip_bad=True)
    batches, names = collect(src)
    assert names == ["good.png"]
    assert sorted(src.skipped) == ["garbage.png", "truncated.png"]
    (tmp_path / "good.png").unlink()
    with pytest.raises(InputError, match="every file was unreadable"):
        collect(open_source(tmp_path, skip_bad=True))


def test_empty_and_missing_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no images found"):
        open_source(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "nope")
    with pytest.raises(InputError, match="no images"):
        open_source(np.zeros((0, 8, 8, 3), np.uint8))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not an image folder"):
        open_source(tmp_path / "x.txt")
    with pytest.raises(InputError, match="cannot read images from a dict"):
        open_source({})


# ---------------------------------------------------------------------------------------------- colour


def _decoded(tmp_path: Path, image: Image.Image, name: str, **save) -> np.ndarray:
    (tmp_path / "one").mkdir(exist_ok=True)
    for old in (tmp_path / "one").iterdir():
        old.unlink()
    image.save(tmp_path / "one" / name, **save)
    (batch, _), = seen(open_source(tmp_path / "one"), 1, "legacy-pytorch")[0]
    return batch[0]


def test_colour_rules(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
    np.testing.assert_array_equal(_decoded(tmp_path, Image.fromarray(gray), "g.png"),
                                  np.repeat(gray[..., None], 3, -1))
    rgba = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0  # a fully transparent pixel keeps its stored colour
    np.testing.assert_array_equal(_decoded(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"), rgba[..., :3])
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.ravel().tolist())
    np.testing.assert_array_equal(_decoded(tmp_path, p, "p.png"), palette[idx])
    bw = RNG.integers(0, 2, (6, 7)).astype(bool)
    np.testing.assert_array_equal(_decoded(tmp_path, Image.fromarray(bw), "bw.png"),
                                  np.repeat(bw[..., None] * 255.0, 3, -1))


def test_sixteen_bit_grayscale_is_scaled_exactly(tmp_path: Path) -> None:
    deep = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    out = _decoded(tmp_path, Image.fromarray(deep), "d.png")
    expected = deep.astype(np.float64) * 255 / 65535
    np.testing.assert_allclose(out, np.repeat(expected[..., None], 3, -1), atol=1e-4)
    (batch, _), = seen(open_source(tmp_path / "one"), 1, "clean")[0]  # clean quantizes float input
    np.testing.assert_array_equal(batch[0, ..., 0], np.rint(expected))
    np.testing.assert_array_equal(fidkit.preprocess(tmp_path / "one", "clean", (5, 6))[0, ..., 0],
                                  np.rint(expected))


#: Adam7 passes as (first column, first row, column step, row step).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
#: Channels of 16-bit samples -> PNG colour type (gray, gray + alpha, RGB, RGBA).
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered_png(samples: np.ndarray, interlace: bool) -> bytes:
    """Returns a PNG of uint16 (h, w, channels) samples whose scanlines take filter types 0-4 in turn,
    split over three IDAT chunks (pypng's writer only writes filter type 0)."""
    h, w, c = samples.shape
    bpp = 2 * c
    raw = bytearray()
    k = 0
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1).astype(np.int64)
        prev = np.zeros_like(rows[0])
        for row in rows:
            a = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
            c_ = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
            pa, pb, pc = np.abs(prev - c_), np.abs(a - c_), np.abs(a + prev - 2 * c_)
            paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prev, c_))
            ftype = k % 5
            pred = (0, a, prev, (a + prev) // 2, paeth)[ftype]
            raw += bytes([ftype]) + ((row - pred) % 256).astype(np.uint8).tobytes()
            prev, k = row, k + 1
    z = zlib.compress(bytes(raw))
    cut = [0, len(z) // 3, 2 * len(z) // 3, len(z)]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, COLOUR_TYPES[c], 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + b"".join(_png_chunk(b"IDAT", z[i:j]) for i, j in zip(cut, cut[1:], strict=False))
            + _png_chunk(b"IEND", b""))


def _pypng(samples: np.ndarray, interlace: bool) -> bytes:
    """Returns ``samples`` (uint8 or uint16, (h, w, channels)) as a PNG written by pypng."""
    import png

    h, w, c = samples.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=8 * samples.itemsize,
               interlace=interlace).write(buf, samples.reshape(h, -1).tolist())
    return buf.getvalue()


def _deep_samples(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """Returns uint16 (h, w, c): noise, gradients, both extremes and low bytes unlike the high ones."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 65536, (h, w, c), dtype=np.uint16)
    x[::3] = (np.arange(w, dtype=np.uint32)[None, :, None] * 65535 // max(w - 1, 1)).astype(np.uint16)
    x[1::4, ::2] = 65535
    x[2::5, 1::3] = 0
    x[..., 0] ^= 0x00FF * (np.arange(w) % 2).astype(np.uint16)
    return x


def _read_png_everywhere(tmp_path: Path, data: bytes) -> list[np.ndarray]:
    """Returns the image as fidkit reads it from a folder (a path for Pillow) and a zip (bytes)."""
    root = tmp_path / "png"
    root.mkdir(exist_ok=True)
    (root / "x.png").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "png.zip", "w") as z:
        z.writestr("x.png", data)
    out = []
    for src in (root, tmp_path / "png.zip"):
        (batch, _), = open_source(src).iter_batches(1)  # decoded: uint8, or float32 on 0..255
        out.append(batch[0])
    return out


def _scaled(samples: np.ndarray) -> np.ndarray:
    colour = samples[..., :3] if samples.shape[-1] >= 3 else np.repeat(samples[..., :1], 3, -1)
    return (colour.astype(np.float64) * 255 / 65535).astype(np.float32)


@pytest.mark.parametrize("interlace", [False, True], ids=["progressive", "adam7"])
@pytest.mark.parametrize("channels", [3, 4, 2, 1], ids=["rgb48", "rgba64", "gray-alpha32", "gray16"])
def test_sixteen_bit_pngs_written_by_pypng_are_read_exactly(tmp_path: Path, channels: int,
                                                            interlace: bool) -> None:
    for h, w in ((1, 1), (3, 2), (11, 17)):
        samples = _deep_samples(h, w, channels, h * w + channels)
        for got in _read_png_everywhere(tmp_path, _pypng(samples, interlace)):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, _scaled(samples))


@pytest.mark.parametrize("interlace", [False, True], ids=["progressive", "adam7"])
@pytest.mark.parametrize("channels", [3, 4, 2], ids=["rgb48", "rgba64", "gray-alpha32"])
def test_sixteen_bit_pngs_with_every_filter_type_are_read_exactly(tmp_path: Path, channels: int,
                                                                  interlace: bool) -> None:
    import png

    for h, w in ((2, 3), (9, 7), (23, 19)):
        samples = _deep_samples(h, w, channels, 7 * h + w)
        data = _filtered_png(samples, interlace)
        width, height, rows, _ = png.Reader(bytes=data).asDirect()  # the writer, checked by pypng
        np.testing.assert_array_equal(np.array(list(rows)).reshape(height, width, channels), samples)
        for got in _read_png_everywhere(tmp_path, data):
            np.testing.assert_array_equal(got, _scaled(samples))


def test_eight_bit_rgb_png_by_pypng_reads_as_uint8_levels(tmp_path: Path) -> None:
    samples = RNG.integers(0, 256, (5, 9, 3), dtype=np.uint8)
    for interlace in (False, True):
        for got in _read_png_everywhere(tmp_path, _pypng(samples, interlace)):
            np.testing.assert_array_equal(got, samples.astype(np.float32))


def test_sixteen_bit_png_that_pillow_lays_out_unexpectedly_is_refused(tmp_path: Path, monkeypatch) -> None:
    import fidkit.images

    monkeypatch.setattr(fidkit.images, "_PNG16_RAWMODES", {})
    with pytest.raises(InputError, match="x.png: a PNG with 16 bits per channel.*convert the file"):
        _read_png_everywhere(tmp_path, _pypng(_deep_samples(4, 4, 3, 0), False))


def test_cmyk_follows_the_stated_conversion(tmp_path: Path) -> None:
    cmyk = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    out = _decoded(tmp_path, Image.fromarray(cmyk, "CMYK"), "c.tiff")
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    np.testing.assert_allclose(out, (255 - c) * (255 - k) / 255, atol=1.0)
    jpeg = _decoded(tmp_path, Image.fromarray(cmyk, "CMYK"), "c.jpg", quality=95)
    assert jpeg.shape == (6, 7, 3)


# ---------------------------------------------------------------------------------------------- arrays


def test_array_files_and_layouts(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (5, 10, 9, 3), dtype=np.uint8)
    np.save(tmp_path / "nhwc.npy", x)
    np.savez(tmp_path / "nchw.npz", images=x.transpose(0, 3, 1, 2))
    for path, layout, stored in (("nhwc.npy", "NHWC", x), ("nchw.npz", "NCHW", x.transpose(0, 3, 1, 2))):
        src = open_source(tmp_path / path)
        assert src.layout == layout
        raw, _ = collect(src, 2)  # in the file's own layout and dtype
        np.testing.assert_array_equal(np.concatenate([b for b, _ in raw]), stored)
        batches, names = seen(src, 2)
        assert names == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), x.astype(np.float32))
    square = RNG.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)  # C could be axis 1 or 3
    with pytest.raises(InputError, match="--layout NHWC or --layout NCHW"):
        open_source(square)
    (b, _), = seen(open_source(square, layout="NCHW"), 2, "clean")[0]
    assert b.shape == (2, 4, 3, 3)
    gray = RNG.integers(0, 256, (3, 8, 8), dtype=np.uint8)  # 3 grayscale images or one CHW image
    with pytest.raises(InputError, match="--layout CHW.*--layout NHW"):
        open_source(gray)
    (b, _), = seen(open_source(gray, layout="NHW"), 3, "clean")[0]
    np.testing.assert_array_equal(b, np.repeat(gray[..., None], 3, -1))
    (b, _), = seen(open_source(gray, layout="CHW"), 3, "clean")[0]
    np.testing.assert_array_equal(b, gray.transpose(1, 2, 0)[None])
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(InputError, match=r"two\.npz: .*found arrays \['a', 'b'\], expected one array"):
        open_source(tmp_path / "two.npz")
    rgba = RNG.integers(0, 256, (2, 5, 5, 4), dtype=np.uint8)
    (b, _), = seen(open_source(rgba), 2, "clean")[0]
    np.testing.assert_array_equal(b, rgba[..., :3])


def test_framework_tensors(runtime: str) -> None:
    x = RNG.uniform(-1, 1, (3, 3, 11, 13)).astype(np.float32)  # NCHW, tanh range
    expected, _ = seen(open_source(x), 8, "legacy-pytorch")
    if runtime == "torch":
        import torch

        tensor = torch.from_numpy(x)
    elif runtime == "tf":
        import tensorflow as tf

        tensor = tf.constant(x)
    elif runtime == "jax":
        import jax.numpy as jnp

        tensor = jnp.asarray(x)
    else:
        tensor = x
    got, _ = seen(open_source(tensor), 8, "legacy-pytorch")
    np.testing.assert_array_equal(got[0][0], expected[0][0])
    np.testing.assert_allclose(got[0][0], x.transpose(0, 2, 3, 1) * 127.5 + 127.5, atol=1e-4)


# ---------------------------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(("lo", "hi", "expected"), [(-1, 1, (-1.0, 1.0)), (0, 1, (0.0, 1.0)),
                                                    (0, 255, (0.0, 255.0))])
def test_float_ranges_are_inferred_when_unambiguous(lo: float, hi: float, expected) -> None:
    x = RNG.uniform(lo, hi, (4, 6, 6, 3)).astype(np.float32)
    src = open_source(x)
    assert src.value_range == expected
    (b, _), = seen(src, 4, "legacy-pytorch")[0]
    np.testing.assert_allclose(b, (x - lo) * 255 / (hi - lo), atol=1e-3)


def test_contradicting_or_unknown_ranges_say_what_was_found() -> None:
    x = np.linspace(-0.98, 0.99, 4 * 8 * 8 * 3, dtype=np.float32).reshape(4, 8, 8, 3)
    with pytest.raises(InputError, match=r"min -0\.98, max 0\.99: looks like \[-1, 1\] but \[0, 1\] was "
                                         r"declared; pass --range -1,1 \(value_range=\[-1, 1\] in Python\)"):
        open_source(x, value_range=(0, 1))
    with pytest.raises(InputError, match=r"looks like \[0, 255\] but \[-1, 1\] was declared"):
        open_source(x * 100 + 100, value_range="-1,1")
    with pytest.raises(InputError, match="fits none"):
        open_source(x * 1000)
    with pytest.raises(InputError, match="NaN"):
        open_source(np.full((1, 4, 4, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="int64 values"):
        open_source(np.zeros((1, 4, 4, 3), np.int64))
    with pytest.raises(InputError, match="value_range must be one of"):
        parse_value_range((0, 2))
    assert parse_value_range("[-1, 1]") == (-1.0, 1.0) and parse_value_range((0, 255)) == (0.0, 255.0)


def test_quantize_input_is_the_policys_choice() -> None:
    x = RNG.uniform(0, 1, (2, 7, 7, 3)).astype(np.float32)
    assert get_policy("clean").quantize_input and not get_policy("legacy-pytorch").quantize_input
    q = fidkit.preprocess(x, "clean", (7, 7))
    r = fidkit.preprocess(x, "legacy-pytorch", (7, 7))
    np.testing.assert_array_equal(seen(open_source(x), 2, "clean")[0][0][0], q)
    np.testing.assert_array_equal(q, np.rint(x * 255))
    np.testing.assert_allclose(r, x * 255, atol=1e-4)
    assert not np.array_equal(r, np.rint(r))


# ---------------------------------------------------------------------------------------------- generators


def test_generator_with_seed_and_num() -> None:
    calls = []

    def sample(n: int, seed: int) -> np.ndarray:
        calls.append((n, seed))
        return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)

    src = open_source(sample, num=7, seed=123)
    assert len(src) == 7 and src.names == list(range(7))
    a, names = seen(src, 3, "legacy-pytorch")
    b, _ = seen(open_source(sample, num=7, seed=123), 3, "legacy-pytorch")
    assert names == list(range(7)) and [n for n, _ in calls] == [3, 3, 1, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in a]), np.concatenate([x for x, _ in b]))
    assert src.value_range == (-1.0, 1.0)
    c, _ = seen(open_source(sample, num=7, seed=124), 3, "legacy-pytorch")
    assert not np.array_equal(a[0][0], c[0][0])


def test_generator_errors() -> None:
    with pytest.raises(InputError, match="num="):
        open_source(lambda n: np.zeros((n, 4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="add a seed parameter"):
        collect(open_source(lambda n: np.zeros((n, 4, 4, 3), np.uint8), num=2, seed=0))
    with pytest.raises(InputError, match="returned 1 images"):
        collect(open_source(lambda n: np.zeros((1, 4, 4, 3), np.uint8), num=3), 3)
    state = {"k": 0}

    def drifting(n: int) -> np.ndarray:
        state["k"] += 1
        return np.full((n, 4, 4, 3), 0.5 if state["k"] == 1 else -0.5, np.float32)

    with pytest.raises(InputError, match=r"batch 1.*looks like \[-1, 1\] but \[0, 1\]"):
        collect(open_source(drifting, num=4), 2)


def test_images_declared_minus_one_one_that_never_go_below_the_midpoint_warn() -> None:
    """Issue 12.5, the [-1, 1] corner: images on [0, 1] declared as [-1, 1] use only the upper half of the
    range; a bright batch can do so too, so it is a loud warning rather than an error."""
    x = np.random.default_rng(0).uniform(0.0, 1.0, (4, 8, 8, 3)).astype(np.float32)
    with pytest.warns(FidkitWarning, match=r"never below the midpoint of the declared \[-1, 1\].*--range 0,1"):
        open_source(x, value_range=(-1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_source(x * 2 - 1, value_range=(-1, 1))  # data using the whole range: no warning
