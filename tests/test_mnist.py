"""The shipped MNIST classifier: IDX reader, training reproducibility, weights file, accuracy, runtimes."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.archs.mnist import LUMA_RGB, mnist_v1
from fidkit.errors import InputError
from fidkit.mnist_data import SHIPPED_DIR, load_mnist, read_idx, to_rgb, verify_sha256
from fidkit.registry import get_spec

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "fidkit" / "data" / "fidkit-mnist-v1.npz"
SIDECAR = WEIGHTS.with_suffix(".json")
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _train_module():
    """Returns scripts/train_mnist.py imported as a module (it needs torch)."""
    require_runtime("torch")
    spec = importlib.util.spec_from_file_location("fidkit_train_mnist", REPO / "scripts" / "train_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


# --- the IDX reader --------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    raw = _idx_bytes(arr)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize("mutate, words", [
    (lambda b: b"\x01" + b[1:], "not an IDX file"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "type code"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:6], "truncated"),
    (lambda b: b"", "not an IDX file"),
])
def test_read_idx_bad_header_names_the_file(tmp_path: Path, mutate, words: str) -> None:
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(mutate(_idx_bytes(np.zeros((2, 3, 3), np.uint8))))
    with pytest.raises(InputError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 2), np.uint8)))[:-6])
    with pytest.raises(InputError, match="x.gz"):
        read_idx(path)


def test_shipped_test_split() -> None:
    images, labels = load_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    # The shipped copy is the shared one, byte for byte (SHA256SUMS is checked by load_mnist).
    assert verify_sha256(SHIPPED_DIR / "t10k-images-idx3-ubyte.gz")


@pytest.mark.peers
def test_read_idx_matches_torchvision(tmp_path: Path) -> None:
    """torchvision's own MNIST reader (uncompressed files only) reads the same images and labels."""
    require_runtime("torch")
    from torchvision.datasets import mnist as tv

    for name, reader in (("t10k-images-idx3-ubyte", tv.read_image_file),
                         ("t10k-labels-idx1-ubyte", tv.read_label_file)):
        raw = tmp_path / name
        raw.write_bytes(gzip.decompress((SHIPPED_DIR / f"{name}.gz").read_bytes()))
        np.testing.assert_array_equal(read_idx(raw), reader(str(raw)).numpy())
        np.testing.assert_array_equal(read_idx(SHIPPED_DIR / f"{name}.gz"), reader(str(raw)).numpy())


def test_uncompressed_folder_and_sha_mismatch(tmp_path: Path) -> None:
    images, labels = load_mnist("test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images[:7]))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[:7]))
    got, lab = load_mnist("test", tmp_path)
    np.testing.assert_array_equal(got, images[:7])
    np.testing.assert_array_equal(lab, labels[:7])
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  t10k-images-idx3-ubyte\n")
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte: SHA-256"):
        load_mnist("test", tmp_path)
    load_mnist("test", tmp_path, verify=False)


def test_missing_files_and_train_not_shipped(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="train-images-idx3-ubyte"):
        load_mnist("train", tmp_path)
    with pytest.raises(InputError, match="not shipped"):
        load_mnist("train")


def test_train_split_when_available() -> None:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} not present")
    images, labels = load_mnist("train", SHARED_MNIST)
    assert images.shape == (60000, 28, 28)
    # README facts of the shared copy: pixel mean 0.1307, std 0.3081 on [0, 1].
    assert abs(images.mean() / 255 - 0.1307) < 5e-5
    assert abs(images.std() / 255 - 0.3081) < 5e-5
    np.testing.assert_array_equal(np.bincount(labels)[:2], [5923, 6742])


# --- the graph and the weights file -------------------------------------------------------------

def test_graph_matches_spec_and_file() -> None:
    g = mnist_v1()
    spec = get_spec("mnist")
    assert spec.arch == "fidkit.archs.mnist:mnist_v1"
    assert set(g.outputs) == {"features", "logits"}
    shapes = g.param_shapes()
    assert shapes[f"{g.outputs['features']}.weight"][0] == spec.feature_dim
    assert shapes[f"{g.outputs['logits']}.weight"][0] == spec.logits_dim
    with np.load(WEIGHTS, allow_pickle=False) as z:
        found = {k: tuple(z[k].shape) for k in z.files}
        assert all(z[k].dtype == np.float32 for k in z.files)
        gray = z["gray.weight"].reshape(3)
    assert found == shapes
    np.testing.assert_array_equal(gray, np.float32(LUMA_RGB))


def test_sidecar_describes_the_file() -> None:
    meta = json.loads(SIDECAR.read_text())
    data = WEIGHTS.read_bytes()
    assert meta["size_bytes"] == len(data) < 2_100_000
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["test_accuracy"] >= 0.99
    assert meta["training_command"].startswith("python scripts/train_mnist.py")


def test_luma_passes_grayscale_through() -> None:
    w = np.float32(LUMA_RGB)
    assert w.sum(dtype=np.float32) == 1 and abs(np.float64(LUMA_RGB).sum() - 1) <= 2.3e-16
    x = (np.arange(256, dtype=np.float32) - np.float32(0.1307 * 255)) / np.float32(0.3081 * 255)
    y = w[0] * x + w[1] * x + w[2] * x
    np.testing.assert_allclose(y, x, rtol=2 * np.finfo(np.float32).eps, atol=1e-7)


# --- training --------------------------------------------------------------------------------------

