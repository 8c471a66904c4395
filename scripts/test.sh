#!/usr/bin/env bash
# Creates .venv with every runtime and peer library, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FIDKIT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 tensorflow-cpu jax jaxlib
"$VENV/bin/python" -m pip install -q -e '.[dev,peers]'
export FIDKIT_TEST_RUNTIMES=${FIDKIT_TEST_RUNTIMES:-torch,tf,jax}
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "fidkit: pytest collected no tests; that is a failure" >&2; exit 1; fi
exit "$rc"
