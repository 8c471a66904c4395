#!/usr/bin/env bash
# Creates .venv with every runtime and peer library at the versions pinned in constraints.txt, then runs
# the test suite (arguments go to pytest).
#
# FIDKIT_TEST_ISA=avx2 runs the tests with every runtime's CPU kernels capped to AVX2, so that the float32
# tolerances (tests/tolerances.toml) are checked against a second set of kernels and summation orders,
# as on an older or newer CPU. The knobs, for the pinned versions (each checked below before the tests):
#   torch  ATEN_CPU_CAPABILITY=avx2        ATen's own kernels (BatchNorm, pooling, means, elementwise)
#          ONEDNN_MAX_CPU_ISA=AVX2         its oneDNN (convolutions)
#          MKL_ENABLE_INSTRUCTIONS=AVX2    its MKL sgemm (dense layers) on Intel CPUs; MKL ignores it on AMD
#   tf     ONEDNN_MAX_CPU_ISA=AVX2         its oneDNN (convolutions, matmuls; TF_ENABLE_ONEDNN_OPTS is on by
#                                          default on x86); its Eigen kernels are compiled for one fixed ISA
#   jax    XLA_FLAGS=--xla_cpu_max_isa=AVX2 XLA's generated code (reductions, elementwise fusions)
#          --xla_cpu_experimental_ynn_fusion_type=  YNNPACK (the default for convolutions, dots and
#                                          reductions) picks its kernels from the CPU and has no cap, so the
#                                          capped run turns it off: XLA then convolves and multiplies with
#                                          Eigen on oneDNN's sgemm, which ONEDNN_MAX_CPU_ISA caps
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FIDKIT_VENV:-.venv}
PIN=(-c constraints.txt)
if [ "${FIDKIT_TEST_INSTALL:-1}" != 0 ]; then  # 0: the venv is already installed (.ci/run's second pass)
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade "${PIN[@]}" pip
  PIN+=(--build-constraint constraints.txt)  # the upgraded pip knows it: fidkit's build env is pinned too
  "$VENV/bin/python" -m pip install -q "${PIN[@]}" torch torchvision tensorflow-cpu jax jaxlib
  "$VENV/bin/python" -m pip install -q "${PIN[@]}" -e '.[dev,peers]'
fi
export FIDKIT_TEST_RUNTIMES=${FIDKIT_TEST_RUNTIMES:-torch,tf,jax}

case "${FIDKIT_TEST_ISA:-}" in
  "") ;;
  avx2)
    [ "$(uname -m)" = x86_64 ] || { echo "fidkit: FIDKIT_TEST_ISA=avx2 caps x86-64 kernels; this is $(uname -m)" >&2; exit 2; }
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_max_isa=AVX2 --xla_cpu_experimental_ynn_fusion_type="
    # A knob that a runtime ignores would make this run a copy of the normal one: check each took effect.
    py="$VENV/bin/python"
    cap=$("$py" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')
    [ "$cap" = AVX2 ] || { echo "fidkit: ATEN_CPU_CAPABILITY=avx2 ignored: torch uses $cap" >&2; exit 1; }
    for rt in torch tf; do
      case $rt in
        torch) code='import torch; torch.nn.functional.conv2d(torch.ones(1, 64, 35, 35), torch.ones(64, 64, 3, 3))' ;;
        tf) code='import tensorflow as tf; tf.matmul(tf.ones((64, 64)), tf.ones((64, 64)))' ;;
      esac
      isa=$(ONEDNN_VERBOSE=1 TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "$code" 2>&1 | grep -m1 -o 'cpu,isa:.*' || true)
      [ "$isa" = "cpu,isa:Intel AVX2" ] || { echo "fidkit: ONEDNN_MAX_CPU_ISA=AVX2 ignored by $rt's oneDNN (${isa:-no report})" >&2; exit 1; }
    done
    # XLA aborts on a flag it does not know; the HLO shows whether YNNPACK fusions are gone
    hlo=$("$py" -c 'import jax, jax.numpy as jnp; f = jax.jit(lambda a: jnp.sum(a @ a, 0))
print(f.lower(jnp.ones((64, 64))).compile().as_text())')
    if grep -q ynn_fusion <<<"$hlo"; then echo "fidkit: XLA still uses YNNPACK fusions" >&2; exit 1; fi
    echo "fidkit: kernels capped to AVX2 (torch: ATen $cap, oneDNN AVX2; tf: oneDNN AVX2; jax: XLA AVX2, no YNNPACK)"
    ;;
  *) echo "fidkit: FIDKIT_TEST_ISA=${FIDKIT_TEST_ISA} unknown; expected avx2 (or unset: the machine's best)" >&2; exit 2 ;;
esac

set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "fidkit: pytest collected no tests; that is a failure" >&2; exit 1; fi
exit "$rc"
