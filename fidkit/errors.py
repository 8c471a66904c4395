"""The one family of errors fidkit raises; every message says what was expected, what was found, and what to do."""

from __future__ import annotations


class FidkitError(Exception):
    """Base class of every error fidkit raises on purpose."""


class InputError(FidkitError, ValueError):
    """An array, file or argument is not what it must be (NaN, wrong shape, wrong range, corrupt file)."""


class BackendUnavailableError(FidkitError, ImportError):
    """A runtime (torch, tf, jax) was asked for but cannot be imported."""


class ProvenanceMismatchError(FidkitError, ValueError):
    """Two statistics were computed under different extractors, weights or resize policies."""


class NumericalError(FidkitError, ArithmeticError):
    """A computation produced a value that cannot be trusted (non-finite, not PSD beyond rounding)."""


class WeightsError(FidkitError, OSError):
    """A weights file is missing, cannot be downloaded, or fails its SHA-256 check."""


class FidkitWarning(UserWarning):
    """Something moves the number (small sample, unknown provenance, unofficial weights) but is allowed."""
