"""CLIP image-encoder throughput, images/s: fidkit (torch, tf, jax) beside open_clip and transformers.

Same synthetic weights (`fidkit.archs.synthetic`, rounded to float16 values as OpenAI's archives hold them)
loaded into each implementation, same images, same run, CPU, batch 8 of 224 x 224 uint8 images (no resize:
the 'clip' policy's geometry is the identity there). Each side normalises with CLIP's mean/std and runs the
image tower to the projected class token:

* ``small``: the small ViT-B/32 configuration of tests/test_clip.py (width 128, 2 blocks, patch 32);
* ``vitb32``: the real ViT-B/32 (width 768, 12 blocks, 50 tokens, 88M parameters), clean-fid's CLIP-FID
  network.

fidkit runs `fidkit.extraction.Extractor.features` (its preprocess and network); open_clip its CLIP built by
``build_model_from_openai_state_dict`` (what ``load_openai_model`` builds from ``ViT-B-32.pt``),
``encode_image``; transformers ``CLIPVisionModelWithProjection`` (sdpa attention), ``image_embeds``.

Run: ``pytest benchmarks/test_bench_clip.py --benchmark-columns=mean,rounds --benchmark-group-by=group``;
each benchmark's ``extra_info`` holds images/s from the mean and from the best round. Runtimes and peers that
are not installed are skipped.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  (before tensorflow, always)
    import torchvision  # noqa: F401  (imports torch._dynamo, which segfaults after tensorflow)

from fidkit.archs.clip import CONFIGS, CLIPConfig, clip_graph
from fidkit.archs.synthetic import synthetic_images, synthetic_weights
from fidkit.extraction import Extractor, assemble, builtin_convention
from fidkit.extractors import GRAPH_BUILDERS
from fidkit.registry import RUNTIME_MODULES, ExtractorSpec, load_object
from fidkit.resize import get_policy
from fidkit.weights import CanonicalWeights, save_canonical

BATCH = 8
IMAGES = synthetic_images(BATCH, (224, 224), seed=31)
SMALL = CLIPConfig("small-b32", 128, 2, 2, 32, 224, 64)
CASES = {"small": SMALL, "vitb32": CONFIGS["clip-vitb32"]}
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def small_graph():
    return clip_graph(SMALL)


@pytest.fixture(scope="module")
def params() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for case, cfg in CASES.items():
        p = synthetic_weights(clip_graph(cfg), seed=4, size=(224, 224), n_images=1)
        out[case] = {k: v.astype(np.float16).astype(np.float32) for k, v in p.items()}
    return out


def _fidkit(runtime: str, case: str, params: dict, tmp: Path) -> Extractor:
    if importlib.util.find_spec(RUNTIME_MODULES[runtime]) is None:
        pytest.skip(f"{runtime} not installed")
    cfg = CASES[case]
    path = tmp / f"{case}.npz"
    digest = save_canonical(params[case], path)
    weights = CanonicalWeights(str(path), digest, path.name, official=False)
    arch = "fidkit.archs.clip:clip_vitb32" if case == "vitb32" else f"{__name__}:small_graph"
    spec = ExtractorSpec(name=cfg.name, feature_dim=cfg.embed_dim, logits_dim=None, input_size=(224, 224),
                         policy="clip", builders=GRAPH_BUILDERS, arch=arch)
    pol = get_policy("clip")
    net = load_object(spec.builders[runtime])(spec=spec, weights=weights, device="cpu")
    return assemble(spec, runtime, "cpu", pol, builtin_convention(spec, pol, net.layout), net,
                    weights_sha256=digest, weights_source=path.name)


def _run(benchmark, fn: Callable[[], object], group: str, label: str) -> None:
    fn()  # build, trace, compile: not part of the steady state
    benchmark.group = group
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)
    benchmark.extra_info["impl"] = label
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = round(BATCH / benchmark.stats.stats.mean, 2)
        # the best round too: on a shared CPU the mean measures the neighbours as much as the code
        benchmark.extra_info["images_per_s_best"] = round(BATCH / benchmark.stats.stats.min, 2)


def _normalised(torch):
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return (x - torch.from_numpy(MEAN).view(1, 3, 1, 1)) / torch.from_numpy(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bench_fidkit(benchmark, params, tmp_path: Path, runtime: str, case: str) -> None:
    ex = _fidkit(runtime, case, params, tmp_path)
    _run(benchmark, lambda: ex.features(IMAGES), case, f"fidkit {runtime}")


def _openai_state(p: dict[str, np.ndarray], cfg: CLIPConfig, torch) -> dict:
    """Canonical arrays under OpenAI's names, with the small text tower open_clip's builder needs."""
    sd = {}
    for k, v in p.items():
        name = {"class_embedding.value": "class_embedding", "positional_embedding.value": "positional_embedding",
                "proj.weight": "proj"}.get(k, k)
        name = name.replace("attn.in_proj.weight", "attn.in_proj_weight").replace("attn.in_proj.bias",
                                                                                    "attn.in_proj_bias")
        v = v.T if k == "proj.weight" else v.reshape(-1) if k.startswith("class") else \
            v[0] if k.startswith("positional") else v
        sd[f"visual.{name}"] = torch.from_numpy(np.ascontiguousarray(v))
    tw, pre = 64, "transformer.resblocks.0."
    z = torch.zeros
    sd.update({"positional_embedding": z(8, tw), "text_projection": z(tw, cfg.embed_dim),
               "logit_scale": torch.tensor(4.6), "token_embedding.weight": z(16, tw),
               "ln_final.weight": z(tw), "ln_final.bias": z(tw)})
    for n, shape in (("attn.in_proj_weight", (3 * tw, tw)), ("attn.in_proj_bias", (3 * tw,)),
                     ("attn.out_proj.weight", (tw, tw)), ("attn.out_proj.bias", (tw,)), ("ln_1.weight", (tw,)),
                     ("ln_1.bias", (tw,)), ("mlp.c_fc.weight", (4 * tw, tw)), ("mlp.c_fc.bias", (4 * tw,)),
                     ("mlp.c_proj.weight", (tw, 4 * tw)), ("mlp.c_proj.bias", (tw,)), ("ln_2.weight", (tw,)),
                     ("ln_2.bias", (tw,))):
        sd[pre + n] = z(shape)
    return sd


@pytest.mark.peers
@pytest.mark.parametrize("case", sorted(CASES))
def test_bench_open_clip(benchmark, params, case: str) -> None:
    pytest.importorskip("open_clip")
    import torch
    from open_clip.model import build_model_from_openai_state_dict

    cfg = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model_from_openai_state_dict(_openai_state(params[case], cfg, torch)).float().eval()

    def run() -> object:
        with torch.inference_mode():
            return model.encode_image(_normalised(torch)).numpy()

    _run(benchmark, run, case, "open_clip")


@pytest.mark.peers
@pytest.mark.parametrize("case", sorted(CASES))
def test_bench_transformers(benchmark, params, case: str) -> None:
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from fidkit.backends.torch.convert import _HF_CLIP_PARTS

    cfg = CASES[case]
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=cfg.width, intermediate_size=4 * cfg.width, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, image_size=224, patch_size=cfg.patch, projection_dim=cfg.embed_dim,
        hidden_act="quick_gelu", layer_norm_eps=1e-5)).eval()
    state = {}
    for k, v in params[case].items():
        if k == "proj.weight":
            state["visual_projection.weight"] = v
        elif ".attn.in_proj." in k:
            block, _, param = k.partition(".attn.in_proj.")
            block = block.replace("transformer.resblocks.", "encoder.layers.")
            for part, chunk in zip("qkv", np.split(v, 3), strict=True):
                state[f"vision_model.{block}.self_attn.{part}_proj.{param}"] = chunk
        else:
            name = k
            for hf_piece, canonical_piece in _HF_CLIP_PARTS:
                name = name.replace(canonical_piece, hf_piece)
            state[f"vision_model.{name}"] = v.reshape(-1) if k.startswith("class") else \
                v[0] if k.startswith("positional") else v
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)

    def run() -> object:
        with torch.inference_mode():
            return model(pixel_values=_normalised(torch)).image_embeds.numpy()

    _run(benchmark, run, case, "transformers")
