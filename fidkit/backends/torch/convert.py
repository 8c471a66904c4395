"""Converters from PyTorch files to canonical weights: state dicts and NVIDIA's TorchScript Inception.

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth`` and torchvision's ``inception_v3_google-0cc3c7bd.pth`` are
  state dicts whose keys already are canonical names (torch-fidelity's ``FeatureExtractorInceptionV3`` uses
  pytorch-fid's module names); torchvision's ``AuxLogits`` head and every ``num_batches_tracked`` counter
  are dropped, since no fidkit graph reads them.
* DINOv2's torch hub checkpoints (``dinov2_vitl14_pretrain.pth`` ...) are state dicts named as
  `fidkit.archs.dinov2`'s graphs except ``cls_token``, ``pos_embed`` and ``register_tokens`` (renamed to
  ``<key>.value``) and the training-only ``mask_token`` (dropped): `canonical_from_dinov2`.
* OpenAI's CLIP archives (``ViT-B-32.pt``, ``ViT-L-14-336px.pt``) are TorchScript modules of the whole CLIP
  model (image and text towers, most weights float16): the image tower's ``visual.*`` keys become
  `fidkit.archs.clip`'s names, the rest is dropped: `canonical_from_openai_clip`.
* Hugging Face's CLIP checkpoints (``CLIPModel`` / ``CLIPVisionModelWithProjection`` safetensors, e.g.
  openai/clip-vit-large-patch14-336's ``model.safetensors``) hold ``vision_model.*`` and
  ``visual_projection.weight``, with separate q/k/v projections: `canonical_from_hf_clip`.
* NVIDIA's ``inception-2015-12-05.pt`` (StyleGAN2-ADA, clean-fid) is a TorchScript module converted from the
  same TF graph, named after the TF scopes (``layers.mixed_9.tower_mixed_conv.weight``); its conv blocks
  hold ``weight``, ``beta``, ``mean`` and ``var`` and no BatchNorm scale, so the canonical ``bn.weight`` is 1.
* NVIDIA's ``vgg16.pt`` (StyleGAN's precision/recall) is a TorchScript VGG16 named ``layers.conv1`` ...
  ``layers.fc3`` plus LPIPS weights ``lpips0`` ... ``lpips4`` (dropped): `canonical_from_nvidia_vgg16`.

torch is imported inside the functions only, and files are loaded with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import BackendUnavailableError, WeightsError
from ...registry import import_runtime
from ...weights import TF2015_SCOPES

_DROP_PREFIXES = ("AuxLogits.",)
_DROP_SUFFIXES = (".num_batches_tracked",)


def _torch() -> Any:
    return import_runtime("torch", "converting PyTorch weights")


def _to_numpy(name: str, t: object, path: str) -> np.ndarray:
    torch = _torch()
    if not isinstance(t, torch.Tensor):
        raise WeightsError(f"{path}: entry {name!r} is a {type(t).__name__}, not a tensor; expected a state "
                           f"dict of tensors")
    if not t.dtype.is_floating_point:
        raise WeightsError(f"{path}: entry {name!r} is {t.dtype}; expected floating-point parameters")
    return t.detach().to("cpu", torch.float32).contiguous().numpy().copy()


def nvidia_names() -> dict[str, str]:
    """Returns NVIDIA TorchScript parameter name -> canonical name, for every parameter of the 2015 graph."""
    out: dict[str, str] = {}
    for scope, node in TF2015_SCOPES.items():
        block, _, rest = scope.partition("/")
        if not rest:
            module = f"layers.{block}"
        elif block in ("mixed_9", "mixed_10"):  # its InceptionE flattens the nested scopes
            module = f"layers.{block}.{rest.replace('/', '_')}"
        else:
            module = f"layers.{block}.{rest.replace('/', '.')}"
        out[f"{module}.weight"] = f"{node}.conv.weight"
        out[f"{module}.beta"] = f"{node}.bn.bias"
        out[f"{module}.mean"] = f"{node}.bn.running_mean"
        out[f"{module}.var"] = f"{node}.bn.running_var"
    out["output.weight"] = "fc.weight"
    out["output.bias"] = "fc.bias"
    return out


def canonical_from_state_dict(state: dict[str, object], path: str = "state dict") -> dict[str, np.ndarray]:
    """Returns canonical arrays from a loaded state dict, in either canonical or NVIDIA naming."""
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors; expected "
                           f"a file written by torch.save(model.state_dict())")
    if "layers.conv.weight" in state:
        return _from_nvidia(state, path)
    if "layers.conv1.weight" in state and "layers.fc1.weight" in state:
        return canonical_from_nvidia_vgg16(state, path)
    if "cls_token" in state and "pos_embed" in state:
        return canonical_from_dinov2(state, path)
    if "visual.conv1.weight" in state:
        return canonical_from_openai_clip(state, path)
    if "vision_model.embeddings.patch_embedding.weight" in state:
        return canonical_from_hf_clip(state, path)
    return {k: _to_numpy(k, v, path) for k, v in state.items()
            if not k.startswith(_DROP_PREFIXES) and not k.endswith(_DROP_SUFFIXES)}


def _from_nvidia(state: dict[str, object], path: str) -> dict[str, np.ndarray]:
    names = nvidia_names()
    missing = sorted(set(names) - set(state))
    extra = sorted(k for k in set(state) - set(names) if not k.endswith(_DROP_SUFFIXES))
    if missing or extra:
        raise WeightsError(f"{path}: not NVIDIA's 2015 Inception TorchScript: missing {missing[:3]}"
                           f"{'…' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                           f"{'…' if len(extra) > 3 else ''}; expected inception-2015-12-05.pt")
    out = {canon: _to_numpy(src, state[src], path) for src, canon in names.items()}
    for canon in list(out):
        if canon.endswith(".bn.bias"):
            out[canon[: -len("bias")] + "weight"] = np.ones_like(out[canon])
    return out


def from_state_dict(path: str) -> dict[str, np.ndarray]:
    """Returns the canonical arrays of a ``torch.save``d state dict (pytorch-fid, torch-fidelity, torchvision)."""
    torch = _torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on bad files
        raise WeightsError(f"{path}: cannot load as a torch state dict ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); the file may be truncated — "
                           f"download it again") from None
    return canonical_from_state_dict(state, path)


def from_torchscript(path: str) -> dict[str, np.ndarray]:
    """Returns the canonical arrays of NVIDIA's TorchScript ``inception-2015-12-05.pt``."""
    torch = _torch()
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # torch.jit raises RuntimeError and others on bad archives
        raise WeightsError(f"{path}: cannot load as TorchScript ({type(exc).__name__}); the file may be "
                           f"truncated — download it again") from None
    return canonical_from_state_dict(dict(module.state_dict()), path)


