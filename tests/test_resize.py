"""The numpy reference of every resize policy against the library it reproduces, called in the test.

Images are natural-looking (smooth gradients + hard edges + noise, synthesized) and MNIST digits, at
many sizes: up and down, square and not, to the networks' 299 x 299 and 28 x 28 and to odd sizes.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance
from PIL import Image

from fidkit.errors import InputError
from fidkit.extraction import preprocess
from fidkit.resize import (
    POLICIES,
    ResizePolicy,
    available_policies,
    get_policy,
    quantize,
    resize,
    resize_plan,
    taps,
)

#: 1e-4 on the 0..255 scale (tests/tolerances.toml, resize.float_paths); uint8 paths must be equal.
TOL = tolerance("resize", "float_paths")
#: (in_h, in_w, out_h, out_w): up and down, square and not, vertical-first cases of Pillow >= 13 included.
SIZES = [
    (32, 32, 299, 299), (64, 48, 299, 299), (256, 256, 299, 299), (300, 200, 299, 299),
    (517, 389, 299, 299), (28, 28, 299, 299), (299, 299, 28, 28), (64, 64, 28, 28),
    (17, 45, 40, 23), (200, 60, 37, 90), (5, 300, 11, 7), (1, 9, 4, 4),
]
MNIST = Path("/work/shared/data/mnist/t10k-images-idx3-ubyte.gz")


def natural_image(h: int, w: int, seed: int) -> np.ndarray:
    """Returns a uint8 (h, w, 3) image with smooth shading, sharp edges and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    fy, fx = rng.uniform(2, 12, 2)
    img = np.empty((h, w, 3))
    for c in range(3):
        img[..., c] = 128 + 90 * np.sin(x / fx + c) * np.cos(y / fy - c)
    img[(x > w * rng.uniform(0.2, 0.6)) & (y < h * rng.uniform(0.3, 0.8))] = rng.uniform(0, 255, 3)
    img[np.hypot(x - w / 2, y - h / 3) < min(h, w) / 4] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def mnist_digits(n: int) -> np.ndarray:
    """Returns n MNIST test digits as uint8 (n, 28, 28, 3), or a skip when the data is absent."""
    if not MNIST.exists():
        pytest.skip(f"{MNIST} not present")
    with gzip.open(MNIST) as f:
        raw = f.read(16 + n * 784)
    digits = np.frombuffer(raw[16:], np.uint8).reshape(n, 28, 28)
    return np.repeat(digits[..., None], 3, axis=-1)


