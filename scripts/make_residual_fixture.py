#!/usr/bin/env python3
"""Writes llama.cpp's intermediate tensors for one prompt: the per-layer reference that
locates where an engine's forward pass departs from llama.cpp.

Run it with the venv from scripts/llamacpp_env.sh:

    $(scripts/llamacpp_env.sh | tail -1) scripts/make_residual_fixture.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prefix smollm2

It evaluates `prompt_ids` of the first case of tests/fixtures/PREFIX_greedy.json in one
batch, with the settings of make_fixtures.py, and captures tensors through llama.cpp's
graph eval callback (`cb_eval` in llama_context_params). It writes into tests/fixtures/:

  PREFIX_residuals.json   manifest: settings, prompt, and per tensor its name, op, shape,
                          axis meaning, which tokens are kept and where its values lie
  PREFIX_residuals.f32    the values, little-endian f32, tensors one after another

What is kept (see tests/fixtures/README.md):
  - the token embeddings `embd` (llama.cpp's get_rows of token_embd.weight), all tokens;
  - every tensor layer 0 computes (views, reshapes and permutes of them are listed but not
    stored again), all tokens; attention scores only for the keys that exist (the KV cache
    view llama.cpp multiplies against is padded, to 256 positions here);
  - `l_out-L`, the residual stream after block L, for every layer: all tokens for the layers
    in --full-layers, the last --last-tokens tokens for the others;
  - `result_norm` and `result_output` (logits) of the last token;
  - `noise_floor`: how far llama.cpp itself moves when its input embeddings change by one
    ulp, the scale of differences that rounding alone produces.

Before writing, the script checks that the callback did not change the arithmetic: the
captured logits must equal, bit for bit, those of a second context without a callback
(asking for a tensor splits the graph at that node) and the first_logits fixture.
"""

import argparse
import collections
import ctypes
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import llama_cpp
    from llama_cpp import _internals as internals
    import make_fixtures as mf
except ImportError as e:
    sys.exit(
        f"make_residual_fixture.py: error: {e}. "
        "Run it with the venv's python from scripts/llamacpp_env.sh"
    )

LAST_TOKENS = 4
NOISE_SEEDS = [1, 2, 3, 4]


def die(msg):
    sys.exit(f"make_residual_fixture.py: error: {msg}")


# struct ggml_tensor from ggml/include/ggml.h of the llama.cpp that llama-cpp-python 0.3.36
# vendors (GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10, GGML_MAX_NAME 64).
# llama_cpp's bindings pass the tensor as a bare pointer and expose no accessor for ne/nb.
class GgmlTensor(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def ggml_lib():
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_type_name.argtypes = [ctypes.c_int]
    lib.ggml_type_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_backend_tensor_get.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t
    ]
    lib.ggml_backend_tensor_get.restype = None
    return lib


# Ops that only reinterpret another tensor's memory: listed, not stored.
VIEW_OPS = {"VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE"}
NUMPY_TYPE = {"f32": np.float32, "f16": np.float16}

# One computed tensor: ggml name, op and type names, ne[], the op's raw int32 parameters
# (RoPE mode and base, softmax scale), and its values in f32.
Node = collections.namedtuple("Node", "name op typ ne params arr")


def param_f32(params, i):
    """ggml stores float op parameters bit for bit in the int32 op_params array."""
    return float(np.array([params[i]], dtype=np.int32).view(np.float32)[0])


