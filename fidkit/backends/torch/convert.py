"""Converters from PyTorch files to canonical weights: state dicts and NVIDIA's TorchScript Inception.

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth`` and torchvision's ``inception_v3_google-0cc3c7bd.pth`` are
  state dicts whose keys already are canonical names (torch-fidelity's ``FeatureExtractorInceptionV3`` uses
  pytorch-fid's module names); torchvision's ``AuxLogits`` head and every ``num_batches_tracked`` counter
  are dropped, since no fidkit graph reads them.
* DINOv2's torch hub checkpoints (``dinov2_vitl14_pretrain.pth`` ...) are state dicts named as
  `fidkit.archs.dinov2`'s graphs except ``cls_token``, ``pos_embed`` and ``register_tokens`` (renamed to
  ``<key>.value``) and the training-only ``mask_token`` (dropped): `canonical_from_dinov2`.
* NVIDIA's ``inception-2015-12-05.pt`` (StyleGAN2-ADA, clean-fid) is a TorchScript module converted from the
  same TF graph, named after the TF scopes (``layers.mixed_9.tower_mixed_conv.weight``); its conv blocks
  hold ``weight``, ``beta``, ``mean`` and ``var`` and no BatchNorm scale, so the canonical ``bn.weight`` is 1.

torch is imported inside the functions only, and files are loaded with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
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
    if "cls_token" in state and "pos_embed" in state:
        return canonical_from_dinov2(state, path)
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

