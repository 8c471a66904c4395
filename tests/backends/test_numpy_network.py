"""The numpy reference interpreter, op by op, against scipy, explicit loops and torch.nn.functional."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal

from fidkit.archs.mnist import mnist_v1
from fidkit.archs.spec import GraphBuilder
from fidkit.backends.common import load_params
from fidkit.backends.numpy import preprocess
from fidkit.backends.numpy.network import network, run_graph
from fidkit.errors import InputError, WeightsError
from fidkit.registry import get_spec
from fidkit.resize import get_policy

RNG = np.random.default_rng(0)


def _one_op(method: str, channels: int, *args, **kwargs):
    g = GraphBuilder("t", channels)
    out = getattr(g, method)("op", "input", *args, **kwargs)
    return g.build(out=out)


def _run(graph, params, x_nchw: np.ndarray) -> np.ndarray:
    return run_graph(graph, params, x_nchw.transpose(0, 2, 3, 1))["out"]


def _torch():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


PADS = [((0, 0), (0, 0)), ((1, 1), (1, 1)), ((0, 2), (1, 0)), ((3, 1), (2, 2))]


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("padding", PADS)
def test_conv2d_matches_scipy_correlate(stride, padding) -> None:
    x = RNG.standard_normal((2, 3, 9, 8))
    w = RNG.standard_normal((4, 3, 3, 2))
    b = RNG.standard_normal(4)
    graph = _one_op("conv2d", 3, 3, 4, (3, 2), stride=stride, padding=padding, bias=True)
    got = _run(graph, {"op.weight": w, "op.bias": b}, x)
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ref = np.stack([np.stack([sum(scipy.signal.correlate(xp[n, c], w[o, c], mode="valid")
                                  for c in range(3)) + b[o] for o in range(4)]) for n in range(2)])
    ref = ref[:, :, ::stride[0], ::stride[1]]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADS)
def test_conv2d_matches_torch_stride2_asymmetric(padding) -> None:
    torch, F = _torch()
    x = RNG.standard_normal((2, 5, 11, 10))
    w = RNG.standard_normal((6, 5, 3, 3))
    graph = _one_op("conv2d", 5, 5, 6, (3, 3), stride=(2, 2), padding=padding)
    got = _run(graph, {"op.weight": w}, x)
    (pt, pb), (pl, pr) = padding
    ref = F.conv2d(F.pad(torch.from_numpy(x), (pl, pr, pt, pb)), torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def _pool_loop(x: np.ndarray, kernel, stride, padding, kind: str, include_pad: bool = False) -> np.ndarray:
    """Pooling by explicit loops over output positions, padding cells marked as absent."""
    (pt, pb), (pl, pr) = padding
    n, c, h, w = x.shape
    ho = (h + pt + pb - kernel[0]) // stride[0] + 1
    wo = (w + pl + pr - kernel[1]) // stride[1] + 1
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * stride[0] - pt, j * stride[1] - pl
            rows = [r for r in range(r0, r0 + kernel[0]) if 0 <= r < h]
            cols = [q for q in range(c0, c0 + kernel[1]) if 0 <= q < w]
            win = x[:, :, rows][:, :, :, cols]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = kernel[0] * kernel[1] if include_pad else len(rows) * len(cols)
                out[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return out


@pytest.mark.parametrize(("kernel", "stride", "padding"), [
    ((3, 3), (2, 2), ((0, 0), (0, 0))), ((3, 3), (1, 1), ((1, 1), (1, 1))),
    ((2, 3), (2, 1), ((1, 0), (0, 2))), ((2, 2), (2, 2), ((0, 0), (0, 0)))])
def test_maxpool_with_padding_matches_loops(kernel, stride, padding) -> None:
    x = RNG.standard_normal((2, 3, 7, 8)) - 5.0  # all negative: zero padding would win, -inf must not
    graph = _one_op("maxpool2d", 3, kernel, stride, padding)
    np.testing.assert_array_equal(_run(graph, {}, x), _pool_loop(x, kernel, stride, padding, "max"))


@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [
    ((3, 3), (1, 1), ((1, 1), (1, 1))), ((3, 2), (2, 2), ((1, 0), (1, 1))),
    ((3, 3), (2, 2), ((0, 0), (0, 0)))])
def test_avgpool_matches_loops(kernel, stride, padding, include_pad: bool) -> None:
    x = RNG.standard_normal((2, 3, 7, 8))
    graph = _one_op("avgpool2d", 3, kernel, stride, padding, count_include_pad=include_pad)
    ref = _pool_loop(x, kernel, stride, padding, "avg", include_pad)
    np.testing.assert_allclose(_run(graph, {}, x), ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("include_pad", [False, True])
def test_pools_match_torch(include_pad: bool) -> None:
    torch, F = _torch()
    x = RNG.standard_normal((2, 4, 9, 9))
    t = torch.from_numpy(x)
    avg = _one_op("avgpool2d", 4, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=include_pad)
    ref = F.avg_pool2d(t, 3, 1, 1, count_include_pad=include_pad).numpy()
    np.testing.assert_allclose(_run(avg, {}, x), ref, rtol=1e-13, atol=1e-14)
    mx = _one_op("maxpool2d", 4, (3, 3), (2, 2), ((1, 1), (1, 1)))
    np.testing.assert_array_equal(_run(mx, {}, x), F.max_pool2d(t, 3, 2, 1).numpy())


def test_batchnorm_relu_affine_dense_flatten_match_torch() -> None:
    torch, F = _torch()
    x = RNG.standard_normal((3, 4, 5, 6))
    p = {"bn.weight": RNG.standard_normal(4), "bn.bias": RNG.standard_normal(4),
         "bn.running_mean": RNG.standard_normal(4), "bn.running_var": RNG.uniform(0.1, 2, 4),
         "fc.weight": RNG.standard_normal((7, 120)), "fc.bias": RNG.standard_normal(7)}
    scale, shift = tuple(RNG.standard_normal(4)), tuple(RNG.standard_normal(4))
    g = GraphBuilder("t", 4)
    a = g.channel_affine("aff", "input", scale, shift)
    b = g.batchnorm("bn", a, 4, 1e-3)
    r = g.relu("relu", b)
    f = g.flatten("flat", r)
    d = g.dense("fc", f, 120, 7)
    gp = g.global_avgpool("gap", r)
    graph = g.build(out=d, gap=gp, bn=b)
    got = run_graph(graph, p, x.transpose(0, 2, 3, 1))
    T = {k: torch.from_numpy(v) for k, v in p.items()}
    ta = torch.from_numpy(x) * torch.tensor(scale).view(1, 4, 1, 1) + torch.tensor(shift).view(1, 4, 1, 1)
    tb = F.batch_norm(ta, T["bn.running_mean"], T["bn.running_var"], T["bn.weight"], T["bn.bias"],
                      training=False, eps=1e-3)
    tr = F.relu(tb)
    np.testing.assert_allclose(got["bn"], tb.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["out"], F.linear(torch.flatten(tr, 1), T["fc.weight"], T["fc.bias"]).numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["gap"], tr.mean(dim=(2, 3)).numpy(), rtol=1e-13, atol=1e-14)


def test_concat_orders_channels_by_input_and_flatten_is_chw() -> None:
    g = GraphBuilder("t", 2)
    a = g.relu("a", "input")
    b = g.channel_affine("b", "input", (-1.0, -1.0), (0.0, 0.0))
    c = g.concat("c", [b, a])
    f = g.flatten("f", c)
    graph = g.build(c=c, f=f)
    x = RNG.standard_normal((1, 2, 3, 3))
    out = run_graph(graph, {}, x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(out["c"][:, :2], -x)
    np.testing.assert_array_equal(out["c"][:, 2:], np.maximum(x, 0))
    np.testing.assert_array_equal(out["f"][0, :9], -x[0, 0].ravel())  # channel first, then rows


def _random_params(graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    params = {}
    for key, shape in graph.param_shapes().items():
        if key.endswith("running_var"):
            params[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            params[key] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return params


def _small_net():
    """A graph using every op, as an Inception-like block would: stem, two branches, concat, heads."""
    g = GraphBuilder("small", 3)
    x = g.channel_affine("norm", "input", (1 / 64, 1 / 32, 1 / 16), (-1.0, -2.0, 0.5))
    x = g.conv2d("stem", x, 3, 8, (3, 3), stride=(2, 2), padding=((0, 1), (1, 0)), bias=True)
    x = g.batchnorm("stem_bn", x, 8, 1e-3)
    x = g.relu("stem_relu", x)
    a = g.conv2d("a", x, 8, 6, (1, 3), padding=((0, 0), (1, 1)))
    b = g.avgpool2d("b_pool", x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)
    b = g.conv2d("b", b, 8, 4, (1, 1))
    m = g.maxpool2d("m", x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    x = g.concat("cat", [a, b, m])
    feats = g.global_avgpool("gap", x)
    y = g.maxpool2d("down", x, (2, 2), (2, 2))
    y = g.flatten("flat", y)
    logits = g.dense("fc", y, 18 * 4 * 4, 5)
    return g.build(features=feats, logits=logits)


def test_small_network_matches_a_torch_module(tmp_path) -> None:
    torch, F = _torch()
    graph = _small_net()
    params = _random_params(graph)
    np.savez(tmp_path / "w.npz", **params)
    x = RNG.uniform(0, 255, (3, 17, 16, 3))
    got = run_graph(graph, load_params(graph, str(tmp_path / "w.npz")), x)
    T = {k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    t = t * torch.tensor([1 / 64, 1 / 32, 1 / 16]).view(1, 3, 1, 1) + torch.tensor([-1.0, -2.0, 0.5]).view(1, 3, 1, 1)
    t = F.conv2d(F.pad(t, (1, 0, 0, 1)), T["stem.weight"], T["stem.bias"], stride=2)
    t = F.relu(F.batch_norm(t, T["stem_bn.running_mean"], T["stem_bn.running_var"], T["stem_bn.weight"],
                            T["stem_bn.bias"], training=False, eps=1e-3))
    a = F.conv2d(t, T["a.weight"], padding=(0, 1))
    b = F.conv2d(F.avg_pool2d(t, 3, 1, 1, count_include_pad=False), T["b.weight"])
    m = F.max_pool2d(t, 3, 1, 1)
    t = torch.cat([a, b, m], dim=1)
    feats = t.mean(dim=(2, 3))
    logits = F.linear(torch.flatten(F.max_pool2d(t, 2, 2), 1), T["fc.weight"], T["fc.bias"])
    np.testing.assert_allclose(got["features"], feats.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got["logits"], logits.numpy(), rtol=1e-11, atol=1e-12)


def test_load_params_names_missing_and_mismatched_keys(tmp_path) -> None:
    graph = mnist_v1()
    params = _random_params(graph)
    bad = dict(params)
    del bad["bn2.running_var"]
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(WeightsError, match=r"missing.npz.*'bn2.running_var'"):
        load_params(graph, str(tmp_path / "missing.npz"))
    bad = dict(params, **{"fc1.weight": np.zeros((128, 10), np.float32)})
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(WeightsError, match=r"'fc1.weight' has shape \(128, 10\)"):
        load_params(graph, str(tmp_path / "shape.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(WeightsError, match="junk.npz"):
        load_params(graph, str(tmp_path / "junk.npz"))


def test_network_runs_the_graph_on_its_input_and_the_preprocess_normalises(tmp_path) -> None:
    from fidkit.extraction import InputConvention

    spec = get_spec("mnist")
    graph = mnist_v1()
    params = _random_params(graph)
    np.savez(tmp_path / "w.npz", **params)
    weights = SimpleNamespace(path=tmp_path / "w.npz", digest="0" * 64, source="test")
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 4.0, 0.5])
    forward = network(spec=spec, weights=weights, device="cpu")
    assert forward.layout == "NHWC"
    x = RNG.uniform(0, 255, (11, 28, 28, 3)).astype(np.float32)  # more than one chunk of images
    norm = (x.astype(np.float64) - mean) / std
    ref = run_graph(graph, load_params(graph, str(tmp_path / "w.npz")), norm)
    out = forward(norm)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-12, atol=1e-13)
    assert out["logits"].shape == (11, 10)
    policy = get_policy(spec.policy)
    conv = InputConvention((28, 28), mean=tuple(mean), std=tuple(std))
    pre = preprocess(policy, conv, "cpu")
    staged = forward(pre(x, value_range=(0.0, 255.0)))
    np.testing.assert_allclose(staged["features"], ref["features"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(staged["logits"], ref["logits"], rtol=1e-12, atol=1e-13)
    with pytest.raises(InputError, match="CPU only"):
        network(spec=spec, weights=weights, device="cuda")
    with pytest.raises(WeightsError, match="needs weights"):
        network(spec=spec, weights=None, device="cpu")


def test_preprocess_resizes_other_sizes_with_the_reference_resizer(tmp_path) -> None:
    from fidkit.extraction import builtin_convention
    from fidkit.resize import resize

    spec = get_spec("mnist")
    graph = mnist_v1()
    np.savez(tmp_path / "w.npz", **_random_params(graph))
    weights = SimpleNamespace(path=tmp_path / "w.npz", digest="0" * 64, source="test")
    policy = get_policy(spec.policy)
    forward = network(spec=spec, weights=weights, device="cpu")
    pre = preprocess(policy, builtin_convention(spec, policy, "NHWC"), "cpu")
    x = RNG.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    direct = forward(pre(resize(x, policy, (28, 28)), value_range=(0.0, 255.0)))
    np.testing.assert_array_equal(forward(pre(x, value_range=(0.0, 255.0)))["features"], direct["features"])


def test_numpy_runtime_takes_auto_and_refuses_cuda() -> None:
    from fidkit.errors import InputError
    from fidkit.extraction import extractor

    ex = extractor("mnist", runtime="numpy", device="auto")
    assert ex.features(np.zeros((1, 28, 28, 3), np.float32)).shape == (1, ex.feature_dim)
    with pytest.raises(InputError, match="CPU only"):
        extractor("mnist", runtime="numpy", device="cuda")