class Capture:
    """The eval callback. It says yes to the tensors `want(name)` selects, copies each
    computed one out as an array in ggml's logical order (numpy shape = reversed ne), and
    records every tensor it is offered, so the manifest can list what the graph emits."""

    def __init__(self, lib, want):
        self.lib = lib
        self.want = want
        self.seen = []  # (name, op, type, ne) of every node offered, in graph order
        self.captured = []  # Node per tensor copied out
        self.error = None
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._cb)

    def _cb(self, ptr, ask, _user_data):
        try:
            t = GgmlTensor.from_address(ptr)
            name = self.lib.ggml_get_name(ptr).decode("utf-8")
            op = self.lib.ggml_op_name(t.op).decode("ascii")
            typ = self.lib.ggml_type_name(t.type).decode("ascii")
            ne = [int(x) for x in t.ne]
            if ask:
                self.seen.append((name, op, typ, ne))
                return self.want(name)
            if op in VIEW_OPS or typ not in NUMPY_TYPE:
                return True
            # ggml_nbytes is the span from the first to the last element through the
            # strides nb[], so this copies exactly the bytes the strided view reads.
            nbytes = self.lib.ggml_nbytes(ptr)
            raw = ctypes.create_string_buffer(nbytes)
            self.lib.ggml_backend_tensor_get(ptr, raw, 0, nbytes)
            flat = np.frombuffer(raw, dtype=np.uint8)
            arr = np.lib.stride_tricks.as_strided(
                flat.view(NUMPY_TYPE[typ]),
                shape=tuple(reversed(ne)),
                strides=tuple(int(x) for x in reversed(t.nb)),
            )
            arr = np.array(arr, dtype=np.float32)
            # Drop ggml's unused outer axes (ne[3] = 1, ...) but keep [token][feature].
            while arr.ndim > 2 and arr.shape[0] == 1:
                arr = arr[0]
            self.captured.append(Node(name, op, typ, ne, tuple(t.op_params), arr))
            return True
        except Exception as e:  # an exception must not cross into C; reported after decode
            self.error = self.error or e
            return False


def evaluate(llm, capture, ids=None, embd=None):
    """One batch on a fresh context with llm's own parameters (so every setting matches
    make_fixtures.py), every position output as with logits_all. The input is token `ids`
    or, for the noise measurement, the embedding rows `embd` [token][n_embd] that llama.cpp
    would otherwise look up itself. Returns the logits of the last token."""
    cp = llm.context_params
    params = type(cp).from_buffer_copy(cp)
    params.cb_eval = capture.callback if capture else llama_cpp.ggml_backend_sched_eval_callback()
    params.cb_eval_user_data = None
    n = len(ids) if ids is not None else embd.shape[0]
    ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(n, 0 if ids is not None else embd.shape[1], 1)
    try:
        batch.n_tokens = n
        if ids is not None:
            for i, tok in enumerate(ids):
                batch.token[i] = tok
        else:
            flat = np.ascontiguousarray(embd, dtype=np.float32).reshape(-1)
            ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
        for i in range(n):
            batch.pos[i] = i
            batch.seq_id[i][0] = 0
            batch.n_seq_id[i] = 1
            batch.logits[i] = True
        rc = llama_cpp.llama_decode(ctx.ctx, batch)
        if rc != 0:
            die(f"llama_decode returned {rc}")
        ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, n - 1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)
    finally:
        llama_cpp.llama_batch_free(batch)
        ctx.close()


def noise_floor(llm, lib, embd, base, n_layer, seeds):
    """How far llama.cpp moves from its own result when every input embedding value is
    nudged by one f32 ulp (up or down at random, seeded): the spread that rounding alone
    causes, i.e. what a correct engine that does not repeat llama.cpp's f32 operations
    bit for bit should expect. `base` maps l_out-L (last token) and result_output."""
    runs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        up = rng.random(embd.shape) < 0.5
        nudged = np.where(up, np.nextafter(embd, np.float32(np.inf)),
                          np.nextafter(embd, np.float32(-np.inf))).astype(np.float32)
        cap = Capture(lib, lambda name: name.startswith("l_out-"))
        logits = evaluate(llm, cap, embd=nudged)
        if cap.error is not None:
            die(f"eval callback failed: {cap.error!r}")
        got = {node.name: node.arr[-1] for node in cap.captured}
        rel = [float(np.linalg.norm(got[f"l_out-{l}"] - base[f"l_out-{l}"])
                     / np.linalg.norm(base[f"l_out-{l}"])) for l in range(n_layer)]
        d = np.abs(logits.astype(np.float64) - base["result_output"])
        top = np.argsort(-logits, kind="stable")[:2]
        runs.append({
            "seed": seed,
            "l_out_rel_l2_last_token": [float(f"{r:.3e}") for r in rel],
            "logits_max_abs_diff": round(float(d.max()), 4),
            "logits_mean_abs_diff": round(float(d.mean()), 4),
            "argmax": int(top[0]),
            "top1_top2_gap": round(float(logits[top[0]] - logits[top[1]]), 4),
        })
    return runs


