#!/usr/bin/env bash
# Packs the built app (dist/) into one archive that any static host serves, for a workshop or a
# self-hosted copy: target/package/axiscope-VERSION.tar.gz and .zip, each holding the folder
# axiscope-VERSION/ with the page, both worker builds, the default model and bundle, the service
# worker, _headers (COOP/COEP for hosts that read it) and a one-line README.txt.
# Usage: scripts/package.sh [--no-build]   (builds dist/ first unless --no-build)
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  scripts/setup.sh
  scripts/build_web.sh
fi
[[ -f dist/index.html && -f dist/precache.json ]] ||
  { echo "package: error: dist/ is not a complete build; run scripts/build_web.sh" >&2; exit 1; }

crate_version="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
name="axiscope-$crate_version+$commit"
out="target/package"
stage="$out/$name"
rm -rf "$stage" && mkdir -p "$stage"
cp -RL dist/. "$stage/"
echo "axiscope $crate_version ($commit): serve this folder with any static file server (e.g. python3 -m http.server) and open index.html; with the headers in _headers set (COOP/COEP) it also uses a second core." >"$stage/README.txt"

tar -C "$out" -czf "$out/$name.tar.gz" "$name"
python3 - "$out" "$name" <<'PY'
import os, sys, zipfile
out, name = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(out, name + ".zip"), "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk(os.path.join(out, name)):
        for f in sorted(files):
            full = os.path.join(root, f)
            z.write(full, os.path.relpath(full, out))
PY
rm -rf "$stage"
for f in "$out/$name.tar.gz" "$out/$name.zip"; do
  echo "package: $f ($(stat -c %s "$f") bytes)"
done
