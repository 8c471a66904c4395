"""The version of fidkit, in one place (recorded in every provenance)."""

__version__ = "0.1.0"