@pytest.mark.torch
def test_training_is_reproducible() -> None:
    """Same seed, same weights digest (in-process; the script itself is checked across processes below)."""
    tm = _train_module()
    images, labels = load_mnist("test")
    digests = []
    for _ in range(2):
        model = tm.train(images[:1024], labels[:1024], seed=3, epochs=1, batch_size=32, max_steps=6,
                         deterministic=False)
        digests.append(hashlib.sha256(tm.npz_bytes(tm.canonical_arrays(model))).hexdigest())
    assert digests[0] == digests[1]
    other = tm.train(images[:1024], labels[:1024], seed=4, epochs=1, batch_size=32, max_steps=6,
                     deterministic=False)
    assert hashlib.sha256(tm.npz_bytes(tm.canonical_arrays(other))).hexdigest() != digests[0]


@pytest.mark.torch
@pytest.mark.slow
def test_training_script_is_reproducible_across_processes(tmp_path: Path) -> None:
    """Two separate runs of the script write byte-identical weights files and matching sidecars."""
    require_runtime("torch")
    images, labels = load_mnist("test")
    data = tmp_path / "data"
    data.mkdir()
    for split, sl in (("train", slice(0, 1024)), ("t10k", slice(1024, 1536))):
        (data / f"{split}-images-idx3-ubyte").write_bytes(_idx_bytes(images[sl]))
        (data / f"{split}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[sl]))
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run / "w.npz"
        res = subprocess.run([sys.executable, str(REPO / "scripts" / "train_mnist.py"), "--data", str(data),
                              "--out", str(out), "--max-steps", "6", "--batch-size", "32"],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    meta = json.loads(outs[0].with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(outs[0].read_bytes()).hexdigest()
    assert meta["size_bytes"] == outs[0].stat().st_size and meta["test_images"] == 512


@pytest.mark.torch
def test_npz_bytes_reproducible_and_loadable(tmp_path: Path) -> None:
    tm = _train_module()
    arrays = {"b.weight": np.ones((2, 3), np.float32), "a.bias": np.arange(4, dtype=np.float32)}
    data = tm.npz_bytes(arrays)
    assert data == tm.npz_bytes(dict(reversed(list(arrays.items()))))
    path = tmp_path / "w.npz"
    tm.write_atomic(path, data)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["a.bias", "b.weight"]
        np.testing.assert_array_equal(z["b.weight"], arrays["b.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


# --- through the registered extractor, on every runtime ---------------------------------------------

def _extractor(runtime: str):
    from fidkit.extraction import extractor

    return extractor("mnist", runtime=runtime)


@pytest.mark.slow
def test_extractor_accuracy() -> None:
    """The shipped weights, through the default runtime, classify the 10,000 test images as the sidecar says.

    One runtime suffices: the others agree with it feature by feature (the tests below).
    """
    from fidkit.extraction import extractor

    ex = extractor("mnist")
    images, labels = load_mnist("test")
    correct = 0
    for i in range(0, len(images), 1000):
        logits = ex.logits(to_rgb(images[i:i + 1000]))
        correct += int((logits.argmax(1) == labels[i:i + 1000]).sum())
    acc = correct / len(images)
    assert acc >= 0.99
    assert abs(acc - json.loads(SIDECAR.read_text())["test_accuracy"]) <= tolerance("mnist", "accuracy")


def test_extractor_agrees_with_numpy_reference(runtime: str) -> None:
    """Features and logits agree with the float64 reference to 1e-4 x their std, colour input too."""
    images, _ = load_mnist("test")
    rgb = to_rgb(images[:48])
    rng = np.random.default_rng(0)
    colour = rng.uniform(0, 255, size=(8, 28, 28, 3)).astype(np.float32)
    batch = np.concatenate([rgb, colour])
    ref = _extractor("numpy")(batch)
    out = _extractor(runtime)(batch)
    for key in ("features", "logits"):
        scale = ref[key][:48].std()
        err = np.abs(out[key].astype(np.float64) - ref[key]).max()
        tol = tolerance("features", "vs_float64")
        assert err <= tol * scale, f"{runtime} {key}: max error {err:.3g} > {tol:.0e} x std {scale:.3g}"


def test_colour_input_is_luminance(runtime: str) -> None:
    """An RGB image and its BT.601 luminance replicated on three channels give the same features."""
    rng = np.random.default_rng(1)
    colour = rng.uniform(0, 255, size=(4, 28, 28, 3)).astype(np.float32)
    luma = (colour.astype(np.float64) @ np.array(LUMA_RGB)).astype(np.float32)
    ex = _extractor(runtime)
    a, b = ex.features(colour), ex.features(to_rgb(luma))
    assert np.abs(a - b).max() <= tolerance("features", "cross_runtime") * a.std()


@pytest.mark.torch
def test_extractor_matches_torch_twin() -> None:
    """The graph interpreter and the training script's module compute the same network."""
    import torch

    tm = _train_module()
    model = tm.MnistNet()
    with np.load(WEIGHTS, allow_pickle=False) as z:
        model.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files}, strict=False)
    model.eval()
    images, _ = load_mnist("test")
    rgb = to_rgb(images[:64])
    with torch.no_grad():
        feats, logits = model(torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous())
    out = _extractor("numpy")(rgb)
    tol = tolerance("features", "vs_float64")
    assert np.abs(out["features"] - feats.numpy()).max() <= tol * out["features"].std()
    assert np.abs(out["logits"] - logits.numpy()).max() <= tol * out["logits"].std()


def test_other_sizes_are_resized_with_the_mnist_policy(runtime: str) -> None:
    """A 56x56 or 20x24 input gives the features of its `mnist`-policy resize to 28x28."""
    from fidkit.resize import resize

    images, _ = load_mnist("test")
    ex = _extractor(runtime)
    for size in ((56, 56), (20, 24)):
        x = resize(to_rgb(images[:8]), "mnist", size)
        ref = _extractor("numpy").features(resize(x, "mnist", (28, 28)))
        got = ex.features(x)
        assert np.abs(got - ref).max() <= tolerance("features", "vs_float64") * ref.std(), (runtime, size)
