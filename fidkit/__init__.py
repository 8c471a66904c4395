"""fidkit: FID, IS, KID, precision/recall and density/coverage that agree across PyTorch, TensorFlow and JAX.

Importing fidkit never imports torch, tensorflow or jax; a runtime is imported when an extractor on it
is built.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    BackendUnavailableError,
    FidkitError,
    FidkitWarning,
    InputError,
    NumericalError,
    ProvenanceMismatchError,
    WeightsError,
)
from .registry import (
    Extractor,
    ExtractorSpec,
    available_extractors,
    extractor,
    get_spec,
    register_extractor,
)

__all__ = [
    "__version__",
    "BackendUnavailableError",
    "Extractor",
    "ExtractorSpec",
    "FidkitError",
    "FidkitWarning",
    "InputError",
    "NumericalError",
    "ProvenanceMismatchError",
    "WeightsError",
    "available_extractors",
    "extractor",
    "get_spec",
    "register_extractor",
]
