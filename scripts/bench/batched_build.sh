#!/usr/bin/env bash
# Batched builds, side by side in one run: rollouts per minute of `axiscope build` on one plan
# (the first N role files + the default, --quick, 32-token replies): the build as it was before
# batching (--batch 1 --always-reread: one sequence, every reply read back), --batch 1 alone,
# and the default batch on 1 and 2 cores; checks that every run wrote the same bundle, byte for
# byte (the reread run: all but the manifest's count of how activations were read).
# Usage: scripts/bench/batched_build.sh [N_ROLES (16)] [REPS (1)]. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
n_roles=${1:-16}
reps=${2:-1}
cargo build --release --bin axiscope >&2
bin=target/bench/axiscope-batched
mkdir -p target/bench
cp target/release/axiscope "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/roles"
cp data/roles/default.json "$work/roles/"
ls data/roles | grep -v '^default.json$' | head -n "$n_roles" | while read -r f; do
  cp "data/roles/$f" "$work/roles/"
done
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # name, then build options
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  nice -n "${NICE:--20}" "$bin" build --model "$model" --roles "$work/roles" --quick --max-tokens 32 \
    --out "$work/$name.axb" "$@" 2>"$work/$name.log"
  t1=$(date +%s.%N)
  local n
  n=$(grep -c '^\[' "$work/$name.log")
  python3 -c "import sys; n,s=int(sys.argv[1]),float(sys.argv[2]); print(f'{sys.argv[3]:<28} {n} rollouts in {s:6.1f} s: {60*n/s:6.1f} rollouts/min')" "$n" "$(echo "$t1 - $t0" | bc)" "$name $*"
}
for r in $(seq "$reps"); do
  run b1-reread --batch 1 --jobs 1 --threads 1 --always-reread
  run b1-j1 --batch 1 --jobs 1 --threads 1
  run b8-j1 --jobs 1 --threads 1
  run b8-j2 --jobs 2 --threads 1
  run b8-t2 --jobs 1 --threads 2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in "$work"/*.axb; do
  [ "$f" = "$work/b1-reread.axb" ] && continue
  cmp -s "$f" "$work/b1-j1.axb" || { echo "DIFFERENT BUNDLE: $f"; exit 1; }
done
python3 - "$work/b1-reread.axb" "$work/b1-j1.axb" <<'PY' || { echo "DIFFERENT BUNDLE: b1-reread"; exit 1; }
import json, sys
# The blob: magic (8), version (4), manifest length (4), manifest JSON, padding, arrays.
def parts(path):
    d = open(path, "rb").read()
    n = int.from_bytes(d[12:16], "little")
    manifest = json.loads(d[16:16 + n])
    manifest["settings"]["extra"].pop("activations")
    return manifest, d[(16 + n + 7) // 8 * 8:]
sys.exit(0 if parts(sys.argv[1]) == parts(sys.argv[2]) else 1)
PY
echo "all bundles identical"
