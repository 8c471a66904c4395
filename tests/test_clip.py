"""CLIP (fidkit/archs/clip.py): the image towers on every runtime, against open_clip (which reads OpenAI's
TorchScript archive), transformers' CLIPVisionModelWithProjection (which reads Hugging Face's safetensors) and
clean-fid's own CLIP-FID code; the two converters; the 'clip' and 'cmmd' input policies against torchvision,
Pillow and open_clip; the offline errors.

Small networks of the same code (`CLIPConfig` with 2 blocks of width 128) keep the conformance tests fast, at
the real input sizes and patches (224 / 32 and 336 / 14); the registered ViT-B/32 runs on every runtime with
synthetic weights, and ViT-L/14@336px once, marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.archs.clip import CONFIGS, CLIPConfig, clip_graph, clip_vitb32, clip_vitl14_336
from fidkit.archs.synthetic import synthetic_images, synthetic_weights
from fidkit.backends.numpy.network import run_graph
from fidkit.registry import get_spec, load_object
from fidkit.resize import geometry, get_policy, resize

#: ViT-B/32's patch and input, 2 heads of 64 (open_clip derives heads = width // 64 from the archive).
TINY_B = CLIPConfig("tiny-b32", 128, 2, 2, 32, 224, 64)
#: ViT-L/14@336's patch and input (577 tokens), L2-normalised as CMMD's embedding.
TINY_L = CLIPConfig("tiny-l14-336", 128, 2, 2, 14, 336, 32, normalize=True)
CASES = {"b32": TINY_B, "l14-336": TINY_L}
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def tiny_b_graph():
    return clip_graph(TINY_B)


def tiny_l_graph():
    return clip_graph(TINY_L)


def _params(cfg: CLIPConfig) -> dict[str, np.ndarray]:
    """Synthetic weights rounded to float16 values, as OpenAI's archives hold them (exact in float32)."""
    p = synthetic_weights(clip_graph(cfg), seed=2, size=(cfg.image_size,) * 2, n_images=2)
    return {k: v.astype(np.float16).astype(np.float32) for k, v in p.items()}


def _inputs(cfg: CLIPConfig, n: int = 3) -> np.ndarray:
    """Normalised network input (NHWC float32): synthetic images through CLIP's normalisation."""
    x = synthetic_images(n, (cfg.image_size,) * 2, seed=7).astype(np.float32) / np.float32(255)
    return ((x - CLIP_MEAN) / CLIP_STD).astype(np.float32)


