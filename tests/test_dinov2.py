"""DINOv2 (fidkit/archs/dinov2.py): the ViT ops on every runtime, against timm and the hub's interpolation,
the hub checkpoint converter, and the dgm-eval / EDM2 input policies.

Small networks of the same code (`ViTConfig` with a few blocks, 4-pixel patches) keep the conformance tests
fast; the full ViT-L/14 at 224 x 224 runs once, marked slow.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.archs.dinov2 import CONFIGS, ViTConfig, dinov2_vitl14, vit_graph
from fidkit.archs.spec import pos_embed_matrix
from fidkit.archs.synthetic import synthetic_images, synthetic_weights
from fidkit.backends.numpy.network import run_graph
from fidkit.extraction import assemble, builtin_convention
from fidkit.registry import ExtractorSpec, get_spec, load_object
from fidkit.resize import get_policy, resize
from fidkit.weights import CanonicalWeights

#: Without registers: pos-embed interpolation with the 0.1 offset; 4 x 4 patches from a 6 x 6 table.
TINY = ViTConfig("tiny", 32, 2, 2, patch=4, table_grid=6, input_size=(16, 16))
#: With 4 registers (antialiased size-based interpolation), a SwiGLU FFN (ViT-g), a non-square 5 x 7 grid.
TINY_REG = ViTConfig("tiny-reg", 48, 3, 3, ffn="swiglu", registers=4, patch=4, table_grid=6,
                     input_size=(20, 28))
CASES = {"plain": TINY, "reg-swiglu": TINY_REG}


def tiny_graph():
    return vit_graph(TINY)


def tiny_reg_graph():
    return vit_graph(TINY_REG)


ARCH = {"plain": "tiny_graph", "reg-swiglu": "tiny_reg_graph"}


def _params(cfg: ViTConfig) -> dict[str, np.ndarray]:
    return synthetic_weights(vit_graph(cfg), seed=2, size=cfg.input_size)


def _inputs(cfg: ViTConfig, n: int = 3) -> np.ndarray:
    """Normalised network input (NHWC float32): synthetic images through the ImageNet normalisation."""
    return get_policy("edm2").normalize(synthetic_images(n, cfg.input_size, seed=7).astype(np.float32))


def _reference(cfg: ViTConfig, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return run_graph(vit_graph(cfg), {k: v.astype(np.float64) for k, v in params.items()}, x)["features"]


def _max_std(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / ref.std())


def hub_state_dict(params: dict[str, np.ndarray], torch) -> dict:
    """The canonical arrays under the torch hub checkpoint's names (with its training-only mask_token)."""
    from fidkit.backends.torch.convert import DINOV2_RENAMES

    back = {v: k for k, v in DINOV2_RENAMES.items()}
    state = {back.get(k, k): torch.from_numpy(v.copy()) for k, v in params.items()}
    state["mask_token"] = torch.zeros(1, params["cls_token.value"].shape[-1])
    return state


