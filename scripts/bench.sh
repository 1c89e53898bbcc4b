#!/usr/bin/env bash
# The native benchmark (BENCHMARKS.md): axiscope CPU with 1 and 2 threads next to llama.cpp
# (llama-cpp-python, same GGUF, same 128-token prompt), interleaved, 5 repetitions each, plus
# the cost of recording every layer's activations. Writes target/bench/results.{json,md,svg}.
#
# Usage: scripts/bench.sh [options of scripts/bench/run.py]   e.g. --reps 3, --threads 1,
#        --only axiscope-cpu-1t,llamacpp-cpu-1t, --bundle B.axb (capping overhead)
#        scripts/bench.sh --browser [options of scripts/bench/browser.mjs]: the in-browser part
#        only (axiscope's ?bench page next to wllama in headless Chromium), merged into
#        target/bench/results.{json,md,svg}
#        scripts/bench.sh --all: the native part with its defaults, then the browser part
# Steps: release build of the CLI, the model (scripts/fetch_model.sh), the llama.cpp venv
# (scripts/llamacpp_env.sh, a ~8 min build the first time), then the runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

fail() { echo "bench: error: $*" >&2; exit 1; }

# The browser part: release web build, wllama from npm (scripts/bench/browser/package-lock.json),
# then the runs in a session of their own (its CPU time is what the busy rule counts as the
# benchmark's own), and the merge into results.json.
browser_part() {
  command -v node >/dev/null || fail "node not found (scripts/setup.sh)"
  scripts/build_web.sh || fail "scripts/build_web.sh failed (see above)"
  (cd scripts/bench/browser && npm ci --no-audit --no-fund) \
    || fail "npm ci in scripts/bench/browser failed (needs the npm registry)"
  mkdir -p target/bench
  setsid node scripts/bench/browser.mjs --out target/bench "$@" || fail "the browser benchmark failed (see above)"
  python3 scripts/bench/merge_browser.py target/bench
}

if [ "${1:-}" = "--browser" ]; then
  shift
  browser_part "$@"
  exit 0
fi
ALL=0
if [ "${1:-}" = "--all" ]; then
  shift
  ALL=1
fi

command -v cargo >/dev/null || fail "cargo not found (install Rust 1.95 with rustup; scripts/setup.sh)"
command -v python3 >/dev/null || fail "python3 not found (apt-get install python3 python3-venv)"

echo "bench: building the release CLI"
cargo build --release --bin axiscope || fail "cargo build --release --bin axiscope failed (see above)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p target/bench
# A private copy: with a shared CARGO_TARGET_DIR another checkout's build may replace
# release/axiscope while the benchmark runs.
cp "$TARGET_DIR/release/axiscope" target/bench/axiscope

scripts/fetch_model.sh || fail "the model is missing and scripts/fetch_model.sh could not get it"

LLAMA_PY="$(scripts/llamacpp_env.sh | tail -n 1)" \
    || fail "scripts/llamacpp_env.sh could not set up llama-cpp-python (see above)"

python3 scripts/bench/run.py --axiscope target/bench/axiscope \
    --llamacpp-python "$LLAMA_PY" --out target/bench "$@"
if [ "$ALL" = 1 ]; then
  browser_part
fi
