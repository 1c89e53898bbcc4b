"""One llama.cpp measurement (llama-cpp-python), run by scripts/bench/run.py in its own
process so its peak memory is its own. Run with the python of target/llamacpp-venv.

Usage: llamacpp_run.py --model M --threads N --prompt-file P --tokens 64
       llamacpp_run.py --model M --prompt-file P --tokenize-only

Prints one JSON line. The timings follow axiscope's own definitions (src/engine/generate.rs)
so the two engines are compared on the same work:
  prefill: the whole prompt in one batch, logits of the last token only;
  ttft: prefill plus choosing the first token (greedy argmax);
  decode: from the end of the prefill to the last generated token, over tokens-1 forward
          steps (the first token comes from the prefill's logits), greedy argmax each step.
End-of-turn tokens do not stop it: the harness checks that axiscope also ran all tokens.
"""

import argparse
import ctypes
import json
import resource
import sys
import time


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file", required=True, help="the templated prompt text (UTF-8)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--tokenize-only", action="store_true")
    a = ap.parse_args()
    if a.tokens < 2:
        fail("--tokens must be at least 2 (one from the prefill, the rest decoded)")

    try:
        import llama_cpp
        import numpy as np
    except ImportError as e:
        fail(f"cannot import llama_cpp/numpy ({e}): run scripts/llamacpp_env.sh")
    with open(a.prompt_file, encoding="utf-8") as f:
        prompt = f.read()

    # What the interpreter, numpy and the llama.cpp library hold before any model exists,
    # so the model's own share of the peak can be told apart.
    rss_before_load_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    try:
        llm = llama_cpp.Llama(
            model_path=a.model,
            n_ctx=a.n_ctx,
            n_batch=512,
            n_ubatch=512,
            n_threads=a.threads,
            n_threads_batch=a.threads,
            n_gpu_layers=0,
            flash_attn=False,
            logits_all=False,
            vocab_only=a.tokenize_only,
            verbose=False,
        )
    except Exception as e:  # llama-cpp-python raises ValueError for files it cannot load
        fail(f"llama.cpp cannot load {a.model}: {e}")
    load_ms = (time.perf_counter() - t0) * 1000.0

    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    if a.tokenize_only:
        print(json.dumps({"ok": True, "ids": ids}))
        return
    if len(ids) + a.tokens > a.n_ctx:
        fail(f"prompt ({len(ids)}) + {a.tokens} tokens do not fit n_ctx {a.n_ctx}")

    n_vocab = llm.n_vocab()

    def argmax_last():
        # With logits_all=False only the batch's last row is computed; read it in place.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        return int(np.argmax(logits))

    # numpy builds (and caches) a ctypes array type on the first as_array of a shape: ~20 ms
    # of Python that would otherwise land in the time to first token.
    dummy = (ctypes.c_float * n_vocab)()
    np.ctypeslib.as_array(ctypes.cast(dummy, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))

    t_start = time.perf_counter()
    llm.eval(ids)
    t_prefill = time.perf_counter()
    tokens = [argmax_last()]
    t_first = time.perf_counter()
    while len(tokens) < a.tokens:
        llm.eval([tokens[-1]])
        tokens.append(argmax_last())
    t_end = time.perf_counter()

    cp = llm.context_params
    prefill_ms = (t_prefill - t_start) * 1000.0
    decode_ms = (t_end - t_prefill) * 1000.0
    print(
        json.dumps(
            {
                "ok": True,
                "engine_version": f"llama-cpp-python {llama_cpp.__version__}",
                "prompt_tokens": len(ids),
                "tokens": tokens,
                "load_ms": load_ms,
                "prefill_ms": prefill_ms,
                "ttft_ms": (t_first - t_start) * 1000.0,
                "decode_ms": decode_ms,
                "prefill_tok_s": len(ids) * 1000.0 / prefill_ms,
                "decode_tok_s": (len(tokens) - 1) * 1000.0 / decode_ms,
                "rss_before_load_mb": rss_before_load_kb / 1024.0,
                "settings": {
                    "n_threads": cp.n_threads,
                    "n_threads_batch": cp.n_threads_batch,
                    "flash_attn_type": cp.flash_attn_type,
                    "n_ctx": cp.n_ctx,
                    "n_batch": cp.n_batch,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
