"""The Keras side of `fidkit.adapters.from_keras`: a sub-model from the inputs to the chosen layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras

from ...adapters import parameters_sha256
from ...errors import InputError

#: Keras backend name -> fidkit runtime name.
_RUNTIMES = {"tensorflow": "tf", "jax": "jax", "torch": "torch", "numpy": "numpy"}


def _output(model: Any, layer_name: str, what: str) -> Any:
    if layer_name == "":
        return model.outputs[0]
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = [lyr.name for lyr in model.layers][:12]
        raise InputError(f"{what} {layer_name!r} is not a layer of Keras model {model.name!r}; its "
                         f"layers are {', '.join(repr(n) for n in names)} ('' is the model's output)"
                         ) from None
    try:
        return layer.output
    except (AttributeError, ValueError) as exc:
        raise InputError(f"{what} {layer_name!r} of model {model.name!r} has no symbolic output ({exc}); "
                         f"build the model functionally or as Sequential with an Input shape") from None


def keras_runner(model: Any, layer_name: str, logits_layer: str | None
                 ) -> tuple[Callable[[Any], Mapping[str, Any]], str, str,
                            tuple[int | None, int | None, int | None]]:
    """Returns (run, parameters digest, runtime, input (H, W, C)) for a built Keras model."""
    if not isinstance(model, keras.Model):
        raise InputError(f"from_keras expects a keras.Model, received {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        raise InputError(f"Keras model {model.name!r} must have exactly one (image) input and be built; "
                         f"found {0 if not inputs else len(inputs)}")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4:
        raise InputError(f"Keras model {model.name!r} takes input of shape {shape}; expected images "
                         f"(batch, height, width, channels)")
    outputs = {"features": _output(model, layer_name, "layer_name")}
    if logits_layer is not None:
        outputs["logits"] = _output(model, logits_layer, "logits_layer")
    sub = keras.Model(inputs, list(outputs.values()))
    keys = list(outputs)
    digest = parameters_sha256((f"{i}:{w.path}", keras.ops.convert_to_numpy(w))
                               for i, w in enumerate(model.weights))
    runtime = _RUNTIMES.get(keras.backend.backend(), keras.backend.backend())

    def run(x: Any) -> dict[str, Any]:
        out = sub(x, training=False)
        if not isinstance(out, (list, tuple)):
            out = [out]
        return {k: keras.ops.reshape(v, (v.shape[0], -1)) for k, v in zip(keys, out, strict=True)}

    return run, digest, runtime, shape[1:]
