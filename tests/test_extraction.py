"""The two-stage extractor (`fidkit.extraction`): what users hold goes in, the pipeline's features come out.

Issue 11's "done when" and issue 12.3-12.5: MNIST digits as loaded, with a channel axis, and as a
framework tensor in [-1, 1] give the pipeline's features on every runtime; a tensor stays on its device;
the command line hands --resize/--device/--weights/--runtime to a model of one's own or refuses them in
one line; ambiguous (3, H, W) arrays, NaN and [0, 1] images declared as [0, 255] are errors that say
what was found, on every route.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

import fidkit
from fidkit.errors import FidkitWarning, InputError

N = 16
#: the command line this checkout installs (the real entry point, in the test's virtual environment)
FIDKIT = Path(sys.executable).with_name("fidkit")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Returns N MNIST test digits as `fidkit.load_mnist` gives them: uint8 (N, 28, 28)."""
    images = fidkit.load_mnist()[0][:N]
    assert images.shape == (N, 28, 28) and images.dtype == np.uint8
    return images


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    err = np.abs(np.asarray(got, np.float64) - ref).max()
    assert err <= tolerance("features", "ops_pair") * ref.std(), err


# ---------------------------------------------------------------------------------- issue 11: inputs


def test_mnist_features_of_what_users_hold_equal_the_pipelines(runtime: str, digits: np.ndarray) -> None:
    ex = fidkit.extractor("mnist", runtime=runtime)
    ref = fidkit.compute_features(digits, ex, progress=False).features
    assert ref.shape == (N, 128)
    tanh = (digits[:, None].astype(np.float32) / np.float32(127.5) - 1).astype(np.float32)  # NCHW, [-1, 1]
    inputs = {"NHW uint8": (digits, {}), "NHWC uint8": (digits[..., None], {}),
              "NCHW float [-1, 1]": (tanh, {"value_range": (-1, 1)})}
    if runtime == "torch":
        import torch

        inputs["torch NCHW float [-1, 1]"] = (torch.from_numpy(tanh), {"value_range": (-1, 1)})
    elif runtime == "tf":
        import tensorflow as tf

        inputs["tf NCHW float [-1, 1]"] = (tf.constant(tanh), {"value_range": (-1, 1)})
    elif runtime == "jax":
        import jax.numpy as jnp

        inputs["jax NCHW float [-1, 1]"] = (jnp.asarray(tanh), {"value_range": (-1, 1)})
    for what, (x, kwargs) in inputs.items():
        got = ex.features(x, **kwargs)
        assert isinstance(got, np.ndarray), what
        _close(got, ref)
    # the pipeline takes the same inputs and agrees
    _close(fidkit.compute_features(tanh, ex, progress=False, value_range=(-1, 1)).features, ref)
    _close(fidkit.compute_features(digits[..., None], ex, progress=False).features, ref)


