#!/usr/bin/env bash
# The main job on the shipped default: installs fidkit into .venv (core only: numpy/scipy/pillow; the
# MNIST extractor then runs on fidkit's numpy runtime, or on torch/jax/tf if installed) and scores the
# shipped MNIST test digits against a degraded copy of them. Offline; extra arguments go to `fidkit score`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
.venv/bin/python scripts/make_demo_images.py demo
.venv/bin/fidkit score demo/real.npy demo/fake.npy "$@"
