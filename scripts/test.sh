#!/usr/bin/env bash
# Everything CI checks, in order: setup (tools + model), native tests, release web build,
# browser tests in headless Chromium. Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
start=$SECONDS

# Setup first: native tests load the model from models/.
scripts/setup.sh

echo "test: cargo test --release (native: unit, integration and doc tests)"
cargo test --release || {
  echo "test: FAIL - native tests (cargo test --release) failed, see above" >&2
  exit 1
}

scripts/build_web.sh

echo "test: browser tests (tests/e2e, headless Chromium)"
node tests/e2e/run.mjs || {
  echo "test: FAIL - browser tests failed, see above; screenshots in tests/e2e/artifacts/" >&2
  exit 1
}

echo "test: PASS - native tests, web build and browser tests all passed ($((SECONDS - start)) s)"
