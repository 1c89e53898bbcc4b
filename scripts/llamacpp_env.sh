#!/usr/bin/env bash
# Creates (or reuses) the Python venv that runs llama.cpp through llama-cpp-python.
# It is the independent reference for tests/fixtures and, later, the speed peer of the
# benchmarks, so it lives at a fixed place: target/llamacpp-venv under the repo root.
# Idempotent: a venv that already imports the pinned version, built with the same
# build options (recorded in the venv), is left as it is.
# Usage: scripts/llamacpp_env.sh          (prints the venv's python path on the last line)
# CMAKE_ARGS, if set, replaces the default build options below.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="0.3.36"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/llamacpp-venv"
PY="$VENV/bin/python"

die() { echo "llamacpp_env.sh: error: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 not found (install python3 and python3-venv)"

if [ ! -x "$PY" ]; then
    echo "creating venv at $VENV" >&2
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

# Default build: tuned for this CPU, but without AMX. These machines report AMX
# (amx_tile/amx_int8) yet the VM faults on the first tile instruction (ldtilecfg), and
# ggml uses AMX for Q4_0/Q4_1/Q8_0 weights, so a native build crashes in its first
# matmul. An explicit -mno-amx-* wins over -march=native whatever the order.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
BUILD_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'}"
# The build options are part of what "installed" means: a venv built with other
# CMAKE_ARGS is rebuilt rather than reused.
STAMP="$VENV/llamacpp-build-args"

have_version() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BUILD_ARGS" ] || return 1
    "$PY" - "$LLAMA_CPP_PYTHON_VERSION" <<'PYEOF' 2>/dev/null
import sys
import jinja2, numpy, llama_cpp
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
PYEOF
}

if have_version; then
    echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION already installed" >&2
else
    "$PY" -m pip install --quiet --upgrade pip \
        || die "could not upgrade pip in the venv (is PyPI reachable?)"
    # cmake and ninja come from PyPI so the build does not depend on system packages.
    "$PY" -m pip install --quiet jinja2 numpy cmake ninja \
        || die "could not install jinja2/numpy/cmake/ninja from PyPI"
    command -v cc >/dev/null || command -v gcc >/dev/null \
        || die "no C compiler (apt-get install build-essential)"
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source with CMAKE_ARGS=$BUILD_ARGS (many minutes on 2 cores)" >&2
    rm -f "$STAMP"
    CMAKE_ARGS="$BUILD_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$PY" -m pip install --force-reinstall --no-deps --no-binary llama-cpp-python --no-cache-dir \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" \
        || die "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION failed (see the pip output above)"
    # Its own dependencies (diskcache, typing-extensions), resolved normally.
    "$PY" -m pip install --quiet "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" \
        || die "could not install the dependencies of llama-cpp-python"
    echo "$BUILD_ARGS" > "$STAMP"
    have_version || die "llama-cpp-python installed but 'import llama_cpp' does not report $LLAMA_CPP_PYTHON_VERSION"
fi

echo "$PY"
