"""The JAX side of `fidkit.adapters.from_jax`: jit a user's function and read its outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from ...adapters import parameters_sha256
from ...errors import InputError


def _outputs(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        if "features" not in value:
            raise InputError(f"the JAX function returned a mapping with keys {sorted(value)}; expected "
                             f"'features' (and optionally 'logits')")
        return {k: value[k] for k in ("features", "logits") if k in value}
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"the JAX function returned a sequence of {len(value)} values; expected "
                             f"features, or (features, logits)")
        return {"features": value[0], "logits": value[1]}
    return {"features": value}


def jax_runner(fn: Callable[..., Any], params: Any, jit: bool
               ) -> tuple[Callable[[Any], Mapping[str, Any]], str | None]:
    """Returns (run, parameters digest or None): run maps model input to {'features', 'logits'?}."""
    if not callable(fn):
        raise InputError(f"from_jax expects a function, received {type(fn).__name__}")
    digest = None
    if params is not None:
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        digest = parameters_sha256((jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in leaves)
    compiled = jax.jit(fn) if jit else fn
    args = () if params is None else (params,)

    def run(x: Any) -> dict[str, Any]:
        return {k: v.reshape(v.shape[0], -1) for k, v in _outputs(compiled(*args, x)).items()}

    return run, digest
