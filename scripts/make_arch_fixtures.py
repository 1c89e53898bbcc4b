#!/usr/bin/env python3
"""Writes small random-weight GGUFs of each architecture the engine runs, and llama.cpp's
outputs for them, so every architecture is held to llama.cpp without downloading a model.

Run it with the venv from scripts/llamacpp_env.sh (plus gguf-py from PyPI):

    PY=$(scripts/llamacpp_env.sh | tail -1); $PY -m pip install gguf==0.19.0
    $PY scripts/make_arch_fixtures.py --vocab-from models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --spm-vocab-from "$(scripts/fetch_gemma.sh | tail -1)"

For each model NAME it writes into tests/fixtures/arch/ (or --out):
  NAME.gguf   2 layers, hidden 64, Q8_0 matrices, F32 norms; a byte-level BPE vocabulary of
              the 256 byte tokens, the first --merges merges of the --vocab-from model and
              three control tokens (a few hundred tokens, so the file stays near 100 kB);
              gemma3 instead has Gemma's kind of vocabulary (SentencePiece pieces with scores,
              tokenizer model "llama"): the --pieces best-scored pieces of the
              --spm-vocab-from model, its 256 <0xXX> byte tokens, its newline-run tokens and
              control tokens
  NAME.json   llama.cpp's token ids for make_fixtures.TOKENIZE_CASES, and per prompt the
              full last-token logits of the prompt (one batch) and 16 greedy tokens fed
              back one at a time, each with its top-2 gap

Weights come from a seeded generator, so the files are the same on every run with the same
gguf-py and numpy; the outputs depend on llama.cpp's version and the CPU's arithmetic
(recorded in `settings`).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (llama.cpp settings, tokenization, JSON layout)

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError as e:
    sys.exit(f"make_arch_fixtures.py: error: {e}. Install gguf-py into the venv (see above)")

HIDDEN = 64
FFN = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
CONTEXT = 2048
GREEDY_STEPS = 16
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PROMPTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog, and then",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]

# What each model exercises. head_dim differs from HIDDEN / HEADS (16) where the architecture
# reads it from attention.key_length (qwen3, gemma3); rope_freqs are Llama 3.x-style factors, 1
# for the fastest-turning pairs up to 8 for the slowest. gemma3 has 6 layers so that llama.cpp's
# default pattern makes layers 0-4 local (sliding window) and 5 global, a window of 4 tokens so
# that the prompts reach past it, and a final logit soft-cap (Gemma 2 style; Gemma 3 files have
# none) to exercise that step too.
MODELS = {
    "gemma3": dict(arch="gemma3", vocab="spm", head_dim=32, rope_base=1000000.0, layers=6,
                   qk_norm=True, post_norms=True, sliding_window=4, rope_base_swa=10000.0,
                   softcap=20.0),
    "llama3": dict(arch="llama", pre="llama-bpe", head_dim=16, rope_base=10000.0,
                   rope_freqs=[1.0, 1.0, 1.0, 1.5, 2.5, 4.0, 6.5, 8.0]),
    "qwen2": dict(arch="qwen2", pre="qwen2", head_dim=16, rope_base=1000000.0,
                  qkv_bias=True),
    "qwen3": dict(arch="qwen3", pre="qwen2", head_dim=32, rope_base=1000000.0,
                  qk_norm=True),
}


def die(msg):
    sys.exit(f"make_arch_fixtures.py: error: {msg}")


def borrowed_vocab(path, n_merges):
    """Byte tokens, then the first n_merges merges' results in merge order, then SPECIALS."""
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = [t for t in strings("tokenizer.ggml.tokens")[:1000] if len(t) == 1]
    byte_tokens = sorted(set(tokens) | set(gpt2_byte_chars()), key=ord)
    if len(byte_tokens) != 256:
        die(f"expected 256 byte tokens, found {len(byte_tokens)}")
    vocab, merges = list(byte_tokens), []
    known = set(vocab)
    for m in strings("tokenizer.ggml.merges"):
        a, b = m.split(" ", 1)
        if a in known and b in known and a + b not in known:
            merges.append(m)
            vocab.append(a + b)
            known.add(a + b)
        if len(merges) == n_merges:
            break
    return vocab + SPECIALS, merges


# Control tokens of the SentencePiece vocabulary: Gemma's own and, so that the ChatML prompt
# above splits the same way in every model, SPECIALS.
SPM_CONTROLS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"] + SPECIALS
SPM_NEWLINE_RUNS = 4


