"""The JAX runtime."""
