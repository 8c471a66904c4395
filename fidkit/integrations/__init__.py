"""Integrations of fidkit's statistics with training frameworks, one module per framework.

``fidkit.integrations.jax``: a pure, jit-able sufficient-statistics state (``init``, ``update``,
``merge``, ``psum``, ``finalize``) and ``score_sampler``, which scores a sampling function over devices.

This package imports nothing: each module imports its framework only when one of its functions is
called, so ``import fidkit`` (and ``import fidkit.integrations.<name>``) never imports a framework.
"""