def layer_of(name):
    """The layer index of a per-layer tensor name like `ffn_out-3`, else None."""
    base, sep, tail = name.rpartition("-")
    return int(tail) if sep and base and tail.isdigit() else None


def describe(node, shape, hp):
    """Axis names of the stored (row-major) array and what the tensor is. hp: head_dim,
    n_head, n_head_kv of the model."""
    name, op = node.name, node.op
    hd, group = hp["head_dim"], hp["n_head"] // hp["n_head_kv"]
    base = name.rpartition("-")[0] if layer_of(name) is not None else name
    if base == "Qcur" or base == "Kcur":
        head = "head" if base == "Qcur" else "kv_head"
        if op != "ROPE":
            bias = f" + b{base[0].lower()}" if op == "ADD" else ""
            return ["token", "feature"], (
                f"x @ W{base[0].lower()}^T{bias} before RoPE; feature = {head}*{hd} + d")
        mode = {0: "NORM: rotates the adjacent pairs (2i, 2i+1)",
                2: "NEOX: rotates the pairs (i, i + n_dims/2)"}.get(
                    node.params[2], f"mode {node.params[2]}")
        return ["token", head, "d"], (
            f"after RoPE, {mode} of each head's first n_dims = {node.params[1]} values by "
            f"pos * {param_f32(node.params, 5):g}^(-2i/n_dims) (ggml op_params); "
            f"same memory as [token][{head}*{hd} + d]")
    if base == "Vcur":
        bias = " + bv" if op == "ADD" else ""
        return ["token", "feature"], f"x @ Wv^T{bias}; feature = kv_head*{hd} + d"
    if base in ("kq", "kq_soft_max"):
        if base == "kq":
            what = ("raw scores q.k, unscaled; K is read from the f16 KV cache, so Q is "
                    "rounded to f16 for the dot product; entries with key > query are "
                    "computed but masked later")
        else:
            what = (f"softmax(kq * {param_f32(node.params, 0):.9g} + causal mask) over keys "
                    "(ggml op_params); key > query entries are 0")
        return ["head", "query", "key"], (
            f"{what}; keys cut to the prompt's positions (llama.cpp multiplies against a "
            f"cache view padded to {node.ne[0]} positions); query head h reads KV head "
            f"h // {group}")
    if base == "kqv":
        return ["head", "token", "d"], (
            "kq_soft_max @ V per query head; V is read from the f16 KV cache, so the "
            "probabilities are rounded to f16 for the product")
    if base == "kqv_out":
        return ["token", "feature"], f"heads concatenated: feature = head*{hd} + d"
    if base == "norm":
        return ["token", "feature"], "x / sqrt(mean(x^2) + eps), before the weight multiply"
    if len(shape) == 2:
        return ["token", "feature"], None
    return [f"axis{i}" for i in range(len(shape))], None


