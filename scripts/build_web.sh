#!/usr/bin/env bash
# Release build of the web app into dist/ with Trunk (wasm-opt -Oz from npm binaryen 132,
# +simd128 from .cargo/config.toml; the model and any persona bundles are hard-linked into dist/
# by a Trunk hook).
# Expects scripts/setup.sh to have run; serve.sh and test.sh call both.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/tests/e2e/node_modules/.bin:$PATH"

start=$SECONDS
echo "build_web: trunk build --release (a cold build takes ~8 min on 2 cores)"
# --offline: Trunk must use the tools on PATH and never reach for GitHub.
trunk build --release --offline || {
  echo "build_web: error: trunk build --release failed (see above)" >&2
  echo "build_web: fix: run scripts/setup.sh; a 'couldn't find the required version' error means a tool on PATH differs from Trunk.toml [tools]" >&2
  exit 1
}
# Two modules: the page (leptos UI) and the model worker (engine).
for wasm in dist/*.wasm; do
  echo "build_web: $wasm $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) gzipped"
done
echo "build_web: done ($((SECONDS - start)) s)"