def test_a_torch_tensor_stays_on_its_device(digits: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    require_runtime("torch")
    import torch

    ex = fidkit.extractor("mnist", runtime="torch")
    ref = ex.features(digits)
    t = torch.from_numpy(digits[:, None].astype(np.float32) / np.float32(127.5) - 1)
    # the tensor path never goes through numpy: the only host traffic is the two extremes
    monkeypatch.setattr(sys.modules["fidkit.backends.torch.preprocess"], "to_numpy", _no_host_copy)
    out = ex.features(t, value_range=(-1, 1), host=False)
    assert isinstance(out, torch.Tensor) and out.device == t.device and out.shape == (N, 128)
    both = ex.outputs(t, value_range=(-1, 1), host=False)
    assert all(isinstance(v, torch.Tensor) and v.device == t.device for v in both.values())
    _close(out.numpy(), ref)


@pytest.mark.gpu
def test_a_cuda_tensor_stays_on_the_gpu(digits: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    require_runtime("torch")
    import torch

    ref = fidkit.extractor("mnist", runtime="torch").features(digits)
    ex = fidkit.extractor("mnist", runtime="torch", device="cuda")
    t = torch.from_numpy(digits[:, None].astype(np.float32) / np.float32(127.5) - 1).cuda()
    monkeypatch.setattr(sys.modules["fidkit.backends.torch.preprocess"], "to_numpy", _no_host_copy)
    out = ex.features(t, value_range=(-1, 1), host=False)
    assert isinstance(out, torch.Tensor) and out.device == t.device
    assert np.abs(out.cpu().numpy() - ref).max() <= tolerance("features", "gpu") * ref.std()


def _no_host_copy(obj):
    raise AssertionError(f"a {type(obj).__name__} was copied to the host")


# ------------------------------------------------------------------ issue 11: options reach the model

PLUGIN = textwrap.dedent("""
    from pathlib import Path

    import torch

    from fidkit.adapters import from_torch

    H = W = 8


    def _model():
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(H * W, 6))
        with torch.no_grad():
            net[1].weight.copy_(torch.linspace(-1, 1, 6 * H * W).reshape(6, H * W).sin())
            net[1].bias.copy_(torch.linspace(-0.5, 0.5, 6))
        return net


    def _extractor(**kwargs):
        return from_torch(_model(), "", name="tiny-plugin", input_size=(H, W), channels=1, **kwargs)


    def build():
        return _extractor()


    def build_device(device=None):
        Path("received.txt").write_text(f"device={device}")
        return _extractor(device=device)


    def build_policy(policy=None):
        Path("received.txt").write_text(f"policy={policy}")
        return _extractor(**({"policy": policy} if policy else {}))


    def build_dropping_policy(policy=None):
        return _extractor()
""")


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the plugin as a package module (mypkg/mod.py) and as a file (plugin.py), and two
    image arrays: float [0, 1] 12x12 RGB, so that both the resize and the input quantization matter."""
    require_runtime("torch")
    root = tmp_path_factory.mktemp("cli")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "mod.py").write_text(PLUGIN)
    (root / "plugin.py").write_text(PLUGIN)
    rng = np.random.default_rng(0)
    np.save(root / "A.npy", rng.uniform(0, 1, (20, 12, 12, 3)).astype(np.float32))
    np.save(root / "B.npy", rng.uniform(0, 1, (20, 12, 12, 3)).astype(np.float32) ** 2)
    return root


def _fidkit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FIDKIT_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the current folder must be importable by the CLI itself
    return subprocess.run([str(FIDKIT), *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def _plugin(cli_dir: Path, attr: str = "build", **options):
    """Loads the plugin in this process, in its folder (its build functions write received.txt there)."""
    import os

    from fidkit.adapters import load_extractor

    here = os.getcwd()
    os.chdir(cli_dir)
    try:
        return load_extractor(f"{cli_dir / 'plugin.py'}:{attr}", **options)
    finally:
        os.chdir(here)


def test_fid_with_a_module_attr_extractor_applies_and_records_resize(cli_dir: Path) -> None:
    out = _fidkit(cli_dir, "fid", "A.npy", "B.npy", "--extractor", "mypkg.mod:build",
                  "--resize", "legacy-pytorch", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "resize policy legacy-pytorch" in out.stderr
    result = json.loads(out.stdout)
    assert result["provenance"]["resize_policy"] == "legacy-pytorch"
    assert result["provenance"]["extractor"] == "tiny-plugin"
    a, b = (np.load(cli_dir / f) for f in ("A.npy", "B.npy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidkitWarning)  # 20 samples: the CLI said so too
        expected = fidkit.score(a, b, metrics=("fid",), extractor=_plugin(cli_dir, policy="legacy-pytorch"))
        canonical = fidkit.score(a, b, metrics=("fid",), extractor=_plugin(cli_dir))
    assert result["fid"] == pytest.approx(expected["fid"], rel=1e-6)
    assert canonical["fid"] != pytest.approx(expected["fid"], rel=1e-3)  # the policy moves the number: it ran


@pytest.mark.parametrize("flag", ["--device", "--weights"])
def test_an_option_a_build_function_cannot_take_is_a_one_line_error(cli_dir: Path, flag: str) -> None:
    value = "cpu" if flag == "--device" else "w.npz"
    out = _fidkit(cli_dir, "fid", "A.npy", "B.npy", "--extractor", "mypkg.mod:build", flag, value,
                  "--no-progress")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fidkit: ") and f"{flag} {value}" in lines[0]
    assert "mypkg.mod:build" in lines[0] and f"no {flag[2:]!r} parameter" in lines[0]


def test_a_build_function_receives_the_options_it_takes(cli_dir: Path) -> None:
    out = _fidkit(cli_dir, "stats", "A.npy", "-o", "dev.npz", "--extractor", "mypkg.mod:build_device",
                  "--device", "cpu", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert (cli_dir / "received.txt").read_text() == "device=cpu"
    assert "tiny-plugin on torch (cpu)" in out.stderr
    out = _fidkit(cli_dir, "stats", "A.npy", "-o", "pol.npz", "--extractor", "mypkg.mod:build_policy",
                  "--resize", "torchvision", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert (cli_dir / "received.txt").read_text() == "policy=torchvision"
    assert "resize policy torchvision (as asked)" in out.stderr
    assert json.loads(out.stdout)["provenance"]["resize_policy"] == "torchvision"


def test_a_build_function_that_drops_an_option_it_takes_is_an_error(cli_dir: Path) -> None:
    """build(policy=...) returning the 'clean' policy whatever it is given would be recorded as asked."""
    assert _plugin(cli_dir, "build_policy", policy="legacy-pytorch").policy.name == "legacy-pytorch"
    assert _plugin(cli_dir, "build_dropping_policy", policy="clean").policy.name == "clean"
    with pytest.raises(InputError, match="--resize legacy-pytorch: .* built an extractor with policy 'clean'"):
        _plugin(cli_dir, "build_dropping_policy", policy="legacy-pytorch")


MNIST_WEIGHTS = str(Path(fidkit.__file__).parent / "data" / "fidkit-mnist-v1.npz")
KINDS = {"builtin": "mnist", "module": "mypkg.mod:build", "file": "plugin.py:build"}
FLAGS = {"none": [], "resize": ["--resize", "legacy-pytorch"], "device": ["--device", "cpu"],
         "weights": ["--weights", MNIST_WEIGHTS], "runtime-torch": ["--runtime", "torch"],
         "runtime-numpy": ["--runtime", "numpy"]}
#: (kind, flag) pairs a model of one's own refuses: its build() takes no such parameter
REFUSED = {("module", "device"), ("file", "device"), ("module", "weights"), ("file", "weights"),
           ("module", "runtime-numpy"), ("file", "runtime-numpy")}


@pytest.mark.parametrize("flag", list(FLAGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_flag_and_extractor_kind_runs_the_policy_it_reports(cli_dir: Path, kind: str, flag: str) -> None:
    out = _fidkit(cli_dir, "features", "A.npy", "-o", f"{kind}-{flag}.npz", "--extractor", KINDS[kind],
                  *FLAGS[flag], "--json", "--no-progress")
    if (kind, flag) in REFUSED:
        option = FLAGS[flag][0]
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and option in out.stderr, out.stderr
        return
    assert out.returncode == 0, out.stderr
    prov = json.loads(out.stdout)["provenance"]
    policy = "legacy-pytorch" if flag == "resize" else "mnist" if kind == "builtin" else "clean"
    assert prov["resize_policy"] == policy
    assert f"resize policy {policy} (" in out.stderr
    if flag.startswith("runtime-"):
        assert prov["runtime"] == flag.partition("-")[2]
    images = np.load(cli_dir / "A.npy")
    if kind == "builtin":
        ex = fidkit.extractor("mnist", runtime=prov["runtime"], policy=policy)
    else:
        ex = _plugin(cli_dir).with_policy(policy)
    got = fidkit.load_features(cli_dir / f"{kind}-{flag}.npz").features
    np.testing.assert_allclose(got, ex.features(images), rtol=1e-5, atol=1e-6 * np.abs(got).max())
    other = ex.with_policy("clean" if policy != "clean" else "legacy-pytorch").features(images)
    assert np.abs(other - got).max() > 1e-3 * np.abs(got).max()  # the policies differ on these images


# ------------------------------------------------------------------------ issue 12.3: (3, H, W) arrays


def test_three_by_h_by_w_needs_a_layout_on_every_route(tmp_path: Path) -> None:
    x = np.random.default_rng(3).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    ex = fidkit.extractor("mnist", runtime="numpy")
    both = r"\(3, 32, 32\) is either one CHW image or a batch of 3 grayscale images \(NHW\)"
    with pytest.raises(InputError, match=both):
        ex.features(x)
    with pytest.raises(InputError, match=both):
        fidkit.compute_features(x, ex, progress=False)
    one = ex.features(x, layout="CHW")
    three = ex.features(x, layout="NHW")
    assert one.shape == (1, 128) and three.shape == (3, 128)
    _close(one, ex.features(x.transpose(1, 2, 0)[None]))
    _close(three, ex.features(x[..., None]))
    _close(fidkit.compute_features(x, ex, progress=False, layout="CHW").features, one)
    _close(fidkit.compute_features(x, ex, progress=False, layout="NHW").features, three)
    np.save(tmp_path / "x.npy", x)
    out = _fidkit(tmp_path, "features", "x.npy", "-o", "f.npz", "--runtime", "numpy", "--no-progress")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "either one CHW image or a batch of 3 grayscale images (NHW)" in out.stderr
    assert "--layout" in out.stderr
    for layout, ref in (("CHW", one), ("NHW", three)):
        out = _fidkit(tmp_path, "features", "x.npy", "-o", f"{layout}.npz", "--runtime", "numpy",
                      "--layout", layout, "--json", "--no-progress")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["n"] == len(ref)
        _close(fidkit.load_features(tmp_path / f"{layout}.npz").features, ref)


# ------------------------------------------------------------------- issues 12.4 and 12.5: bad values


def _routes(x: np.ndarray, **kwargs):
    """Yields (route, thunk) computing features of ``x`` by the array route, the generator route (the
    same images drawn in batches of 50) and `Extractor.features`."""
    ex = fidkit.extractor("mnist", runtime="numpy")

    def sample(n: int) -> np.ndarray:
        start = sample.drawn
        sample.drawn += n
        return x[start:start + n]

    def generator():
        sample.drawn = 0
        return fidkit.compute_features(sample, ex, num=len(x), batch_size=50, progress=False, **kwargs)

    yield "array", lambda: fidkit.compute_features(x, ex, progress=False, **kwargs)
    yield "generator", generator
    yield "Extractor.features", lambda: ex.features(x, **kwargs)


def _raises_on(route: str, run, pattern: str) -> None:
    try:
        run()
    except InputError as exc:
        assert re.search(pattern, str(exc)), f"{route}: {exc}"
    else:
        pytest.fail(f"{route}: no error")


def test_a_nan_in_the_last_of_600_images_is_named_on_every_route() -> None:
    x = np.random.default_rng(4).uniform(0, 1, (600, 28, 28)).astype(np.float32)
    x[599, 27, 27] = np.nan
    for declared in (None, (0, 1)):
        for route, run in _routes(x, value_range=declared):
            _raises_on(route, run, r"image 599 contains NaN or infinite values")


def test_unit_range_images_declared_on_0_255_say_they_look_like_0_1() -> None:
    x = np.random.default_rng(5).uniform(0, 1, (100, 28, 28)).astype(np.float32)
    for route, run in _routes(x, value_range=(0, 255)):
        _raises_on(route, run, r"max 1\.00: looks like \[0, 1\] but \[0, 255\] was declared; "
                               r"pass --range 0,1 \(value_range=\[0, 1\] in Python\)")