def borrowed_spm_vocab(path, n_pieces):
    """(tokens, scores, types): SPM_CONTROLS, newline runs (user-defined), the 256 byte tokens
    and the n_pieces best-scored normal pieces and the space piece, with the --spm-vocab-from
    model's scores."""
    r = gguf.GGUFReader(path)
    if bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode() != "llama":
        die(f"{path} has no SentencePiece-style ('llama') vocabulary")
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    scores = [float(r.fields["tokenizer.ggml.scores"].parts[i][0])
              for i in r.fields["tokenizer.ggml.scores"].data]
    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0])
             for i in r.fields["tokenizer.ggml.token_type"].data]
    out = [(t, -1000.0, 3) for t in SPM_CONTROLS]
    out += [("\n" * k, -1000.0, 4) for k in range(1, SPM_NEWLINE_RUNS + 1)]
    out += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    normal = sorted((i for i in range(len(tokens)) if types[i] == 1), key=lambda i: -scores[i])
    # The space piece too, as every real vocabulary has it: without it a space falls back to
    # the bytes of its escape, "\u2581", and text no longer decodes to itself.
    chosen = normal[:n_pieces] + [i for i in normal[n_pieces:] if tokens[i] == "\u2581"]
    out += [(tokens[i], scores[i], 1) for i in chosen]
    return [t for t, _, _ in out], [s for _, s, _ in out], [k for _, _, k in out]