#: DINOv2 hub checkpoints (``dinov2_vit*14[_reg4]_pretrain.pth``): the bare parameters and their canonical
#: names (`fidkit.archs.dinov2`); every other key already is a canonical name.
DINOV2_RENAMES = {"cls_token": "cls_token.value", "pos_embed": "pos_embed.value",
                  "register_tokens": "register_tokens.value"}
#: Keys of a DINOv2 hub checkpoint that no inference graph reads (the iBOT mask token of training).
DINOV2_DROP = ("mask_token",)


def canonical_from_dinov2(state: dict[str, object], path: str = "state dict") -> dict[str, np.ndarray]:
    """Returns canonical arrays from a DINOv2 torch hub state dict (facebookresearch/dinov2's
    ``DinoVisionTransformer``, ``block_chunks=0``): ``cls_token``, ``pos_embed`` and ``register_tokens``
    become ``<key>.value``, ``mask_token`` is dropped, the rest keeps its name."""
    if "patch_embed.proj.weight" not in state or "blocks.0.norm1.weight" not in state:
        chunked = any(k.startswith("blocks.0.0.") for k in state)
        hint = (" (its blocks are chunked, blocks.<chunk>.<i>.: a training checkpoint, not the hub backbone)"
                if chunked else "")
        raise WeightsError(f"{path}: has cls_token and pos_embed but not the DINOv2 hub backbone's "
                           f"patch_embed.proj.weight and blocks.0.norm1.weight{hint}; expected "
                           f"dinov2_vit*14[_reg4]_pretrain.pth")
    return {DINOV2_RENAMES.get(k, k): _to_numpy(k, v, path) for k, v in state.items()
            if k not in DINOV2_DROP and not k.endswith(_DROP_SUFFIXES)}