NOTES = {
    "embd": "token embeddings: rows of token_embd.weight (get_rows), input of layer 0",
    "attn_norm": "rms_norm(x) * attn_norm.weight",
    "kqv_out": "attention output before Wo;",
    "attn_out": "kqv_out @ Wo^T",
    "ffn_inp": "residual after attention: attn_out + layer input",
    "ffn_norm": "rms_norm(ffn_inp) * ffn_norm.weight",
    "ffn_gate": "ffn_norm @ Wgate^T",
    "ffn_up": "ffn_norm @ Wup^T",
    "ffn_swiglu": "silu(ffn_gate) * ffn_up",
    "ffn_out": "ffn_swiglu @ Wdown^T",
    "l_out": "residual stream after the block: ffn_out + ffn_inp",
    "result_norm": "rms_norm(l_out-last) * output_norm.weight",
    "result_output": "logits: result_norm @ output.weight^T (tied to token_embd here)",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="path to the GGUF file")
    ap.add_argument("--prefix", required=True, help="file name prefix, e.g. smollm2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    ap.add_argument("--full-layers",
                    help="comma-separated layers whose l_out keeps all tokens "
                    "(default 0, 1, n/2-1, n-2, n-1)")
    ap.add_argument("--last-tokens", type=int, default=LAST_TOKENS,
                    help="tokens of l_out kept for the other layers (the last ones)")
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        die(f"model file not found: {args.model}")
    if not args.prefix.replace("_", "").isalnum():
        die(f"prefix must be letters, digits and '_': {args.prefix!r}")
    try:
        full_layers = (sorted({int(x) for x in args.full_layers.split(",") if x.strip()})
                       if args.full_layers is not None else None)
    except ValueError:
        die(f"--full-layers must be comma-separated integers: {args.full_layers!r}")
    greedy_path = os.path.join(args.out, f"{args.prefix}_greedy.json")
    try:
        with open(greedy_path, encoding="utf-8") as f:
            greedy = json.load(f)
        case = greedy["cases"][0]
        ids = [int(i) for i in case["prompt_ids"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        die(f"{greedy_path}: cannot read the first case's prompt_ids ({e}); "
            "run make_fixtures.py first")
    if not 1 <= len(ids) <= mf.N_BATCH:
        die(f"prompt of {len(ids)} tokens does not fit one batch of {mf.N_BATCH}")
    if not 1 <= args.last_tokens <= len(ids):
        die(f"--last-tokens must be 1..{len(ids)}")

    try:
        llm = mf.load(args.model)
    except ValueError as e:
        die(f"llama.cpp could not load {args.model}: {e}")
    n_layer = int(llm.metadata.get(f"{llm.metadata.get('general.architecture')}.block_count", 0))
    if n_layer <= 0:
        die("the GGUF has no block_count")
    arch = llm.metadata.get("general.architecture")
    try:
        n_head = int(llm.metadata[f"{arch}.attention.head_count"])
        hp = {"n_head": n_head,
              "n_head_kv": int(llm.metadata.get(f"{arch}.attention.head_count_kv", n_head)),
              "head_dim": int(llm.metadata[f"{arch}.embedding_length"]) // n_head}
    except (KeyError, ValueError) as e:
        die(f"the GGUF lacks attention hyperparameters ({e})")
    if full_layers is None:
        # Block L can be checked alone when l_out-(L-1) is kept for every token: this
        # allows blocks 0 (from embd), 1, 2, n/2 and n-1, and the output head.
        full_layers = sorted({0, 1, n_layer // 2 - 1, n_layer - 2, n_layer - 1} & set(range(n_layer)))
    if any(not 0 <= l < n_layer for l in full_layers):
        die(f"--full-layers must lie in 0..{n_layer - 1}")
    if mf.tokenize(llm, case["prompt_text"]) != ids:
        die("this llama.cpp tokenizes the greedy fixture's prompt_text differently; "
            "regenerate the fixtures together")
    cp = llm.context_params
    for key, got, want in (("n_ctx", cp.n_ctx, mf.N_CTX), ("n_batch", cp.n_batch, mf.N_BATCH),
                           ("n_threads", cp.n_threads, mf.N_THREADS),
                           ("flash_attn_type", cp.flash_attn_type,
                            llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED),
                           ("type_k", cp.type_k, llama_cpp.GGML_TYPE_F16),
                           ("type_v", cp.type_v, llama_cpp.GGML_TYPE_F16)):
        if got != want:
            die(f"llama.cpp context has {key}={got}, expected {want}")

    def want(name):
        layer = layer_of(name)
        return (layer == 0 or name in ("embd", "result_norm", "result_output")
                or name.startswith("l_out-"))

    lib = ggml_lib()
    capture = Capture(lib, want)
    logits = evaluate(llm, capture, ids=ids)
    if capture.error is not None:
        die(f"eval callback failed: {capture.error!r}")
    plain = evaluate(llm, None, ids=ids)
    if not np.array_equal(logits.view(np.uint32), plain.view(np.uint32)):
        die("logits with the eval callback differ from logits without it "
            f"(max |diff| {np.max(np.abs(logits - plain))}); the capture would not be "
            "llama.cpp's normal arithmetic")
    first_logits_path = os.path.join(args.out, f"{args.prefix}_first_logits.f32")
    if os.path.isfile(first_logits_path):
        ref = np.fromfile(first_logits_path, dtype="<f4")[: logits.size]
        if not np.array_equal(ref.view(np.uint32), logits.view(np.uint32)):
            die(f"logits differ from {first_logits_path} case 0; regenerate the fixtures "
                "together on one machine")
    system_info = llama_cpp.llama_print_system_info().decode("utf-8").strip()

    got = {node.name: node.arr for node in capture.captured}
    embd = got["embd"]
    # The noise runs feed embeddings instead of token ids; unperturbed, that path must give
    # the very same logits, or the spread would measure the path and not the rounding.
    if not np.array_equal(evaluate(llm, None, embd=embd).view(np.uint32), logits.view(np.uint32)):
        die("logits from the embd input differ from those from token ids")
    base = {f"l_out-{l}": got[f"l_out-{l}"][-1] for l in range(n_layer)}
    base["result_output"] = logits.astype(np.float64)
    noise = noise_floor(llm, lib, embd, base, n_layer, NOISE_SEEDS)
    llm.close()

    n = len(ids)
    keep_last = list(range(n - args.last_tokens, n))
    counts = collections.Counter(node.name for node in capture.captured)
    occurrence = collections.Counter()
    tensors = []
    chunks = {}
    offsets = {}
    for node in capture.captured:
        name, op, typ, ne, arr = node.name, node.op, node.typ, node.ne, node.arr
        occurrence[name] += 1
        # A name computed twice (Qcur-0 before and after RoPE, norm-0 for attention and
        # FFN) gets its op and, if still ambiguous, the occurrence number in its key.
        key = name
        if counts[name] > 1:
            same_op = sum(1 for c in capture.captured if c.name == name and c.op == op)
            key = f"{name}/{op.lower()}" + (f"/{occurrence[name]}" if same_op > 1 else "")
        layer = layer_of(name)
        base = name.rpartition("-")[0] if layer is not None else name
        tokens = list(range(n))
        if arr.ndim == 2 and arr.shape[0] != n:
            die(f"{name}: expected {n} tokens, got shape {list(arr.shape)}")
        if base in ("kq", "kq_soft_max"):
            if arr.shape[1] != n or arr.shape[2] < n:
                die(f"{name}: unexpected shape {list(arr.shape)}")
            arr = arr[:, :, :n]
        elif name in ("result_norm", "result_output"):
            arr = arr[n - 1 :]
            tokens = [n - 1]
        elif base == "l_out" and layer not in full_layers:
            arr = arr[keep_last]
            tokens = keep_last
        axes, desc = describe(node, arr.shape, hp)
        # Layer 0's intermediate tensors go to a file of their own: each file stays < 2 MB.
        part = "layer0" if layer == 0 and base != "l_out" else "main"
        file = f"{args.prefix}_residuals.f32" if part == "main" else f"{args.prefix}_residuals_layer0.f32"
        offset = offsets.get(file, 0)
        entry = {
            "file": file,
            "key": key,
            "name": name,
            "layer": layer,
            "op": op.lower(),
            "ggml_type": typ,
            "ggml_ne": ne,
            "shape": list(arr.shape),
            "axes": axes,
            "tokens": tokens if tokens != list(range(n)) else "all",
            "offset": offset,
            "count": int(arr.size),
        }
        note = " ".join(x for x in (NOTES.get(base), desc) if x)
        if note:
            entry["note"] = note
        tensors.append(entry)
        chunks.setdefault(file, []).append(np.ascontiguousarray(arr, dtype="<f4"))
        offsets[file] = offset + arr.size * 4
        if name == "result_output":
            final = chunks[file][-1].reshape(-1)

    if not np.array_equal(final.view(np.uint32), logits.view(np.uint32)):
        die("the captured result_output is not the logits llama.cpp returned")
    stored = {t["name"] for t in tensors}
    missing = [f"l_out-{l}" for l in range(n_layer) if f"l_out-{l}" not in stored]
    missing += [x for x in ("embd", "result_norm", "result_output") if x not in stored]
    if missing:
        die(f"the graph did not produce {missing}")

    data_files = sorted(chunks)
    # Layer 0's nodes include views named after their source ("Kcur-0 (view)") and the
    # KV cache writes ("cache_k_l0 (view)").
    in_layer0 = re.compile(r"(-0|_l0)( \(|$)")
    layer0 = [f"{name} ({op.lower()}, {typ}, ne {ne})"
              for name, op, typ, ne in capture.seen if in_layer0.search(name)]
    manifest = {
        "settings": {
            "llama_cpp_python_version": llama_cpp.__version__,
            "model_file": os.path.basename(args.model),
            "model_size": os.path.getsize(args.model),
            "model_sha256": mf.file_digest(args.model),
            "n_ctx": cp.n_ctx,
            "n_batch": cp.n_batch,
            "n_ubatch": cp.n_ubatch,
            "n_threads": cp.n_threads,
            "flash_attn_type": cp.flash_attn_type,
            "type_k": cp.type_k,
            "type_v": cp.type_v,
            "outputs": "all positions (as logits_all in make_fixtures.py), so the last "
            "layer runs on every token",
            "system_info": system_info,
        },
        "prompt": {
            "source": f"{args.prefix}_greedy.json cases[0]",
            "name": case["name"],
            "prompt_text": case["prompt_text"],
            "prompt_ids": ids,
            "positions": f"0..{n - 1}, one batch",
        },
        "data_files": data_files,
        "data_layout": (
            "little-endian f32; tensor t holds `count` values from byte `offset` of its `file`, row-major "
            "in `shape` (last axis contiguous), axes named in `axes`. `shape` is ggml's ne "
            "reversed (ggml's ne[0] is the contiguous axis), so a [token, feature] tensor "
            "is token-major. `tokens`: the prompt positions kept on the token (or query) axis, "
            "\"all\" for 0..n-1; only l_out-L, result_norm and result_output keep fewer."
        ),
        "n_layer": n_layer,
        "l_out_full_layers": full_layers,
        "l_out_last_tokens": keep_last,
        "layer0_graph_nodes": layer0,
        "layer0_graph_nodes_note": (
            "every layer-0 node the eval callback was offered, in execution order; views, "
            "reshapes, permutes and the KV cache writes (cache_k_l0/cache_v_l0, f16) are "
            "not stored because they only move or alias values stored elsewhere"
        ),
        "noise_floor": {
            "method": "llama.cpp rerun with every embd value moved by one f32 ulp (up or "
            "down at random, numpy default_rng(seed)), input given as embeddings; differences "
            "from the stored tensors. Rounding alone gives this much: llama.cpp quantizes "
            "activations to 8 bits before each Q4_1/Q8_0 matmul, and a last-bit change that "
            "moves a value across a rounding boundary changes a whole block's contribution.",
            "runs": noise,
        },
        "tensors": tensors,
    }
    os.makedirs(args.out, exist_ok=True)
    for file, parts in chunks.items():
        with open(os.path.join(args.out, file), "wb") as f:
            for c in parts:
                f.write(c.tobytes())
    mf.write_json(os.path.join(args.out, f"{args.prefix}_residuals.json"), manifest)
    for file in [f"{args.prefix}_residuals.json"] + data_files:
        path = os.path.join(args.out, file)
        print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)
    print(f"{len(tensors)} tensors, {sum(offsets.values()) // 4} values", file=sys.stderr)


if __name__ == "__main__":
    main()