def gpt2_byte_chars():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def write_model(path, name, spec, vocab, seed):
    rng = np.random.default_rng(seed)
    arch, hd = spec["arch"], spec["head_dim"]
    q_dim, kv_dim = HEADS * hd, KV_HEADS * hd
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"random {name}")
    layers = spec.get("layers", LAYERS)
    w.add_block_count(layers)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(spec["rope_base"])
    if "sliding_window" in spec:
        w.add_sliding_window(spec["sliding_window"])
        w.add_rope_freq_base_swa(spec["rope_base_swa"])
    if "softcap" in spec:
        w.add_final_logit_softcapping(spec["softcap"])
    if hd != HIDDEN // HEADS:
        w.add_key_length(hd)
        w.add_value_length(hd)
    if spec.get("vocab") == "spm":
        vocab, scores, types = vocab["spm"]
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(vocab)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(vocab.index("<bos>"))
        w.add_eos_token_id(vocab.index("<eos>"))
        w.add_unk_token_id(vocab.index("<unk>"))
        w.add_add_space_prefix(False)
    else:
        vocab, merges = vocab["bpe"]
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(spec["pre"])
        w.add_token_list(vocab)
        w.add_token_types([3 if t in SPECIALS else 1 for t in vocab])
        w.add_token_merges(merges)
        w.add_bos_token_id(vocab.index("<|endoftext|>"))
        w.add_eos_token_id(vocab.index("<|im_end|>"))
    w.add_add_bos_token(False)

    def mat(tname, rows, cols, std):
        a = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
        w.add_tensor(tname, gguf.quants.quantize(a, QT.Q8_0), raw_dtype=QT.Q8_0)

    def vec(tname, n, mean=1.0, std=0.1):
        w.add_tensor(tname, (mean + rng.standard_normal(n) * std).astype(np.float32))

    # Gemma scales embeddings up by sqrt(HIDDEN); start them as small as its trained ones.
    mat("token_embd.weight", len(vocab), HIDDEN, HIDDEN**-0.5 if spec.get("post_norms") else 1.0)
    vec("output_norm.weight", HIDDEN)
    # An output head of its own: tied to random embeddings, the head favours the token just
    # seen and greedy decoding repeats it (tied heads are held to llama.cpp by SmolLM2's tests).
    mat("output.weight", len(vocab), HIDDEN, 3.0 / HIDDEN**0.5)
    if "rope_freqs" in spec:
        w.add_tensor("rope_freqs.weight", np.array(spec["rope_freqs"], dtype=np.float32))
    for l in range(layers):
        n = f"blk.{l}."
        vec(n + "attn_norm.weight", HIDDEN)
        mat(n + "attn_q.weight", q_dim, HIDDEN, 2.0 / HIDDEN**0.5)
        mat(n + "attn_k.weight", kv_dim, HIDDEN, 2.0 / HIDDEN**0.5)
        mat(n + "attn_v.weight", kv_dim, HIDDEN, 1.0 / HIDDEN**0.5)
        if spec.get("qkv_bias"):
            vec(n + "attn_q.bias", q_dim, 0.0, 0.5)
            vec(n + "attn_k.bias", kv_dim, 0.0, 0.5)
            vec(n + "attn_v.bias", kv_dim, 0.0, 0.5)
        if spec.get("qk_norm"):
            vec(n + "attn_q_norm.weight", hd, 1.0, 0.3)
            vec(n + "attn_k_norm.weight", hd, 1.0, 0.3)
        # Sub-layer outputs as large as the embeddings, so that greedy decoding does not just
        # repeat the last token (as it would if the residual stream were its embedding alone).
        mat(n + "attn_output.weight", HIDDEN, q_dim, 3.0 / q_dim**0.5)
        if spec.get("post_norms"):
            vec(n + "post_attention_norm.weight", HIDDEN)
            vec(n + "post_ffw_norm.weight", HIDDEN)
        vec(n + "ffn_norm.weight", HIDDEN)
        mat(n + "ffn_gate.weight", FFN, HIDDEN, 1.0 / HIDDEN**0.5)
        mat(n + "ffn_up.weight", FFN, HIDDEN, 1.0 / HIDDEN**0.5)
        mat(n + "ffn_down.weight", HIDDEN, FFN, 3.0 / FFN**0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def record(path):
    """llama.cpp's tokenization, last-token logits and greedy tokens for the model at path."""
    llm = mf.load(path)
    try:
        tok_cases = mf.tokenize_cases(llm)
        n_vocab = llm.n_vocab()
    finally:
        llm.close()
    cases = []
    for text in PROMPTS:
        llm = mf.load(path)  # a fresh context per prompt, as make_fixtures does
        try:
            prompt = mf.tokenize(llm, text)
            llm.eval(prompt)
            last_logits = None
            steps = []
            for _ in range(GREEDY_STEPS):
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                if last_logits is None:
                    last_logits = logits
                top = mf.top_entries(logits)
                token = top[0][0]
                steps.append({"token": token, "gap": top[0][1] - top[1][1], "top": top})
                llm.eval([token])
            cases.append({
                "prompt": text,
                "prompt_ids": prompt,
                "last_logits": [float(x) for x in last_logits],
                "steps": steps,
            })
        finally:
            llm.close()
    return n_vocab, tok_cases, cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-from", required=True, help="a byte-level BPE GGUF (SmolLM2)")
    ap.add_argument("--merges", type=int, default=400)
    ap.add_argument("--spm-vocab-from", required=True,
                    help="a SentencePiece-vocabulary GGUF (Gemma 3 270M, scripts/fetch_gemma.sh)")
    ap.add_argument("--pieces", type=int, default=1200)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "arch"))
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), help="a subset of models")
    args = ap.parse_args()
    for path in (args.vocab_from, args.spm_vocab_from):
        if not os.path.isfile(path):
            die(f"file not found: {path}")
    os.makedirs(args.out, exist_ok=True)
    vocabs = {"bpe": borrowed_vocab(args.vocab_from, args.merges),
              "spm": borrowed_spm_vocab(args.spm_vocab_from, args.pieces)}
    for i, (name, spec) in enumerate(sorted(MODELS.items())):
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.out, f"{name}.gguf")
        write_model(path, name, spec, vocabs, seed=1000 + i)
        n_vocab, tok_cases, cases = record(path)
        n_written = len(vocabs[spec.get("vocab", "bpe")][0])
        if n_vocab != n_written:
            die(f"{name}: llama.cpp sees {n_vocab} tokens, we wrote {n_written}")
        settings = {
            "llama_cpp_python_version": mf.llama_cpp.__version__,
            "gguf_py_version": getattr(gguf, "__version__", "0.19.0"),
            "model_file": os.path.basename(path),
            "model_size": os.path.getsize(path),
            "model_sha256": mf.file_digest(path),
            "architecture": spec["arch"],
            "n_vocab": n_vocab,
            "n_ctx": mf.N_CTX,
            "n_threads": mf.N_THREADS,
            "flash_attn": False,
            "tokenize_add_bos": False,
            "tokenize_special": True,
            "near_tie": mf.NEAR_TIE,
            "system_info": mf.llama_cpp.llama_print_system_info().decode("utf-8").strip(),
        }
        mf.write_json(os.path.join(args.out, f"{name}.json"),
                      {"settings": settings, "tokenize": tok_cases, "cases": cases})
        gaps = [s["gap"] for c in cases for s in c["steps"]]
        print(f"{name}: {os.path.getsize(path)} bytes, vocab {n_vocab}, "
              f"greedy tokens {[[s['token'] for s in c['steps']] for c in cases]}, "
              f"smallest gap {min(gaps):.4f}")


if __name__ == "__main__":
    main()
