#!/usr/bin/env bash
# Everything CI checks, in order: setup (tools + model), native tests, release web build,
# browser tests in headless Chromium. Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
start=$SECONDS

# Setup first: native tests load the model from models/.
scripts/setup.sh

echo "test: cargo fmt --check"
cargo fmt --check || {
  echo "test: FAIL - the code is not formatted as rustfmt would (run: cargo fmt)" >&2
  exit 1
}

echo "test: cargo test --release (native: unit, integration and doc tests)"
cargo test --release || {
  echo "test: FAIL - native tests (cargo test --release) failed, see above" >&2
  exit 1
}

# Lints after the builds: clippy then reuses their build scripts, macros and dependency metadata
# (seconds, where a cold clippy run would take minutes).
echo "test: cargo clippy --release --all-targets -- -D warnings (native)"
cargo clippy --release --all-targets -- -D warnings || {
  echo "test: FAIL - clippy found warnings in the native build, see above" >&2
  exit 1
}

scripts/build_web.sh

for features in "" relaxed-simd; do
  echo "test: cargo clippy --release (wasm32${features:+, --features $features}) -- -D warnings"
  cargo clippy --release --target wasm32-unknown-unknown --lib --bins --test quant_kernels --test engine \
    ${features:+--features "$features"} -- -D warnings || {
    echo "test: FAIL - clippy found warnings in the wasm32 build${features:+ with $features}, see above" >&2
    exit 1
  }
done

# The self-hosting archive holds what a static host needs (the offline test checks the files
# behind it work without a server).
echo "test: release archive (scripts/package.sh)"
scripts/package.sh --no-build
archive="$(ls -t target/package/axiscope-*.tar.gz | head -1)"
listing="$(tar -tzf "$archive")"
for want in index.html sw.js sw-register.js precache.json _headers README.txt models/SmolLM2-135M-Instruct.Q4_1.gguf; do
  grep -q "^axiscope-[^/]*/$want\$" <<<"$listing" || {
    echo "test: FAIL - $archive has no $want" >&2
    exit 1
  }
done

# The browser's own kernels (simd128, and the relaxed-SIMD set of the second worker) and each
# architecture's model (tests/engine/arch_reference.rs) against the same references as the
# native ones, in headless Chromium through chromedriver (Node will not do: Node 20's V8 has a
# pre-standard relaxed SIMD). After the web build, which has compiled most of what these need.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner WASM_BINDGEN_USE_BROWSER=1
for features in "" relaxed-simd; do
  echo "test: wasm kernel and architecture tests in headless Chromium${features:+ (--features $features)}"
  cargo test --release --target wasm32-unknown-unknown --test quant_kernels --test engine ${features:+--features "$features"} || {
    echo "test: FAIL - wasm kernel or architecture tests${features:+ with $features} failed, see above" >&2
    exit 1
  }
done

echo "test: browser tests (tests/e2e, headless Chromium)"
node tests/e2e/run.mjs || {
  echo "test: FAIL - browser tests failed, see above; screenshots in tests/e2e/artifacts/" >&2
  exit 1
}

echo "test: PASS - native tests, web build and browser tests all passed ($((SECONDS - start)) s)"
