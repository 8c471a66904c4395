"""The torch side of `fidkit.adapters.from_torch`: run a user's module and read a submodule by forward hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ...adapters import parameters_sha256
from ...errors import InputError


def _submodule(module: torch.nn.Module, path: str, what: str) -> torch.nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n][:12]
        raise InputError(f"{what} {path!r} is not a submodule of {type(module).__name__}; expected a "
                         f"dotted path such as {', '.join(repr(n) for n in names)}"
                         f"{' ...' if len(names) == 12 else ''} ('' is the whole module)") from None


def _first_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise InputError(f"{what} returned {type(value).__name__}, not a tensor; hook a layer whose "
                     f"output is a tensor")


def torch_runner(module: Any, layer: str, logits_layer: str | None, device: str | None
                 ) -> tuple[Callable[[Any], Mapping[str, Any]], str, str]:
    """Returns (run, parameters digest, device): run maps the model's input tensor to {'features',
    'logits'?} as (N, d) tensors on the model's device (eval mode, no_grad, training flag restored)."""
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"from_torch expects a torch.nn.Module, received {type(module).__name__}")
    targets = {"features": _submodule(module, layer, "layer")}
    if logits_layer is not None:
        targets["logits"] = _submodule(module, logits_layer, "logits_layer")
    first = next(iter(module.parameters()), None)
    dev = torch.device(device) if device is not None else (first.device if first is not None
                                                           else torch.device("cpu"))
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    state = module.state_dict()
    digest = parameters_sha256((k, v.detach().cpu().numpy()) for k, v in state.items())

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def hook_for(key: str) -> Callable[..., None]:
            def hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
                captured[key] = _first_tensor(out, f"{key} layer")
            return hook

        handles = [mod.register_forward_hook(hook_for(key)) for key, mod in targets.items()]
        was_training = module.training
        try:
            module.eval()
            with torch.no_grad():
                module(x.to(device=dev, dtype=dtype))
        finally:
            module.train(was_training)
            for h in handles:
                h.remove()
        return {k: v.detach().reshape(v.shape[0], -1) for k, v in captured.items()}

    return run, digest, str(dev)