def from_safetensors(path: str) -> dict[str, np.ndarray]:
    """Returns the canonical arrays of a safetensors file (Hugging Face's CLIP ``model.safetensors``), read
    with the ``safetensors`` library onto the CPU."""
    _torch()
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise BackendUnavailableError(f"{path}: reading a safetensors file needs 'safetensors': pip install "
                                      f"safetensors") from None
    try:
        state = load_file(path, device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError, OSError, ... on bad files
        raise WeightsError(f"{path}: cannot load as safetensors ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); the file may be truncated — "
                           f"download it again") from None
    return canonical_from_state_dict(dict(state), path)


#: OpenAI CLIP keys (after ``visual.``) whose canonical name differs (`fidkit.archs.clip`); ``proj`` is also
#: transposed, and the two embeddings gain leading axes.
OPENAI_CLIP_RENAMES = {"class_embedding": "class_embedding.value",
                       "positional_embedding": "positional_embedding.value", "proj": "proj.weight"}


def _clip_tokens(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns ``out`` with the class embedding (D,) as (1, 1, D) and the position table (T, D) as (1, T, D)."""
    for key in ("class_embedding.value", "positional_embedding.value"):
        if key in out:
            out[key] = out[key].reshape(1, -1, out[key].shape[-1])
    return out


def canonical_from_openai_clip(state: dict[str, object], path: str = "state dict") -> dict[str, np.ndarray]:
    """Returns canonical arrays from an OpenAI CLIP state dict (openai/CLIP ``clip/model.py``: the TorchScript
    archive's ``state_dict()``): the ``visual.`` tower of a ViT model, renamed as `fidkit.archs.clip` names
    it, float16 weights cast to float32 (exact); the text tower, ``logit_scale`` and the integer
    ``input_resolution`` / ``context_length`` / ``vocab_size`` entries are dropped. Raises `WeightsError`
    for a ResNet CLIP (``visual.layer1``...: no fidkit graph) or a tower without ``visual.proj``."""
    if "visual.proj" not in state or "visual.class_embedding" not in state:
        kind = " (a ResNet CLIP: only the ViT models are described)" if "visual.layer1.0.conv1.weight" in state \
            else ""
        raise WeightsError(f"{path}: an OpenAI CLIP state dict without visual.proj and visual.class_embedding"
                           f"{kind}; expected ViT-B-32.pt or ViT-L-14-336px.pt")
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not key.startswith("visual."):
            continue
        name = key.removeprefix("visual.")
        name = OPENAI_CLIP_RENAMES.get(name, name)
        name = name.replace("attn.in_proj_weight", "attn.in_proj.weight").replace("attn.in_proj_bias",
                                                                                  "attn.in_proj.bias")
        arr = _to_numpy(key, value, path)
        out[name] = np.ascontiguousarray(arr.T) if name == "proj.weight" else arr
    return _clip_tokens(out)


#: Hugging Face CLIP vision-tower name pieces -> `fidkit.archs.clip`'s (after ``vision_model.``).
_HF_CLIP_PARTS = (("embeddings.patch_embedding.weight", "conv1.weight"),
                  ("embeddings.class_embedding", "class_embedding.value"),
                  ("embeddings.position_embedding.weight", "positional_embedding.value"),
                  ("pre_layrnorm.", "ln_pre."), ("post_layernorm.", "ln_post."),
                  ("encoder.layers.", "transformer.resblocks."), ("self_attn.out_proj.", "attn.out_proj."),
                  ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                  ("mlp.fc2.", "mlp.c_proj."))


def canonical_from_hf_clip(state: dict[str, object], path: str = "state dict") -> dict[str, np.ndarray]:
    """Returns canonical arrays from a Hugging Face CLIP state dict (transformers' ``CLIPModel`` or
    ``CLIPVisionModelWithProjection``): ``vision_model.*`` renamed as `fidkit.archs.clip` names it, the
    separate ``q_proj`` / ``k_proj`` / ``v_proj`` of each layer stacked into ``attn.in_proj`` (q | k | v, as
    ``nn.MultiheadAttention`` packs them), ``visual_projection.weight`` as ``proj.weight``; the text tower,
    ``logit_scale`` and the ``position_ids`` buffer are dropped. Raises `WeightsError` without
    ``visual_projection.weight`` (a ``CLIPVisionModel`` has no projection: not the CMMD embedding)."""
    if "visual_projection.weight" not in state:
        raise WeightsError(f"{path}: a Hugging Face CLIP vision tower without visual_projection.weight "
                           f"(CLIPVisionModel, no projection); expected a CLIPModel or "
                           f"CLIPVisionModelWithProjection checkpoint")
    out: dict[str, np.ndarray] = {"proj.weight": _to_numpy("visual_projection.weight",
                                                           state["visual_projection.weight"], path)}
    qkv: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if not key.startswith("vision_model.") or key.endswith("position_ids"):
            continue
        name = key.removeprefix("vision_model.")
        for old, new in _HF_CLIP_PARTS:
            name = name.replace(old, new)
        for part in ("q", "k", "v"):
            marker = f".self_attn.{part}_proj."
            if marker in name:
                block, _, param = name.partition(marker)
                qkv.setdefault(f"{block}.attn.in_proj.{param}", {})[part] = _to_numpy(key, value, path)
                break
        else:
            out[name] = _to_numpy(key, value, path)
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"{path}: {name} lacks {sorted({'q', 'k', 'v'} - set(parts))} projections; "
                               f"the checkpoint is incomplete — download it again")
        out[name] = np.concatenate([parts["q"], parts["k"], parts["v"]])
    return _clip_tokens(out)


def nvidia_vgg16_names() -> dict[str, str]:
    """Returns NVIDIA's ``vgg16.pt`` parameter name -> canonical (torchvision ``vgg16``) name: ``layers.conv<i>``
    is the i-th convolution (``features.<j>``), ``layers.fc1/2/3`` are ``classifier.0/3/6``, as genforce's
    ``models/perceptual_model.py`` maps the same file."""
    from ...archs.vgg16 import conv_names

    out: dict[str, str] = {}
    for i, canon in enumerate(conv_names(), start=1):
        out[f"layers.conv{i}.weight"], out[f"layers.conv{i}.bias"] = f"{canon}.weight", f"{canon}.bias"
    for i, canon in ((1, "classifier.0"), (2, "classifier.3"), (3, "classifier.6")):
        out[f"layers.fc{i}.weight"], out[f"layers.fc{i}.bias"] = f"{canon}.weight", f"{canon}.bias"
    return out


#: Entries of NVIDIA's ``vgg16.pt`` that no fidkit graph reads: the LPIPS channel weights of its
#: ``return_lpips`` output (StyleGAN's perceptual path length).
NVIDIA_VGG16_DROP = tuple(f"lpips{i}" for i in range(5))


def canonical_from_nvidia_vgg16(state: dict[str, object], path: str = "state dict") -> dict[str, np.ndarray]:
    """Returns canonical arrays (`fidkit.archs.vgg16`) from the ``state_dict()`` of NVIDIA's TorchScript
    ``vgg16.pt`` (StyleGAN2-ADA / StyleGAN3 precision/recall): renamed by `nvidia_vgg16_names`, the LPIPS
    weights dropped. Raises `WeightsError` naming missing or unexpected entries."""
    names = nvidia_vgg16_names()
    missing = sorted(set(names) - set(state))
    extra = sorted(k for k in set(state) - set(names) if k not in NVIDIA_VGG16_DROP)
    if missing or extra:
        raise WeightsError(f"{path}: not NVIDIA's VGG16 TorchScript: missing {missing[:3]}"
                           f"{'…' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                           f"{'…' if len(extra) > 3 else ''}; expected vgg16.pt")
    return {canon: _to_numpy(src, state[src], path) for src, canon in names.items()}