def hub_interpolate(torch, pos_embed, grid: tuple[int, int], offset: float, antialias: bool):
    """``DinoVisionTransformer.interpolate_pos_encoding`` (facebookresearch/dinov2, the hub code): the class
    row, then the M x M patch table through ``F.interpolate`` with the hub's own arguments."""
    n_patches = pos_embed.shape[1] - 1
    m = int(math.sqrt(n_patches))
    if grid == (m, m):
        return pos_embed
    dim = pos_embed.shape[-1]
    kwargs = ({"scale_factor": (float(grid[0] + offset) / m, float(grid[1] + offset) / m)} if offset
              else {"size": grid})
    patch = torch.nn.functional.interpolate(pos_embed[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
                                            mode="bicubic", antialias=antialias, **kwargs)
    assert tuple(patch.shape[-2:]) == grid
    return torch.cat((pos_embed[:, :1], patch.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


# ------------------------------------------------------------------------------------------ graphs


def test_released_configs_match_the_hub_models() -> None:
    """Widths, depths and heads of dinov2/models/vision_transformer.py (vit_small/base/large/giant2)."""
    expect = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12), "vitl14": (1024, 24, 16), "vitg14": (1536, 40, 24)}
    for model, (dim, depth, heads) in expect.items():
        for suffix, registers in (("", 0), ("-reg", 4)):
            cfg = CONFIGS[f"dinov2-{model}{suffix}"]
            assert (cfg.dim, cfg.depth, cfg.heads, cfg.registers, cfg.patch, cfg.table_grid) == \
                (dim, depth, heads, registers, 14, 37)
            assert (cfg.offset, cfg.antialias) == ((0.0, True) if registers else (0.1, False))
    assert CONFIGS["dinov2-vitg14"].hidden == 4096  # SwiGLUFFNFused: (int(6144 * 2 / 3) + 7) // 8 * 8
    assert CONFIGS["dinov2-vitl14"].hidden == 4096 and CONFIGS["dinov2-vitl14"].ffn == "mlp"


def test_vitl14_graph_has_the_hub_checkpoint_keys() -> None:
    """343 keys in dinov2_vitl14_pretrain.pth: the 342 here (three renamed) and the training-only mask_token."""
    shapes = dinov2_vitl14().param_shapes()
    assert len(shapes) == 342
    assert shapes["cls_token.value"] == (1, 1, 1024)
    assert shapes["pos_embed.value"] == (1, 1 + 37 * 37, 1024)
    assert shapes["patch_embed.proj.weight"] == (1024, 3, 14, 14)
    assert shapes["blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert shapes["blocks.0.ls1.gamma"] == (1024,) and shapes["blocks.0.mlp.fc2.weight"] == (1024, 4096)
    assert sum(int(np.prod(s)) for s in shapes.values()) + 1024 == 304_368_640  # 1,217,474,560 bytes of float32


def test_registered_specs_point_at_these_graphs() -> None:
    for name, cfg in CONFIGS.items():
        spec = get_spec(name)
        graph = load_object(spec.arch)()
        assert graph.name == name and spec.feature_dim == cfg.dim and spec.logits_dim is None
        assert spec.input_size == (224, 224) and spec.policy == "dgm-eval"
        assert set(graph.outputs) == {"features"}


@pytest.mark.parametrize("offset,antialias", [(0.1, False), (0.0, True)], ids=["offset", "antialias"])
@pytest.mark.parametrize("table,out", [(37, 16), (37, 37), (37, 40), (6, 4), (6, 5), (6, 9), (37, 1)])
def test_pos_embed_matrix_is_the_hubs_interpolate(table: int, out: int, offset: float, antialias: bool) -> None:
    """fidkit's resampling matrices against torch's F.interpolate called with the hub's arguments (random
    table, both axes): float32 torch sums ~16 weighted entries of size ~1 (u x 16 x 1.3 ~ 1.2e-6) plus the
    rounding of its weights in float32; 1e-5 absolute leaves room, and a wrong tap or coordinate is O(0.1)."""
    require_runtime("torch")
    import torch

    if table == out:  # the hub returns the table itself
        np.testing.assert_array_equal(pos_embed_matrix(table, out, 0.0, antialias), np.eye(out))
        return
    rng = np.random.default_rng(table * 100 + out)
    pos = rng.normal(size=(1, 1 + table * table, 8)).astype(np.float32)
    ref = hub_interpolate(torch, torch.from_numpy(pos), (out, out), offset, antialias).numpy()[0, 1:]
    a = pos_embed_matrix(table, out, offset, antialias)
    ours = np.einsum("hm,wn,mnd->hwd", a, a, pos[0, 1:].reshape(table, table, 8).astype(np.float64))
    np.testing.assert_allclose(ours.reshape(-1, 8), ref, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ runtimes and peers


def _run(runtime: str, cfg: ViTConfig, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    graph = vit_graph(cfg)
    if runtime == "torch":
        import torch

        from fidkit.backends.torch.network import load_module

        with torch.inference_mode():
            out = load_module(graph, params)(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        return out["features"].numpy()
    if runtime == "jax":
        import jax

        from fidkit.backends.jax.network import apply, to_jax_params

        return np.asarray(jax.jit(lambda p, v: apply(graph, p, v))(to_jax_params(graph, params), x)["features"])
    if runtime == "tf":
        import tensorflow as tf

        from fidkit.backends.tf.network import graph_module

        return graph_module(graph, params, cfg.input_size)(tf.constant(x))["features"].numpy()
    return _reference(cfg, params, x)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_runtime_matches_the_float64_reference(runtime: str, case: str) -> None:
    if runtime == "numpy":
        pytest.skip("numpy is the float64 reference itself")
    cfg = CASES[case]
    params, x = _params(cfg), _inputs(cfg)
    ref = _reference(cfg, params, x)
    got = _run(runtime, cfg, params, x)
    assert got.shape == (len(x), cfg.dim) and got.dtype == np.float32
    assert _max_std(got, ref) < tolerance("dinov2", "tiny_vs_float64")


@pytest.mark.peers
@pytest.mark.parametrize("case", sorted(CASES))
def test_timm_with_the_same_weights_agrees(case: str) -> None:
    """timm's VisionTransformer (its vit_*_patch14[_reg4]_dinov2 classes, small) with the same synthetic
    weights, loaded through timm's own DINOv2 checkpoint conversion; timm resamples position tables its own
    way, so it gets the table at the input's grid, resampled by the hub's interpolate_pos_encoding."""
    require_runtime("torch")
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (a peer: pip install timm)")
    import torch
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer, _convert_dinov2

    cfg = CASES[case]
    params, x = _params(cfg), _inputs(cfg)
    grid = (cfg.input_size[0] // cfg.patch, cfg.input_size[1] // cfg.patch)
    state = hub_state_dict(params, torch)
    state["pos_embed"] = hub_interpolate(torch, state["pos_embed"], grid, cfg.offset, cfg.antialias)
    kwargs = {}
    if cfg.ffn == "swiglu":
        kwargs = {"mlp_ratio": 2 * cfg.hidden / cfg.dim, "mlp_layer": SwiGLUPacked, "act_layer": torch.nn.SiLU}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = VisionTransformer(img_size=cfg.input_size, patch_size=cfg.patch, embed_dim=cfg.dim,
                                  depth=cfg.depth, num_heads=cfg.heads, init_values=1e-5, num_classes=0,
                                  reg_tokens=cfg.registers, no_embed_class=bool(cfg.registers), **kwargs)
        model.load_state_dict(_convert_dinov2(dict(state), model), strict=True)
        with torch.inference_mode():
            theirs = model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    ref = _reference(cfg, params, x)
    assert _max_std(theirs, ref) < tolerance("dinov2", "tiny_vs_float64")
    assert _max_std(_run("torch", cfg, params, x), theirs) < tolerance("dinov2", "tiny_cross_runtime")


# --------------------------------------------------------------------------------- converter


@pytest.fixture(scope="module")
def hub_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A synthetic dinov2_*_pretrain.pth of the tiny register model, written as torch.save writes the hub's."""
    require_runtime("torch")
    import torch

    params = _params(TINY_REG)
    path = tmp_path_factory.mktemp("hub") / "dinov2_tiny_reg4_pretrain.pth"
    torch.save(hub_state_dict(params, torch), path)
    return path, params


def test_hub_checkpoint_converts_to_the_canonical_names(hub_file) -> None:
    from fidkit.weights import convert, detect_format

    path, params = hub_file
    assert detect_format(path) == "torch-state-dict"
    arrays = convert(path)
    assert set(arrays) == set(params) == set(vit_graph(TINY_REG).param_shapes())
    for k, v in params.items():
        np.testing.assert_array_equal(arrays[k], v)


def test_converted_hub_file_runs_as_an_extractor(hub_file, tmp_path: Path, runtime: str) -> None:
    """The hub .pth through `to_canonical` (as --weights does) then a runtime's preprocess (the dgm-eval
    policy: Pillow bicubic on uint8 from 40 x 36) and network, against numpy's."""
    from fidkit.weights import to_canonical

    path, _ = hub_file
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIDKIT_HOME", str(tmp_path))
        canon, digest = to_canonical(path)
    weights = CanonicalWeights(str(canon), digest, path.name, official=False)
    images = synthetic_images(2, (40, 36), seed=3)

    def features(rt: str) -> np.ndarray:
        this = sys.modules[__name__].__name__
        from fidkit.extractors import GRAPH_BUILDERS

        spec = ExtractorSpec(name="tiny-reg", feature_dim=TINY_REG.dim, logits_dim=None,
                             input_size=TINY_REG.input_size, policy="dgm-eval", builders=GRAPH_BUILDERS,
                             arch=f"{this}:tiny_reg_graph")
        pol = get_policy("dgm-eval")
        net = load_object(spec.builders[rt])(spec=spec, weights=weights, device="cpu")
        ex = assemble(spec, rt, "cpu", pol, builtin_convention(spec, pol, net.layout), net,
                      weights_sha256=digest, weights_source=path.name)
        return ex.features(images)

    ref = features("numpy")
    assert ref.shape == (2, TINY_REG.dim)
    if runtime != "numpy":
        assert _max_std(features(runtime), ref) < tolerance("dinov2", "tiny_vs_float64")


def test_converter_refuses_a_chunked_training_checkpoint() -> None:
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.convert import canonical_from_state_dict
    from fidkit.errors import WeightsError

    state = {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 5, 8),
             "blocks.0.0.norm1.weight": torch.ones(8)}
    with pytest.raises(WeightsError, match="chunked"):
        canonical_from_state_dict(state, "teacher_checkpoint.pth")


def test_hub_files_are_described_for_every_backbone() -> None:
    """One hub file per registered backbone, at the URL of the hub's backbones.py (and timm's pretrained_cfg)."""
    from fidkit.weights.files import DINOV2_WEIGHTS_FILES

    assert len(DINOV2_WEIGHTS_FILES) == len(CONFIGS)
    for name in CONFIGS:
        model = name.removeprefix("dinov2-").replace("-reg", "_reg4")
        e = DINOV2_WEIGHTS_FILES[f"dinov2_{model}_pretrain.pth"]
        arch = model.partition("_")[0]
        assert e.url == f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{model}_pretrain.pth"
        assert e.format == "torch-state-dict" and len(e.sha256) == 64 and e.note
    if importlib.util.find_spec("timm") is not None:
        from timm.models import get_pretrained_cfg

        for model, timm_name in (("vitl14", "vit_large_patch14_dinov2.lvd142m"),
                                 ("vitg14_reg4", "vit_giant_patch14_reg4_dinov2.lvd142m")):
            assert get_pretrained_cfg(timm_name).url == DINOV2_WEIGHTS_FILES[f"dinov2_{model}_pretrain.pth"].url


@pytest.fixture(scope="module")
def vits14_weights(tmp_path_factory: pytest.TempPathFactory) -> CanonicalWeights:
    """Synthetic weights of the real ViT-S/14 graph (22M parameters), as a canonical file."""
    from fidkit.archs.synthetic import write_synthetic_weights

    path = write_synthetic_weights(vit_graph(CONFIGS["dinov2-vits14"]),
                                   tmp_path_factory.mktemp("vits14") / "vits14.npz", size=(224, 224), n_images=1)
    return CanonicalWeights(str(path), "synthetic", path.name, official=False)


def _vits14_features(runtime: str, weights: CanonicalWeights) -> np.ndarray:
    import fidkit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic weights are not the official file
        ex = fidkit.extractor("dinov2-vits14", runtime=runtime, weights=weights.path)
    assert ex.policy.name == "dgm-eval" and ex.input_size == (224, 224)
    return ex.features(synthetic_images(2, (48, 64), seed=9))


@pytest.fixture(scope="module")
def vits14_reference(vits14_weights: CanonicalWeights) -> np.ndarray:
    return _vits14_features("numpy", vits14_weights)


def test_registered_vits14_extractor_on_every_runtime(vits14_weights: CanonicalWeights,
                                                      vits14_reference: np.ndarray, runtime: str) -> None:
    """`fidkit.extractor('dinov2-vits14', weights=...)`: the dgm-eval policy (Pillow bicubic on uint8, each
    runtime's integer path) and the 224 x 224 ViT-S/14 graph, against the numpy runtime, 2 images."""
    assert vits14_reference.shape == (2, 384) and np.isfinite(vits14_reference).all()
    if runtime != "numpy":
        got = _vits14_features(runtime, vits14_weights)
        assert _max_std(got, vits14_reference) < tolerance("dinov2", "full_vs_float64")


# ------------------------------------------------------------------------------------- policies


def test_dgm_eval_policy_is_bit_exact_to_torchvision_resize_on_pil() -> None:
    """dgm-eval's transform: TF.Resize((224, 224), BICUBIC) on the PIL image (then ToTensor)."""
    from PIL import Image

    images = synthetic_images(2, (61, 83), seed=4)
    ours = resize(images, "dgm-eval", (224, 224))
    for i, img in enumerate(images):
        ref = np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC))
        np.testing.assert_array_equal(ours[i], ref.astype(np.float32))
    if importlib.util.find_spec("torchvision") is not None:
        import torchvision.transforms as T

        tv = np.asarray(T.Resize((224, 224), T.InterpolationMode.BICUBIC)(Image.fromarray(images[0])))
        np.testing.assert_array_equal(ours[0], tv.astype(np.float32))


def test_edm2_policy_matches_torch_interpolate() -> None:
    """EDM2's resize_mode='torch': F.interpolate(uint8 -> float32, 224, bicubic, antialias=True)."""
    require_runtime("torch")
    import torch

    images = synthetic_images(2, (61, 83), seed=4)
    ref = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32),
                                          size=(224, 224), mode="bicubic", antialias=True)
    ours = resize(images, "edm2", (224, 224))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=0,
                               atol=tolerance("resize", "float_paths"))
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    imagenet = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    for name in ("edm2", "dgm-eval"):
        np.testing.assert_allclose(get_policy(name).normalize(x), imagenet, atol=1e-5)


# ------------------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_vitl14_forward() -> None:
    """The real ViT-L/14 graph at 224 x 224 (24 blocks, 257 tokens) with synthetic weights: torch (and
    timm, when installed) against the float64 reference, 2 images."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.network import load_module

    cfg = CONFIGS["dinov2-vitl14"]
    graph = vit_graph(cfg)
    params = synthetic_weights(graph, seed=0, size=cfg.input_size, n_images=1)
    x = _inputs(cfg, n=2)
    ref = _reference(cfg, params, x)
    with torch.inference_mode():
        ours = load_module(graph, params)(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())["features"]
    assert ref.shape == (2, 1024)
    assert _max_std(ours.numpy(), ref) < tolerance("dinov2", "full_vs_float64")