def batch(h: int, w: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.stack([natural_image(h, w, seed + i) for i in range(n)]).astype(np.float32)


def pil_float(img: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Pillow on float32 (mode F), one channel at a time."""
    chans = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F")
                        .resize((size[1], size[0]), resample)) for c in range(img.shape[-1])]
    return np.stack(chans, axis=-1)


# ---------------------------------------------------------------------------------------------- registry


def test_the_issue_policies_are_registered() -> None:
    assert {"clean", "legacy-tensorflow", "legacy-pytorch", "pil-bilinear", "torchvision",
            "mnist"} <= set(available_policies())
    for name in available_policies():
        policy = get_policy(name)
        assert policy.name == name and POLICIES[name] is policy and policy.description
        assert len(policy.mean) == 3 and len(policy.std) == 3
    assert get_policy(get_policy("clean")) is get_policy("clean")


def test_unknown_policy_and_unsupported_combination_raise() -> None:
    with pytest.raises(InputError, match="unknown resize policy 'bogus'.*clean"):
        get_policy("bogus")
    with pytest.raises(InputError, match="not implemented"):
        dataclasses.replace(get_policy("legacy-tensorflow"), filter="bicubic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_policy("clean").name = "x"  # type: ignore[misc]


def test_normalisations_match_each_libraries_convention() -> None:
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(get_policy("legacy-pytorch").normalize(x), 2 * x / 255 - 1, atol=1e-6)
    np.testing.assert_allclose(get_policy("legacy-tensorflow").normalize(x), (x - 128) / 128, atol=1e-6)
    imagenet = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(get_policy("torchvision").normalize(x), imagenet, atol=1e-5)
    np.testing.assert_allclose(get_policy("mnist").normalize(x), (x / 255 - 0.1307) / 0.3081, atol=1e-5)


# ---------------------------------------------------------------------------------------------- Pillow


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_pil_bilinear_is_bit_exact_to_pillow_uint8(sizes) -> None:
    h, w, oh, ow = sizes
    x = batch(h, w)
    ours = resize(x, "pil-bilinear", (oh, ow))
    for i in range(len(x)):
        ref = np.asarray(Image.fromarray(x[i].astype(np.uint8)).resize((ow, oh), Image.BILINEAR))
        np.testing.assert_array_equal(ours[i], ref.astype(np.float32))


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_float_pillow_policies_match_pillow_mode_f(sizes) -> None:
    h, w, oh, ow = sizes
    x = batch(h, w)
    clean, mnist = resize(x, "clean", (oh, ow)), resize(x, "mnist", (oh, ow))
    for i in range(len(x)):
        np.testing.assert_allclose(clean[i], np.clip(pil_float(x[i], (oh, ow), Image.BICUBIC), 0, 255),
                                   atol=TOL, rtol=0)
        np.testing.assert_allclose(mnist[i], pil_float(x[i], (oh, ow), Image.BILINEAR), atol=TOL, rtol=0)


def test_pillow_bicubic_uint8_and_random_sizes_are_bit_exact() -> None:
    policy = dataclasses.replace(get_policy("pil-bilinear"), name="pil-bicubic-test", filter="bicubic")
    rng = np.random.default_rng(1)
    for _ in range(25):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 160, 4))
        img = natural_image(h, w, int(rng.integers(1 << 30)))
        for pol, resample in ((policy, Image.BICUBIC), (get_policy("pil-bilinear"), Image.BILINEAR)):
            ref = np.asarray(Image.fromarray(img).resize((ow, oh), resample))
            np.testing.assert_array_equal(resize(img[None].astype(np.float32), pol, (oh, ow))[0], ref)


def test_mnist_digits_to_network_sizes() -> None:
    digits = mnist_digits(4).astype(np.float32)
    for size in ((299, 299), (20, 20), (28, 28), (57, 31)):
        ours = resize(digits, "mnist", size)
        for i in range(len(digits)):
            np.testing.assert_allclose(ours[i], pil_float(digits[i], size, Image.BILINEAR), atol=TOL, rtol=0)
        exact = resize(digits, "pil-bilinear", size)
        ref = np.asarray(Image.fromarray(digits[0].astype(np.uint8)).resize(size[::-1], Image.BILINEAR))
        np.testing.assert_array_equal(exact[0], ref)


@pytest.mark.peers
@pytest.mark.parametrize("sizes", [(32, 32, 299, 299), (517, 389, 299, 299), (64, 48, 40, 23)],
                         ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_clean_matches_clean_fids_own_resizer(sizes) -> None:
    require_runtime("torch")  # clean-fid imports torch
    from cleanfid.resize import make_resizer

    h, w, oh, ow = sizes
    fn = make_resizer("PIL", False, "bicubic", (ow, oh))
    x = batch(h, w)
    ours = preprocess(x.astype(np.uint8), "clean", (oh, ow))
    for i in range(len(x)):
        np.testing.assert_allclose(ours[i], fn(x[i].astype(np.uint8)), atol=TOL, rtol=0)


# ---------------------------------------------------------------------------------------------- TF1, torch


@pytest.mark.tf
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_legacy_tensorflow_matches_tf1_resize_bilinear(sizes) -> None:
    require_runtime("tf")
    import tensorflow as tf

    h, w, oh, ow = sizes
    x = batch(h, w)
    ref = tf.compat.v1.image.resize_bilinear(tf.constant(x), (oh, ow), align_corners=False).numpy()
    np.testing.assert_allclose(resize(x, "legacy-tensorflow", (oh, ow)), ref, atol=TOL, rtol=0)


_TORCH_FIDELITY = """
import sys, numpy as np, torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as f
data = np.load(sys.argv[1])
out = {}
for key in data.files:
    oh, ow = (int(v) for v in key.split("_")[1:])
    y = f(torch.from_numpy(data[key]).permute(0, 3, 1, 2), size=(oh, ow), align_corners=False)
    out[key] = y.permute(0, 2, 3, 1).numpy()
np.savez(sys.argv[2], **out)
"""


@pytest.mark.peers
@pytest.mark.slow
def test_legacy_tensorflow_matches_torch_fidelitys_tf1_imitation(tmp_path) -> None:
    """torch-fidelity imports triton, which crashes once TensorFlow is loaded: run it in a subprocess."""
    require_runtime("torch")
    import subprocess
    import sys

    inputs = {f"{k}_{oh}_{ow}": batch(h, w) for k, (h, w, oh, ow) in enumerate(SIZES)}
    np.savez(tmp_path / "in.npz", **inputs)
    subprocess.run([sys.executable, "-c", _TORCH_FIDELITY, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, capture_output=True)
    with np.load(tmp_path / "out.npz") as out:
        for key, x in inputs.items():
            oh, ow = (int(v) for v in key.split("_")[1:])
            np.testing.assert_allclose(resize(x, "legacy-tensorflow", (oh, ow)), out[key], atol=TOL, rtol=0)


@pytest.mark.torch
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_torch_policies_match_interpolate_and_torchvision(sizes) -> None:
    require_runtime("torch")
    import torch
    import torch.nn.functional as F

    h, w, oh, ow = sizes
    x = batch(h, w)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    pytorch_fid = F.interpolate(t / 255, size=(oh, ow), mode="bilinear", align_corners=False) * 255
    np.testing.assert_allclose(resize(x, "legacy-pytorch", (oh, ow)),
                               pytorch_fid.permute(0, 2, 3, 1).numpy(), atol=TOL, rtol=0)
    # torchvision.transforms.functional.resize on tensors is this call (torchvision itself is not imported:
    # it pulls in triton, which crashes in a process that has loaded TensorFlow)
    tv = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_allclose(resize(x, "torchvision", (oh, ow)), tv.permute(0, 2, 3, 1).numpy(),
                               atol=TOL, rtol=0)


@pytest.mark.torch
def test_torch_bicubic_kernels_match_interpolate() -> None:
    """Not used by a built-in policy: torch computes cubic weights in float32 (2e-4 measured)."""
    require_runtime("torch")
    import torch
    import torch.nn.functional as F

    for antialias in (False, True):
        policy = dataclasses.replace(get_policy("torchvision"), name="t", filter="bicubic",
                                     antialias=antialias)
        for h, w, oh, ow in SIZES:
            x = batch(h, w, n=1)
            ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(oh, ow), mode="bicubic",
                                align_corners=False, antialias=antialias)
            np.testing.assert_allclose(resize(x, policy, (oh, ow)), ref.permute(0, 2, 3, 1).numpy(),
                                       atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_identity_constant_and_shape(name: str) -> None:
    x = batch(23, 31)
    same = resize(x, name, (23, 31))
    assert same.dtype == np.float32 and same is not x
    np.testing.assert_array_equal(same, x)
    const = np.full((1, 13, 7, 3), 87.0, np.float32)
    for size in ((5, 3), (40, 90)):
        out = resize(const, name, size)
        assert out.shape == (1, *size, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, 87.0, atol=TOL)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_taps_are_normalised_partitions_of_unity(name: str) -> None:
    policy = get_policy(name)
    for n_in, n_out in ((7, 299), (1024, 299), (299, 28), (3, 1)):
        idx, w = taps(policy, n_in, n_out)
        assert idx.shape == w.shape and idx.shape[0] == n_out
        assert idx.min() >= 0 and idx.max() < n_in
        scale = 1 << 22 if policy.integer_path else 1.0
        np.testing.assert_allclose(w.sum(axis=1) / scale, 1.0, atol=1e-5)


def test_clean_clips_bicubic_overshoot_and_legacy_pytorch_does_not_clip() -> None:
    edge = np.zeros((1, 8, 8, 3), np.float32)
    edge[:, :, 4:] = 255
    assert resize(edge, "clean", (29, 29)).max() == 255.0
    assert resize(edge, "clean", (29, 29)).min() == 0.0
    loose = dataclasses.replace(get_policy("clean"), name="clean-unclipped", clip=False)
    assert resize(edge, loose, (29, 29)).max() > 255.0


def test_quantize_rounds_to_uint8_levels() -> None:
    x = np.array([-3.0, 0.4, 0.5, 1.5, 2.5, 254.6, 300.0], np.float32)
    np.testing.assert_array_equal(quantize(x), [0, 0, 0, 2, 2, 255, 255])


#: (in_h, in_w, out_h, out_w) -> the pass Pillow runs first on (<= 12.1, 12.2-12.3, >= 13), found by
#: running each release: tall images around h = 100 w, both sides of Pillow 13's boundary
#: ``in_h - out_h > 2 * (in_w - out_w)``, the width growing while the height shrinks, upscales.
PASS_ORDER = {
    (501, 5, 500, 4): ("w", "h", "w"),  # over 100x taller than wide, height barely shrinks
    (501, 5, 100, 4): ("w", "h", "h"),
    (500, 5, 100, 4): ("w", "w", "h"),  # exactly 100x: not "tall" for 12.2-12.3
    (300, 2, 150, 40): ("w", "h", "h"),
    (60, 40, 41, 30): ("w", "w", "w"),
    (60, 40, 40, 30): ("w", "w", "w"),  # 20 = 2 x 10: on the boundary
    (60, 40, 39, 30): ("w", "w", "h"),
    (300, 100, 50, 90): ("w", "w", "h"),
    (40, 60, 20, 80): ("w", "w", "h"),
    (64, 64, 28, 28): ("w", "w", "w"),
    (17, 45, 40, 23): ("w", "w", "w"),
    (28, 28, 60, 45): ("w", "w", "w"),
}


def _pillow_era() -> int:
    major, minor = (int(p) for p in Image.__version__.split(".")[:2])
    return 2 if major >= 13 else 1 if (major, minor) >= (12, 2) else 0


@pytest.mark.parametrize("shape", list(PASS_ORDER), ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_pillow_pass_order_follows_the_installed_pillow(shape) -> None:
    """The plan's order is the installed Pillow's: fidkit is bit-exact to ``Image.resize`` on uint8 L
    and RGB (bilinear, bicubic), Pillow's own two single-axis resizes in the plan's order equal its
    full resize on mode F, and in the other order they differ (so each shape tells the orders apart)."""
    in_h, in_w, out_h, out_w = shape
    plan = [axis for axis, _, _ in resize_plan(get_policy("pil-bilinear"), (in_h, in_w), (out_h, out_w))]
    assert plan[0] == PASS_ORDER[shape][_pillow_era()], f"Pillow {Image.__version__}"
    assert [a for a, _, _ in resize_plan(get_policy("legacy-pytorch"), (in_h, in_w), (out_h, out_w))] == ["w", "h"]

    bicubic = dataclasses.replace(get_policy("pil-bilinear"), name="pil-bicubic-test", filter="bicubic")
    rng = np.random.default_rng(sum(shape))
    rgb = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (in_h, in_w), dtype=np.uint8)
    for policy, resample in ((get_policy("pil-bilinear"), Image.BILINEAR), (bicubic, Image.BICUBIC)):
        for img in (rgb, gray):
            ref = np.asarray(Image.fromarray(img).resize((out_w, out_h), resample))
            ours = resize(np.atleast_3d(img)[None].astype(np.float32), policy, (out_h, out_w))[0]
            np.testing.assert_array_equal(ours.reshape(ref.shape), ref)

    steps = {"w": (out_w, in_h), "h": (in_w, out_h)}
    other = "h" if plan[0] == "w" else "w"
    for resample in (Image.BILINEAR, Image.BICUBIC):
        for img in (rgb, rng.uniform(0, 255, (in_h, in_w)).astype(np.float32)):
            im = Image.fromarray(img)
            full = np.asarray(im.resize((out_w, out_h), resample))
            planned = np.asarray(im.resize(steps[plan[0]], resample).resize((out_w, out_h), resample))
            swapped = np.asarray(im.resize(steps[other], resample).resize((out_w, out_h), resample))
            np.testing.assert_array_equal(full, planned)
            assert not np.array_equal(full, swapped), "this shape does not tell the pass orders apart"


def test_bad_arguments_raise_input_errors() -> None:
    with pytest.raises(InputError, match="NHWC"):
        resize(np.zeros((4, 4, 3), np.float32), "clean", (2, 2))
    with pytest.raises(InputError, match="size"):
        resize(np.zeros((1, 4, 4, 3), np.float32), "clean", (0, 2))
    with pytest.raises(InputError, match="size"):
        resize(np.zeros((1, 4, 4, 3), np.float32), "clean", 5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="dtype"):
        resize(np.zeros((1, 4, 4, 3), complex), "clean", (2, 2))
    with pytest.raises(InputError, match="std"):
        ResizePolicy(name="x", library="pil", filter="bilinear", antialias=True, quantize_input=False,
                     quantize_output=False, mean=(0.0,) * 3, std=(0.0, 1.0, 1.0), description="")


# ---------------------------------------------------------------------------------------------- preprocess


def test_preprocess_quantizes_float_input_only_when_the_policy_says() -> None:
    rng = np.random.default_rng(3)
    x01 = rng.uniform(0, 1, (2, 3, 20, 20)).astype(np.float32)  # NCHW, [0, 1]
    nhwc255 = x01.transpose(0, 2, 3, 1) * 255
    clean = preprocess(x01, "clean", (20, 20))
    np.testing.assert_array_equal(clean, np.rint(nhwc255))
    raw = preprocess(x01, "legacy-pytorch", (20, 20))
    np.testing.assert_allclose(raw, nhwc255, atol=1e-4)
    tanh = preprocess(x01 * 2 - 1, "legacy-pytorch", (31, 17), value_range=(-1, 1))
    np.testing.assert_allclose(tanh, resize(nhwc255, "legacy-pytorch", (31, 17)), atol=1e-3)


def test_preprocess_of_uint8_equals_resize() -> None:
    x = batch(40, 30)
    for name in POLICIES:
        np.testing.assert_array_equal(preprocess(x.astype(np.uint8), name, (299, 299)),
                                      resize(x, name, (299, 299)))


@pytest.mark.parametrize(("n_in", "n_out", "channels"), [(1024, 299, 3), (32, 299, 3), (37, 5, 1), (299, 299, 2)])
def test_interleaved_bands_are_the_width_pass_on_channels_last_rows(n_in: int, n_out: int, channels: int) -> None:
    from fidkit.resize import interleaved_bands, resize_matrix

    policy = get_policy("clean")
    x = np.random.default_rng(n_in).normal(size=(2, 3, n_in, channels))
    rows = x.reshape(6, n_in * channels)
    got = np.concatenate([rows[:, c0:c1] @ m for c0, c1, m in interleaved_bands(policy, n_in, n_out, channels)],
                         axis=1).reshape(2, 3, -1, channels)
    expected = np.einsum("nhwc,ow->nhoc", x, resize_matrix(policy, n_in, n_out))
    np.testing.assert_allclose(got[:, :, :n_out], expected, rtol=0, atol=1e-12)
    assert got.shape[2] == n_out


def test_shifted_passes_places_the_shift_where_it_is_needed_or_cheap() -> None:
    from fidkit.resize import MAX_UNSHIFTED_TAPS, shifted_passes, taps

    clean = get_policy("clean")
    # upscaling: no shift (adding 128 back to the largest array would cost a pass over it)
    assert shifted_passes(clean, [("h", 32, 299), ("w", 32, 299)], (32, 32)) == [False, False]
    # downscaling: leave the large input alone, run the last pass shifted (its output is the smallest)
    assert shifted_passes(clean, [("w", 1024, 299), ("h", 1024, 299)], (1024, 1024)) == [False, True]
    # a pass summing many taps is always shifted
    assert taps(clean, 299, 28)[0].shape[1] > MAX_UNSHIFTED_TAPS
    assert shifted_passes(clean, [("w", 299, 28), ("h", 299, 28)], (299, 299)) == [True, True]
    assert shifted_passes(clean, [("w", 299, 28)], (299, 299)) == [True]


@pytest.mark.torch
@pytest.mark.parametrize("sizes", [s for s in SIZES if s[2] == s[3]], ids=lambda s: "{}x{}->{}x{}".format(*s))
def test_torchmetrics_policy_matches_torchmetrics_own_forward(sizes) -> None:
    """torchmetrics' NoTrainInceptionV3 (antialias=True, its default) runs its own resize and (x - 128) / 128;
    its first conv is replaced by a probe that captures the network input (no weights needed)."""
    require_runtime("torch")
    import torch
    from torchmetrics.image.fid import NoTrainInceptionV3

    class Captured(Exception):
        pass

    class Probe(torch.nn.Module):
        def forward(self, x):
            raise Captured(x)

    h, w, oh, _ = sizes
    net = NoTrainInceptionV3.__new__(NoTrainInceptionV3)
    torch.nn.Module.__init__(net)
    net.use_antialias, net.INPUT_IMAGE_SIZE, net.features_list = True, oh, ["2048"]
    net.Conv2d_1a_3x3 = Probe()
    x = batch(h, w).astype(np.uint8)
    with pytest.raises(Captured) as got:
        net._torch_fidelity_forward(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    theirs = got.value.args[0].permute(0, 2, 3, 1).numpy()
    policy = get_policy("torchmetrics")
    np.testing.assert_allclose(policy.normalize(preprocess(x, policy, (oh, oh))), theirs, atol=TOL / 128, rtol=0)
