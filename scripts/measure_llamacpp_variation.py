#!/usr/bin/env python3
"""How much llama.cpp's own logits move when the same prompt is evaluated in one batch versus
one token at a time (the two paths llama.cpp itself uses for prompts and for decoding).

On a 135M model with 4-bit weights and 8-bit activations this self-variation is far above
float rounding: it is the honest scale for how close any other engine can be expected to come,
so tests/engine/reference.rs takes its logit tolerance and near-tie threshold from it.

Usage: target/llamacpp-venv/bin/python scripts/measure_llamacpp_variation.py \
           --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prefix smollm2
Reads tests/fixtures/PREFIX_greedy.json, writes tests/fixtures/PREFIX_variation.json."""
import argparse, json, pathlib, sys

import llama_cpp
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prefix", required=True)
a = ap.parse_args()
root = pathlib.Path(__file__).resolve().parent.parent
greedy = json.loads((root / f"tests/fixtures/{a.prefix}_greedy.json").read_text())
s = greedy["settings"]
try:
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=s["n_ctx"], n_batch=s["n_batch"], n_ubatch=s["n_ubatch"],
                          n_threads=s["n_threads"], n_threads_batch=s["n_threads_batch"], flash_attn=False,
                          logits_all=True, verbose=False)
except Exception as e:  # a file llama.cpp cannot load
    sys.exit(f"error: llama.cpp cannot load {a.model}: {e}")

cases = []
for case in greedy["cases"]:
    ids = case["prompt_ids"]
    llm.reset(); llm.eval(ids)
    batched = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    llm.reset()
    for t in ids:
        llm.eval([t])
    sequential = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    d = np.abs(batched - sequential)
    cases.append({"name": case["name"], "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                  "same_argmax": bool(batched.argmax() == sequential.argmax())})
    print(f"{case['name']}: max {d.max():.4f} mean {d.mean():.4f}")
out = {"settings": {k: s[k] for k in ("llama_cpp_python_version", "model_sha256", "n_threads", "flash_attn_type", "type_k")},
       "what": "llama.cpp logits at the last prompt token: prompt evaluated in one batch vs one token at a time",
       "cases": cases,
       "max_abs_diff": max(c["max_abs_diff"] for c in cases),
       "mean_abs_diff": float(np.mean([c["mean_abs_diff"] for c in cases]))}
(root / f"tests/fixtures/{a.prefix}_variation.json").write_text(json.dumps(out, indent=1) + "\n")