def _reference(cfg: CLIPConfig, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return run_graph(clip_graph(cfg), {k: v.astype(np.float64) for k, v in params.items()}, x)["features"]


def _max_std(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / ref.std())


def _nchw(torch, x: np.ndarray):
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------- synthetic files in the real formats


def openai_state_dict(params: dict[str, np.ndarray], cfg: CLIPConfig, torch) -> dict:
    """The canonical arrays under OpenAI's CLIP names (clip/model.py), with a small text tower and the three
    integer entries of the released archives; float16 where OpenAI's ``convert_weights`` casts (conv and
    linear weights and biases, attention projections, ``proj``, ``text_projection``), float32 elsewhere."""
    from fidkit.backends.torch.convert import OPENAI_CLIP_RENAMES

    back = {v: k for k, v in OPENAI_CLIP_RENAMES.items()}
    sd = {}
    for k, v in params.items():
        name = back.get(k, k).replace("attn.in_proj.weight", "attn.in_proj_weight")
        name = name.replace("attn.in_proj.bias", "attn.in_proj_bias")
        if k == "proj.weight":
            v = v.T
        elif k in ("class_embedding.value", "positional_embedding.value"):
            v = v.reshape(-1) if k.startswith("class") else v[0]
        half = k.startswith(("conv1", "proj")) or ".attn." in k or ".mlp." in k
        sd[f"visual.{name}"] = torch.from_numpy(np.ascontiguousarray(v)).to(torch.float16 if half else
                                                                           torch.float32)
    rng = np.random.default_rng(0)
    tw, ctx, vocab = 64, 8, 16

    def t(*shape: int):
        return torch.from_numpy((0.02 * rng.standard_normal(shape)).astype(np.float16))

    pre = "transformer.resblocks.0."
    sd.update({"positional_embedding": t(ctx, tw).float(), "text_projection": t(tw, cfg.embed_dim),
               "logit_scale": torch.tensor(4.6052), "token_embedding.weight": t(vocab, tw),
               "ln_final.weight": torch.ones(tw), "ln_final.bias": torch.zeros(tw),
               pre + "attn.in_proj_weight": t(3 * tw, tw), pre + "attn.in_proj_bias": t(3 * tw),
               pre + "attn.out_proj.weight": t(tw, tw), pre + "attn.out_proj.bias": t(tw),
               pre + "ln_1.weight": torch.ones(tw), pre + "ln_1.bias": torch.zeros(tw),
               pre + "mlp.c_fc.weight": t(4 * tw, tw), pre + "mlp.c_fc.bias": t(4 * tw),
               pre + "mlp.c_proj.weight": t(tw, 4 * tw), pre + "mlp.c_proj.bias": t(tw),
               pre + "ln_2.weight": torch.ones(tw), pre + "ln_2.bias": torch.zeros(tw),
               "input_resolution": torch.tensor(cfg.image_size), "context_length": torch.tensor(ctx),
               "vocab_size": torch.tensor(vocab)})
    return sd


def write_openai_archive(sd: dict, path: Path, torch) -> Path:
    """A TorchScript archive whose ``state_dict()`` is ``sd``, as OpenAI's ``ViT-*.pt`` files are (a scripted
    module of the whole model: ``torch.jit.load(path).state_dict()`` is what openai/CLIP's and open_clip's
    loaders, and fidkit's converter, read; the integer entries are buffers)."""

    class Root(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Root()
    for key, value in sd.items():
        *path_parts, leaf = key.split(".")
        module = root
        for part in path_parts:
            if part not in module._modules:
                module.add_module(part, torch.nn.Module())
            module = module._modules[part]
        if value.is_floating_point() and value.ndim:
            module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
        else:
            module.register_buffer(leaf, value)
    torch.jit.save(torch.jit.script(root), str(path))
    return path


def hf_state_dict(params: dict[str, np.ndarray], torch, text: bool = True) -> dict:
    """The canonical arrays under transformers' CLIP names (CLIPModel / CLIPVisionModelWithProjection):
    q, k and v split, the class embedding (D,), the position table (T, D); with a stub of the text tower."""
    from fidkit.backends.torch.convert import _HF_CLIP_PARTS

    sd = {}
    for k, v in params.items():
        if k == "proj.weight":
            sd["visual_projection.weight"] = v
            continue
        if k.endswith(".attn.in_proj.weight") or k.endswith(".attn.in_proj.bias"):
            block, _, param = k.partition(".attn.in_proj.")
            block = block.replace("transformer.resblocks.", "encoder.layers.")
            for part, chunk in zip("qkv", np.split(v, 3), strict=True):
                sd[f"vision_model.{block}.self_attn.{part}_proj.{param}"] = chunk
            continue
        name = k
        for hf_piece, canonical_piece in _HF_CLIP_PARTS:
            name = name.replace(canonical_piece, hf_piece)
        if k == "class_embedding.value":
            v = v.reshape(-1)
        elif k == "positional_embedding.value":
            v = v[0]
        sd[f"vision_model.{name}"] = v
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    if text:
        out["text_projection.weight"] = torch.zeros(4, 4)
        out["text_model.final_layer_norm.weight"] = torch.ones(4)
        out["logit_scale"] = torch.tensor(2.6592)
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A synthetic ``ViT-B-32.pt``-like OpenAI archive of the small ViT-B/32 configuration."""
    require_runtime("torch")
    import torch

    params = _params(TINY_B)
    path = tmp_path_factory.mktemp("openai") / "ViT-tiny-32.pt"
    return write_openai_archive(openai_state_dict(params, TINY_B, torch), path, torch), params


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A synthetic Hugging Face CLIP ``model.safetensors`` of the small ViT-L/14@336 configuration."""
    require_runtime("torch")
    if importlib.util.find_spec("safetensors") is None:
        pytest.skip("safetensors is not installed")
    import torch
    from safetensors.torch import save_file

    params = _params(TINY_L)
    path = tmp_path_factory.mktemp("hf") / "model.safetensors"
    save_file(hf_state_dict(params, torch), str(path), metadata={"format": "pt"})
    return path, params


# ------------------------------------------------------------------------------------------ graphs


def test_released_configs_match_openai_clip() -> None:
    """openai/CLIP clip/model.py build_model on the released state dicts: ViT-B/32 width 768, 12 layers,
    patch 32, 224, embed 512; ViT-L/14@336px width 1024, 24 layers, patch 14, 336, embed 768; heads = w / 64."""
    b, l14 = CONFIGS["clip-vitb32"], CONFIGS["clip-vitl14-336"]
    assert (b.width, b.layers, b.heads, b.patch, b.image_size, b.embed_dim, b.normalize) == \
        (768, 12, 12, 32, 224, 512, False)
    assert (l14.width, l14.layers, l14.heads, l14.patch, l14.image_size, l14.embed_dim, l14.normalize) == \
        (1024, 24, 16, 14, 336, 768, True)
    shapes = clip_vitb32().param_shapes()
    # the visual.* entries of ViT-B-32.pt: 152 arrays, 87,849,216 parameters (open_clip's visual tower count)
    assert len(shapes) == 152 and sum(int(np.prod(s)) for s in shapes.values()) == 87_849_216
    assert shapes["positional_embedding.value"] == (1, 50, 768) and shapes["proj.weight"] == (512, 768)
    assert shapes["conv1.weight"] == (768, 3, 32, 32) and "conv1.bias" not in shapes
    shapes = clip_vitl14_336().param_shapes()
    assert len(shapes) == 296 and shapes["positional_embedding.value"] == (1, 577, 1024)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 304_293_888


def test_registered_specs_point_at_these_graphs() -> None:
    for name, cfg, policy in (("clip-vitb32", CONFIGS["clip-vitb32"], "clip"),
                              ("clip-vitl14-336", CONFIGS["clip-vitl14-336"], "cmmd")):
        spec = get_spec(name)
        graph = load_object(spec.arch)()
        assert graph.name == name and spec.feature_dim == cfg.embed_dim and spec.logits_dim is None
        assert spec.input_size == (cfg.image_size,) * 2 and spec.policy == policy
        assert set(graph.outputs) == {"features"}
    assert get_spec("clip-vitb32").weights == ("ViT-B-32.pt",)
    assert get_spec("clip-vitl14-336").weights == ("ViT-L-14-336px.pt",)


def test_l2_normalize_output_has_unit_norm() -> None:
    params, x = _params(TINY_L), _inputs(TINY_L, n=2)
    ref = _reference(TINY_L, params, x)
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------ runtimes and peers


def _run(runtime: str, cfg: CLIPConfig, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    graph = clip_graph(cfg)
    if runtime == "torch":
        import torch

        from fidkit.backends.torch.network import load_module

        with torch.inference_mode():
            return load_module(graph, params)(_nchw(torch, x))["features"].numpy()
    if runtime == "jax":
        import jax

        from fidkit.backends.jax.network import apply, to_jax_params

        return np.asarray(jax.jit(lambda p, v: apply(graph, p, v))(to_jax_params(graph, params), x)["features"])
    if runtime == "tf":
        import tensorflow as tf

        from fidkit.backends.tf.network import graph_module

        return graph_module(graph, params, (cfg.image_size,) * 2)(tf.constant(x))["features"].numpy()
    return _reference(cfg, params, x)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_runtime_matches_the_float64_reference(runtime: str, case: str) -> None:
    if runtime == "numpy":
        pytest.skip("numpy is the float64 reference itself")
    cfg = CASES[case]
    params, x = _params(cfg), _inputs(cfg)
    ref = _reference(cfg, params, x)
    got = _run(runtime, cfg, params, x)
    assert got.shape == (len(x), cfg.embed_dim) and got.dtype == np.float32
    assert _max_std(got, ref) < tolerance("clip", "tiny_vs_float64")


def _open_clip_model(path: Path):
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation, open_clip's QuickGELU notes
        return open_clip.load_openai_model(str(path), precision="fp32", device="cpu").eval()


@pytest.mark.peers
def test_open_clip_reads_the_archive_and_agrees(archive) -> None:
    """open_clip's load_openai_model builds its CLIP from the synthetic archive's state dict (as for the real
    ViT-B-32.pt) and encode_image agrees with fidkit's torch interpreter and the float64 reference."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip is not installed (a peer: pip install open_clip_torch)")
    import torch

    from fidkit.weights import convert

    path, params = archive
    x = _inputs(TINY_B)
    model = _open_clip_model(path)
    with torch.inference_mode():
        theirs = model.encode_image(_nchw(torch, x)).numpy()
    ref = _reference(TINY_B, convert(path), x)
    assert _max_std(theirs, ref) < tolerance("clip", "tiny_vs_float64")
    assert _max_std(_run("torch", TINY_B, params, x), theirs) < tolerance("clip", "tiny_cross_runtime")


@pytest.mark.peers
def test_transformers_vision_model_with_projection_agrees(hf_file) -> None:
    """transformers' CLIPVisionModelWithProjection (quick_gelu, eps 1e-5) loading the synthetic safetensors'
    vision tower strictly; image_embeds / its norm, as CMMD's PyTorch port computes its embedding."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (a peer: pip install transformers)")
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path, params = hf_file
    cfg = TINY_L
    config = CLIPVisionConfig(hidden_size=cfg.width, intermediate_size=4 * cfg.width,
                              num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                              image_size=cfg.image_size, patch_size=cfg.patch, projection_dim=cfg.embed_dim,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    model = CLIPVisionModelWithProjection(config).eval()
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith(("vision_model.", "visual_"))}
    model.load_state_dict(state, strict=True)
    x = _inputs(cfg)
    with torch.inference_mode():
        emb = model(pixel_values=_nchw(torch, x)).image_embeds
        theirs = (emb / torch.linalg.norm(emb, axis=-1, keepdims=True)).numpy()
    ref = _reference(cfg, params, x)
    assert _max_std(theirs, ref) < tolerance("clip", "tiny_vs_float64")
    assert _max_std(_run("torch", cfg, params, x), theirs) < tolerance("clip", "tiny_cross_runtime")


def _tiny_extractor(runtime: str, cfg: CLIPConfig, weights_path: Path, policy: str):
    """An extractor of a small configuration (this module's graphs) through `fidkit.extraction.assemble`."""
    from fidkit.extraction import assemble, builtin_convention
    from fidkit.extractors import GRAPH_BUILDERS
    from fidkit.registry import ExtractorSpec
    from fidkit.weights import CanonicalWeights, to_canonical

    canon, digest = to_canonical(weights_path)
    weights = CanonicalWeights(str(canon), digest, weights_path.name, official=False)
    this = sys.modules[__name__].__name__
    spec = ExtractorSpec(name=cfg.name, feature_dim=cfg.embed_dim, logits_dim=None,
                         input_size=(cfg.image_size,) * 2, policy=policy, builders=GRAPH_BUILDERS,
                         arch=f"{this}:{'tiny_b_graph' if cfg is TINY_B else 'tiny_l_graph'}")
    pol = get_policy(policy)
    net = load_object(spec.builders[runtime])(spec=spec, weights=weights, device="cpu")
    return assemble(spec, runtime, "cpu", pol, builtin_convention(spec, pol, net.layout), net,
                    weights_sha256=digest, weights_source=weights_path.name)


@pytest.mark.peers
def test_clean_fid_clip_features_agree(archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """clean-fid's own CLIP-FID code end to end (cleanfid/clip_features.py: img_preprocess_clip on each uint8
    image, then CLIP_fx: / 255, torchvision Normalize, encode_image), its ``clip.load`` answered with
    open_clip's model of the synthetic archive (the openai ``clip`` package is not on PyPI), against fidkit's
    extractor (the 'clip' policy and the graph) on uint8 images of three shapes."""
    for mod in ("open_clip", "cleanfid"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")
    import torch

    path, _ = archive
    stub = types.ModuleType("clip")
    stub.load = lambda name, device="cpu": (_open_clip_model(path), None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clip", stub)
    monkeypatch.delitem(sys.modules, "cleanfid.clip_features", raising=False)
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path))
    from cleanfid.clip_features import CLIP_fx, img_preprocess_clip

    fx = CLIP_fx("ViT-B/32", device="cpu")
    ex = _tiny_extractor("torch", TINY_B, path, "clip")
    for shape in ((61, 83), (300, 227), (224, 224)):
        images = synthetic_images(2, shape, seed=sum(shape))
        batch = np.stack([img_preprocess_clip(img) for img in images]).astype(np.float32)
        with torch.inference_mode():
            theirs = fx(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()).numpy()
        ours = ex.features(images)
        assert _max_std(ours, theirs) < tolerance("clip", "tiny_cross_runtime"), shape
    monkeypatch.delitem(sys.modules, "cleanfid.clip_features", raising=False)


# --------------------------------------------------------------------------------- converters


def test_openai_archive_converts_to_the_canonical_names(archive) -> None:
    from fidkit.weights import convert, detect_format

    path, params = archive
    assert detect_format(path) == "torchscript"
    arrays = convert(path)
    assert set(arrays) == set(params) == set(clip_graph(TINY_B).param_shapes())
    for k, v in params.items():
        np.testing.assert_array_equal(arrays[k], v)


def test_hf_safetensors_converts_to_the_canonical_names(hf_file) -> None:
    from fidkit.weights import convert, detect_format

    path, params = hf_file
    assert detect_format(path) == "safetensors"
    arrays = convert(path)
    assert set(arrays) == set(params) == set(clip_graph(TINY_L).param_shapes())
    for k, v in params.items():
        np.testing.assert_array_equal(arrays[k], v)


def test_converted_files_run_as_extractors(archive, hf_file, tmp_path: Path, runtime: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive through `to_canonical` (as --weights does) with the 'clip' policy (Pillow bicubic on uint8,
    shorter side then centre crop) and the safetensors with the 'cmmd' policy (square crop then Pillow
    bicubic), each runtime's preprocess and network against numpy's, on 2 images of 150 x 97."""
    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path))
    images = synthetic_images(2, (150, 97), seed=3)
    for (path, _), cfg, policy in ((archive, TINY_B, "clip"), (hf_file, TINY_L, "cmmd")):
        ref = _tiny_extractor("numpy", cfg, path, policy).features(images)
        assert ref.shape == (2, cfg.embed_dim)
        if runtime != "numpy":
            got = _tiny_extractor(runtime, cfg, path, policy).features(images)
            assert _max_std(got, ref) < tolerance("clip", "tiny_vs_float64")


def test_hf_safetensors_passed_explicitly_is_unofficial(hf_file, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face's file has no published digest: --weights converts it and records it as unofficial."""
    from fidkit.errors import FidkitWarning
    from fidkit.weights import resolve_weights

    monkeypatch.setenv("FIDKIT_HOME", str(tmp_path))
    path, params = hf_file
    with pytest.warns(FidkitWarning, match="unofficial"):
        w = resolve_weights(get_spec("clip-vitl14-336").weights, str(path))
    assert not w.official and set(w.load()) == set(params)


def test_truncated_safetensors_is_named(hf_file, tmp_path: Path) -> None:
    from fidkit.errors import WeightsError
    from fidkit.weights import convert, damage

    path, _ = hf_file
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in damage(cut)
    with pytest.raises(WeightsError, match="truncated"):
        convert(cut)


def test_converters_refuse_towers_they_cannot_describe() -> None:
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.convert import canonical_from_state_dict
    from fidkit.errors import WeightsError

    resnet = {"visual.conv1.weight": torch.zeros(4, 3, 3, 3), "visual.layer1.0.conv1.weight": torch.zeros(4, 4, 1, 1)}
    with pytest.raises(WeightsError, match="ResNet"):
        canonical_from_state_dict(resnet, "RN50.pt")
    no_projection = {"vision_model.embeddings.patch_embedding.weight": torch.zeros(8, 3, 14, 14)}
    with pytest.raises(WeightsError, match="visual_projection"):
        canonical_from_state_dict(no_projection, "clip-vision.safetensors")


def test_weights_entries_and_offline_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    """The registered files: OpenAI's URL with the SHA-256 in its path (as openai/CLIP's _download checks it),
    the Hugging Face file unpinned; offline, the extractor's error and `fidkit weights where` name the file,
    its URL and where to put it."""
    from fidkit.cli import main
    from fidkit.errors import WeightsError
    from fidkit.weights import WEIGHTS_FILES, cache_dir, resolve_weights

    for name in ("ViT-B-32.pt", "ViT-L-14-336px.pt"):
        e = WEIGHTS_FILES[name]
        assert e.url.split("/")[-2] == e.sha256 and e.url.endswith(f"/{name}") and e.format == "torchscript"
        assert e.size and ("clip cache", "~/.cache/clip") in e.also_in
    assert "clip-vit-large-patch14-336.safetensors" not in WEIGHTS_FILES  # nothing published to check it by
    if importlib.util.find_spec("open_clip") is not None:
        from open_clip.pretrained import get_pretrained_url

        assert get_pretrained_url("ViT-B-32", "openai") == WEIGHTS_FILES["ViT-B-32.pt"].url
        assert get_pretrained_url("ViT-L-14-336", "openai") == WEIGHTS_FILES["ViT-L-14-336px.pt"].url

    for var in ("FIDKIT_HOME", "HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    monkeypatch.delenv("FIDKIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError) as exc:
        resolve_weights(get_spec("clip-vitb32").weights, None)
    msg = str(exc.value)
    assert "ViT-B-32.pt" in msg and WEIGHTS_FILES["ViT-B-32.pt"].url in msg and "\n" not in msg
    assert str(cache_dir() / "ViT-B-32.pt") in msg
    assert main(["weights", "where", "clip-vitl14-336", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ViT-L-14-336px.pt"] and rows[0]["found"] is None
    assert str(tmp_path / "home" / ".cache" / "clip") in json.dumps(rows[0])


# ------------------------------------------------------------------------------------- policies


def test_clip_policy_is_bit_exact_to_torchvision_resize_and_center_crop() -> None:
    """openai/CLIP's _transform and clean-fid's img_preprocess_clip: Resize(224, BICUBIC) then CenterCrop(224)
    on the PIL image, on shapes whose crop offset is a half (227: Python's round gives 2), portrait,
    landscape, square and already 224."""
    from PIL import Image

    tv = pytest.importorskip("torchvision.transforms")
    t = tv.Compose([tv.Resize(224, interpolation=tv.InterpolationMode.BICUBIC), tv.CenterCrop(224)])
    for shape in ((61, 83), (83, 61), (227, 224), (224, 225), (300, 227), (100, 100), (224, 224), (57, 400)):
        images = synthetic_images(1, shape, seed=shape[0] + shape[1])
        ref = np.asarray(t(Image.fromarray(images[0])))
        np.testing.assert_array_equal(resize(images, "clip", (224, 224))[0], ref.astype(np.float32), str(shape))
    assert geometry(get_policy("clip"), (227, 224), (224, 224)).post_crop == (2, 0, 224, 224)


def test_cmmd_policy_is_bit_exact_to_cmmd_center_crop_and_resize() -> None:
    """CMMD's io_util._center_crop_and_resize: im.crop of the centred square at ((w - l) // 2, (h - l) // 2),
    then im.resize((336, 336), BICUBIC), on the PIL image."""
    from PIL import Image

    for shape in ((61, 83), (83, 60), (400, 336), (336, 336), (512, 512), (337, 1000)):
        images = synthetic_images(1, shape, seed=shape[0] * 3 + shape[1])
        im = Image.fromarray(images[0])
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        ref = np.asarray(im.crop((left, top, left + side, top + side)).resize((336, 336), Image.BICUBIC))
        np.testing.assert_array_equal(resize(images, "cmmd", (336, 336))[0], ref.astype(np.float32), str(shape))


@pytest.mark.parametrize("policy", ["clip", "cmmd"])
def test_crop_geometry_on_non_square_outputs(policy: str) -> None:
    """The crops generalise to any output: the aspect-keeping resize covers it (each side within one pixel of
    the exact scale), the box has the output's aspect ratio, and the result has the output's size."""
    pol = get_policy(policy)
    for (h, w) in ((61, 83), (83, 61), (100, 100), (17, 400)):
        for oh, ow in ((30, 40), (40, 30), (25, 25)):
            geo = geometry(pol, (h, w), (oh, ow))
            if policy == "clip":
                rh, rw = geo.resize_to
                assert rh >= oh and rw >= ow and min(rh - oh, rw - ow) == 0
                assert abs(rh / h - rw / w) <= 1.0 / min(h, w)
            else:
                t, left, bh, bw = geo.pre_crop or (0, 0, h, w)
                assert (bh == h or bw == w) and abs(bh * ow - bw * oh) <= max(oh, ow)
                assert t == (h - bh) // 2 and left == (w - bw) // 2
            out = resize(synthetic_images(1, (h, w), seed=1), pol, (oh, ow))
            assert out.shape == (1, oh, ow, 3)


@pytest.mark.parametrize("policy", ["clip", "cmmd"])
def test_crop_policies_agree_on_every_runtime(runtime: str, policy: str) -> None:
    """Each runtime's preprocess (its crop and its Pillow uint8 integer path) against numpy's on mixed shapes
    (a list of images): the integer path is exact, so the normalised inputs agree to float32 rounding."""
    from fidkit.extraction import InputConvention

    size = (224, 224) if policy == "clip" else (336, 336)
    pol = get_policy(policy)
    conv = InputConvention(layout="NHWC", input_size=size, mean=pol.mean, std=pol.std)
    images = [synthetic_images(1, s, seed=s[0])[0] for s in ((61, 83), (300, 227), (150, 150))]
    ref = load_object("fidkit.backends.numpy:preprocess")(pol, conv)(images)
    got = np.asarray(load_object(f"fidkit.backends.{runtime}:preprocess")(pol, conv)(images))
    assert got.shape == ref.shape == (3, *size, 3)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_clip_policy_matches_open_clips_transform() -> None:
    """open_clip's preprocess for the OpenAI weights (image_transform(224, is_train=False) with OPENAI_DATASET
    mean/std: Resize, CenterCrop, ToTensor, Normalize) against fidkit's numpy preprocess of the 'clip' policy,
    float32 arithmetic on both sides (normalisation only: the resize is exact)."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip is not installed")
    from open_clip import image_transform
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image

    from fidkit.extraction import InputConvention

    pol = get_policy("clip")
    np.testing.assert_allclose(np.array(pol.mean) / 255, OPENAI_DATASET_MEAN, rtol=1e-15)
    np.testing.assert_allclose(np.array(pol.std) / 255, OPENAI_DATASET_STD, rtol=1e-15)
    t = image_transform(224, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    conv = InputConvention(layout="NCHW", input_size=(224, 224), mean=pol.mean, std=pol.std)
    run = load_object("fidkit.backends.numpy:preprocess")(pol, conv)
    for shape in ((61, 83), (300, 227)):
        img = synthetic_images(1, shape, seed=5)
        ref = t(Image.fromarray(img[0])).numpy()
        np.testing.assert_allclose(run(img)[0], ref, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------- full size


@pytest.fixture(scope="module")
def vitb32_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Synthetic weights of the real ViT-B/32 graph (88M parameters), as a canonical file."""
    from fidkit.archs.synthetic import write_synthetic_weights

    path = tmp_path_factory.mktemp("vitb32") / "vitb32.npz"
    return str(write_synthetic_weights(clip_vitb32(), path, size=(224, 224), n_images=1))


def _vitb32_features(runtime: str, weights: str) -> np.ndarray:
    import fidkit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic weights are not the official file
        ex = fidkit.extractor("clip-vitb32", runtime=runtime, weights=weights)
    assert ex.policy.name == "clip" and ex.input_size == (224, 224)
    return ex.features(synthetic_images(2, (48, 64), seed=9))


@pytest.fixture(scope="module")
def vitb32_reference(vitb32_weights: str) -> np.ndarray:
    return _vitb32_features("numpy", vitb32_weights)


def test_registered_vitb32_extractor_on_every_runtime(vitb32_weights: str, vitb32_reference: np.ndarray,
                                                      runtime: str) -> None:
    """`fidkit.extractor('clip-vitb32', weights=...)`: the 'clip' policy and the 224 x 224 ViT-B/32 graph on
    each runtime against the numpy runtime, 2 images."""
    assert vitb32_reference.shape == (2, 512) and np.isfinite(vitb32_reference).all()
    if runtime != "numpy":
        got = _vitb32_features(runtime, vitb32_weights)
        assert _max_std(got, vitb32_reference) < tolerance("clip", "full_vs_float64")


@pytest.mark.slow
def test_full_size_vitl14_336_forward() -> None:
    """The real ViT-L/14@336px graph (24 blocks, 577 tokens) with synthetic weights: torch (and
    transformers, when installed) against the float64 reference, 1 image."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.network import load_module

    cfg = CONFIGS["clip-vitl14-336"]
    graph = clip_graph(cfg)
    params = synthetic_weights(graph, seed=0, size=(336, 336), n_images=1)
    x = _inputs(cfg, n=1)
    ref = _reference(cfg, params, x)
    with torch.inference_mode():
        ours = load_module(graph, params)(_nchw(torch, x))["features"].numpy()
    assert ref.shape == (1, 768)
    assert _max_std(ours, ref) < tolerance("clip", "full_vs_float64")
    if importlib.util.find_spec("transformers") is not None:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
            layer_norm_eps=1e-5)).eval()
        state = {k: v for k, v in hf_state_dict(params, torch, text=False).items()}
        model.load_state_dict(state, strict=True)
        with torch.inference_mode():
            emb = model(pixel_values=_nchw(torch, x)).image_embeds
        theirs = (emb / torch.linalg.norm(emb, axis=-1, keepdims=True)).numpy()
        assert _max_std(theirs, ref) < tolerance("clip", "full_vs_float64")
