#!/usr/bin/env bash
# Builds the web app (release) and serves it on http://127.0.0.1:PORT (default 8080) with the
# cross-origin isolation headers (COOP same-origin, COEP require-corp) wasm threads need.
# Usage: scripts/serve.sh [PORT]
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${1:-8080}"
[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || {
  echo "serve: error: PORT must be a number in 1..65535, got '$PORT'" >&2
  echo "usage: scripts/serve.sh [PORT]" >&2
  exit 2
}

scripts/setup.sh
scripts/build_web.sh
echo "serve: open http://127.0.0.1:$PORT/ in Chrome or Edge 113+ (Ctrl-C stops)"
exec node tests/e2e/server.mjs --root dist --port "$PORT"
