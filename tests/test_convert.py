"""Converters: synthetic files written in the real formats (torch.save state dicts, a TorchScript module named
like NVIDIA's, a frozen TF GraphDef built with TensorFlow) all give the same canonical arrays and digest.

The expected key names and shapes of the real files are data in tests/weights_keys/*.json; the peer libraries
(pytorch-fid, torch-fidelity, torchvision) load the synthetic state dicts strictly, which checks those tables
against the code that reads the real files.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime

from fidkit import weights as W
from fidkit.errors import FidkitWarning, WeightsError

KEYS = Path(__file__).parent / "weights_keys"
PFID = "pt_inception-2015-12-05-6726825d.pth"


def _table(name: str) -> dict:
    return json.loads((KEYS / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")


def _canonical(tiny: bool, seed: int = 0, bn_weight_one: bool = True) -> dict[str, np.ndarray]:
    """Seeded canonical inception-tf2015 arrays with the real names; tiny keeps every dim at most 2."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in _table("pytorch-fid")["keys"].items():
        shape = tuple(min(d, 2) for d in shape) if tiny else tuple(shape)
        if name.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("bn.weight") and bn_weight_one:
            a = np.ones(shape)
        else:
            a = rng.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype == np.float32, k
        assert a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------------- writers


def _write_state_dict(path: Path, arrays: dict[str, np.ndarray], counters: bool = False) -> Path:
    import torch

    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    if counters:
        for k in arrays:
            if k.endswith(".bn.running_var"):
                state[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _write_torchscript(path: Path, canonical: dict[str, np.ndarray]) -> Path:
    """A TorchScript module whose state dict has NVIDIA's names: conv kernels and the linear layer are
    parameters, the BatchNorm beta/mean/var buffers."""
    import torch

    class Holder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for src, info in _table("nvidia-torchscript")["keys"].items():
        *parents, leaf = src.split(".")
        mod = root
        for p in parents:
            if not hasattr(mod, p):
                mod.add_module(p, Holder())
            mod = getattr(mod, p)
        t = torch.from_numpy(canonical[info["canonical"]].copy())
        if leaf in ("weight", "bias"):
            mod.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
        else:
            mod.register_buffer(leaf, t)
    torch.jit.script(root).save(str(path))
    return path


def _graphdef_bytes(canonical: dict[str, np.ndarray], scale: bool, gamma_seed: int | None = None,
                    eps: float = 0.001) -> bytes:
    """A frozen GraphDef with the 2015 graph's Const names, built by TensorFlow, plus its BN nodes."""
    import tensorflow as tf

    rng = np.random.default_rng(gamma_seed)
    with tf.Graph().as_default() as g:
        tf.constant(np.float32(128.0), name="Sub/y")  # non-parameter Consts are ignored
        tf.constant(np.array([299, 299], np.int32), name="ResizeBilinear/size")
        for src, info in _table("tf-graphdef")["keys"].items():
            a = canonical[info["canonical"]]
            if "transpose" in info:
                a = a.transpose(np.argsort(info["transpose"]))
            if src.endswith("/gamma") and gamma_seed is not None:
                a = rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
            tf.constant(a, name=src)
    gd = g.as_graph_def()
    for scope in W.TF2015_SCOPES:
        node = gd.node.add()
        node.name, node.op = f"{scope}/batchnorm", "BatchNormWithGlobalNormalization"
        node.input.extend([f"{scope}/Conv2D"] + [f"{scope}/batchnorm/{p}" for p in
                                                 ("moving_mean", "moving_variance", "beta", "gamma")])
        node.attr["scale_after_normalization"].b = scale
        node.attr["variance_epsilon"].f = eps
        node.attr["T"].type = tf.float32.as_datatype_enum
    return gd.SerializeToString()


def _write_tgz(path: Path, pb: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("classify_image_graph_def.pb", pb), ("imagenet_synset_to_human_label_map.txt",
                                                                  b"n00004475\torganism, being\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------------------------------- tables


def test_key_tables_are_consistent_with_the_graphs() -> None:
    from fidkit.archs.inception import inception_tf2015, inception_torchvision

    canon = {k: tuple(v) for k, v in _table("pytorch-fid")["keys"].items()}
    assert canon == inception_tf2015(logits_bias=True).param_shapes()
    tv = {k: tuple(v) for k, v in _table("torchvision")["keys"].items() if not k.startswith("AuxLogits.")}
    assert tv == inception_torchvision().param_shapes()
    for table in ("nvidia-torchscript", "tf-graphdef"):
        entries = _table(table)["keys"]
        for src, info in entries.items():
            # the table's own shape, in the file's layout, must become the canonical shape
            axes = info.get("transpose", list(range(len(info["shape"]))))
            shape = tuple(np.empty(info["shape"], np.uint8).transpose(axes).shape)
            assert shape == canon[info["canonical"]], src
        bn_weights = {k for k in canon if k.endswith(".bn.weight")}
        covered = {i["canonical"] for i in entries.values()}
        assert covered | bn_weights == set(canon)


def test_key_tables_match_the_converters_and_the_documented_sources() -> None:
    """The converters expect exactly the tables' names, and the tables say where the names come from."""
    from fidkit.backends.torch.convert import nvidia_names

    nvidia = _table("nvidia-torchscript")
    assert nvidia_names() == {k: v["canonical"] for k, v in nvidia["keys"].items()}
    # 94 conv blocks of (weight, beta, mean, var) and the 2048->1008 output layer, as in the sources' port
    assert len(nvidia["keys"]) == 94 * 4 + 2
    assert all(k.startswith(("layers.", "output.")) for k in nvidia["keys"])
    assert {k for k in nvidia["keys"] if k.startswith("layers.mixed_9.")} == {
        f"layers.mixed_9.{m}.{p}" for p in ("weight", "beta", "mean", "var") for m in
        ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
         "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv")}
    tf = _table("tf-graphdef")
    expected = {f"{scope}/{p}" for scope in W.TF2015_SCOPES for p in
                ("conv2d_params", "batchnorm/beta", "batchnorm/gamma", "batchnorm/moving_mean",
                 "batchnorm/moving_variance")} | {"softmax/weights", "softmax/biases"}
    assert set(tf["keys"]) == expected and len(W.TF2015_SCOPES) == 94
    for table in (nvidia, tf):
        assert table["dtype"] == "float32" and table["evidence"], table["files"]


@pytest.mark.peers
def test_torchvision_table_matches_torchvision() -> None:
    require_runtime("torch")
    import torchvision

    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    got = {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert got == _table("torchvision")["keys"]


@pytest.mark.peers
@pytest.mark.slow
def test_full_size_pytorch_fid_file_loads_in_peers_and_converts_exactly(tmp_path: Path) -> None:
    """pytorch-fid and torch-fidelity load the synthetic file strictly (so its keys and shapes are theirs);
    fidkit's conversion equals the state dict their models hold."""
    require_runtime("torch")
    from pytorch_fid.inception import fid_inception_v3
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    canonical = _canonical(tiny=False, bn_weight_one=False)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    path = _write_state_dict(hub / PFID, canonical)
    peer = fid_inception_v3()  # reads $TORCH_HOME/hub/checkpoints/<name>, load_state_dict(strict=True)
    peer_state = {k: v.numpy() for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    fidelity = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                           feature_extractor_weights_path=str(path))
    fidelity_state = {k: v.numpy() for k, v in fidelity.state_dict().items()
                      if not k.endswith("num_batches_tracked")}
    from fidkit.backends.torch.convert import from_state_dict

    ours = from_state_dict(str(path))
    _equal(ours, peer_state)
    _equal(ours, fidelity_state)
    # found in torch hub under its registered name, but not the published file: refused, and left alone
    # (by its size or, were the sizes equal, its SHA-256)
    expected = W.WEIGHTS_FILES[PFID]
    with pytest.raises(WeightsError, match=f"expected ({expected.size}|{expected.sha256})"):
        W.resolve_weights((PFID,), None)
    assert path.is_file()
    with pytest.warns(FidkitWarning, match="unofficial"):
        cw = W.resolve_weights((PFID,), str(path))
    assert not cw.official and cw.digest == W.canonical_digest(peer_state)
    from fidkit.extraction import extractor

    with pytest.warns(FidkitWarning, match="unofficial"):
        ext = extractor("inception-tf2015", runtime="torch", weights=str(path))
    assert ext.weights_sha256 == cw.digest and ext.weights_source == PFID


# ----------------------------------------------------------------------------------------- converters


@pytest.mark.tf
def test_every_format_converts_to_the_same_canonical_arrays_and_digest(tmp_path: Path) -> None:
    require_runtime("torch")
    require_runtime("tf")
    from fidkit.backends.tf.convert import from_graphdef
    from fidkit.backends.torch.convert import from_state_dict, from_torchscript

    canonical = _canonical(tiny=True)
    files = {
        "pytorch-fid": _write_state_dict(tmp_path / PFID, canonical),
        "torch-fidelity": _write_state_dict(tmp_path / "weights-inception-2015-12-05-6726825d.pth", canonical,
                                            counters=True),
        "nvidia": _write_torchscript(tmp_path / "inception-2015-12-05.pt", canonical),
        # gamma is random but unused by TF when scale_after_normalization is false
        "tf-pb": tmp_path / "classify_image_graph_def.pb",
        "tf-tgz": _write_tgz(tmp_path / "inception-2015-12-05.tgz", _graphdef_bytes(canonical, scale=True)),
    }
    files["tf-pb"].write_bytes(_graphdef_bytes(canonical, scale=False, gamma_seed=7))
    formats = {"pytorch-fid": "torch-state-dict", "torch-fidelity": "torch-state-dict",
               "nvidia": "torchscript", "tf-pb": "tf-graphdef", "tf-tgz": "tf-graphdef-tgz"}
    converters = {"torch-state-dict": from_state_dict, "torchscript": from_torchscript,
                  "tf-graphdef": from_graphdef, "tf-graphdef-tgz": from_graphdef}
    digest = W.canonical_digest(canonical)
    for label, path in files.items():
        assert W.detect_format(path) == formats[label], label
        _equal(converters[formats[label]](str(path)), canonical)
        out, d = W.to_canonical(path)
        assert d == digest, label
        _equal(W.load_canonical(out), canonical)



@pytest.mark.tf
def test_tf_gamma_is_the_scale_when_the_graph_scales_by_it(tmp_path: Path) -> None:
    require_runtime("tf")
    from fidkit.backends.tf.convert import from_graphdef

    canonical = _canonical(tiny=True)
    pb = tmp_path / "g.pb"
    pb.write_bytes(_graphdef_bytes(canonical, scale=True, gamma_seed=3))
    got = from_graphdef(str(pb))
    rng = np.random.default_rng(3)  # the same draws, in the table's order, as the writer made
    for src, info in _table("tf-graphdef")["keys"].items():
        if src.endswith("/gamma"):
            expected = rng.uniform(0.5, 1.5, canonical[info["canonical"]].shape).astype(np.float32)
            assert np.array_equal(got[info["canonical"]], expected), src
    assert not np.array_equal(got["Mixed_5b.branch1x1.bn.weight"], canonical["Mixed_5b.branch1x1.bn.weight"])


def test_torchvision_file_drops_aux_logits_and_counters(tmp_path: Path) -> None:
    require_runtime("torch")
    from fidkit.archs.inception import inception_torchvision
    from fidkit.backends.torch.convert import from_state_dict

    rng = np.random.default_rng(1)
    arrays = {k: rng.standard_normal([min(d, 2) for d in shape]).astype(np.float32)
              for k, shape in _table("torchvision")["keys"].items()}
    path = _write_state_dict(tmp_path / "inception_v3_google-0cc3c7bd.pth", arrays, counters=True)
    got = from_state_dict(str(path))
    assert set(got) == set(inception_torchvision().param_shapes())
    _equal(got, {k: v for k, v in arrays.items() if not k.startswith("AuxLogits.")})


@pytest.mark.slow
@pytest.mark.tf
def test_full_size_torchscript_and_graphdef_convert_exactly(tmp_path: Path) -> None:
    """The real key-name/shape tables at full size: NVIDIA's TorchScript and TF's GraphDef."""
    require_runtime("torch")
    require_runtime("tf")
    from fidkit.backends.tf.convert import from_graphdef
    from fidkit.backends.torch.convert import from_torchscript

    canonical = _canonical(tiny=False)
    ts = _write_torchscript(tmp_path / "inception-2015-12-05.pt", canonical)
    _equal(from_torchscript(str(ts)), canonical)
    tgz = _write_tgz(tmp_path / "inception-2015-12-05.tgz", _graphdef_bytes(canonical, scale=False))
    _equal(from_graphdef(str(tgz)), canonical)


def test_truncated_or_wrong_torch_files_raise(tmp_path: Path) -> None:
    require_runtime("torch")
    from fidkit.backends.torch.convert import (
        canonical_from_state_dict,
        from_state_dict,
        from_torchscript,
    )

    canonical = _canonical(tiny=True)
    good = _write_state_dict(tmp_path / "good.pth", canonical)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cut.pth"):
        from_state_dict(str(cut))
    with pytest.raises(WeightsError, match="TorchScript"):
        from_torchscript(str(good))
    import torch

    nvidia_like = {"layers.conv.weight": torch.zeros(2, 2, 3, 3), "output.weight": torch.zeros(3, 2)}
    with pytest.raises(WeightsError, match="missing"):
        canonical_from_state_dict(nvidia_like, "partial.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        canonical_from_state_dict([1, 2], "list.pth")  # type: ignore[arg-type]
    ints = _write_state_dict(tmp_path / "ints.pth", {"w": np.zeros(2, np.float32)})
    torch.save({"w": torch.zeros(2, dtype=torch.int64)}, ints)
    with pytest.raises(WeightsError, match="floating-point"):
        from_state_dict(str(ints))


@pytest.mark.tf
def test_truncated_or_incomplete_graphs_raise(tmp_path: Path) -> None:
    require_runtime("tf")
    from fidkit.backends.tf.convert import from_graphdef

    canonical = _canonical(tiny=True)
    tgz = _write_tgz(tmp_path / "full.tgz", _graphdef_bytes(canonical, scale=False))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cut.tgz"):
        from_graphdef(str(cut))
    partial = dict(canonical)
    partial.pop("fc.bias")
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.constant(np.zeros(3, np.float32), name="softmax/weights")
    pb = tmp_path / "other.pb"
    pb.write_bytes(g.as_graph_def().SerializeToString())
    with pytest.raises(WeightsError, match="conv/conv2d_params"):
        from_graphdef(str(pb))
    other_eps = tmp_path / "eps.pb"
    other_eps.write_bytes(_graphdef_bytes(canonical, scale=False, eps=1e-5))
    with pytest.raises(WeightsError, match="variance_epsilon"):
        from_graphdef(str(other_eps))
    empty_tgz = _write_tgz(tmp_path / "empty.tgz", b"")
    with tarfile.open(tmp_path / "nograph.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(WeightsError, match="no classify_image_graph_def.pb"):
        from_graphdef(str(tmp_path / "nograph.tgz"))
    with pytest.raises(WeightsError):
        from_graphdef(str(empty_tgz))


def test_legacy_pickle_state_dicts_convert(tmp_path: Path) -> None:
    """The 2017-2019 files predate torch's zip format: legacy pickles are detected and converted too."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.convert import from_state_dict

    canonical = _canonical(tiny=True)
    path = tmp_path / PFID
    torch.save({k: torch.from_numpy(v.copy()) for k, v in canonical.items()}, path,
               _use_new_zipfile_serialization=False)
    assert W.detect_format(path) == "torch-state-dict"
    _equal(from_state_dict(str(path)), canonical)
