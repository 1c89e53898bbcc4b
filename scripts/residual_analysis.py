#!/usr/bin/env python3
"""Recomputes llama.cpp's stored tensors (tests/fixtures/PREFIX_residuals.*) from the GGUF
weights with numpy, to show which steps llama.cpp does in reduced precision and how far
an independent forward pass may land from it.

    python3 scripts/residual_analysis.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prefix smollm2 [--full]

Needs only numpy. Supports the `llama` architecture with F32, F16, Q4_1 and Q8_0 tensors.
Three references per layer-0 tensor, each as the relative L2 error of llama.cpp against it:
  chain  every step in float64 from llama.cpp's `embd` (errors accumulate);
  local  each step in float64 from llama.cpp's own inputs to that step (the step's own error);
  emul   like local, but doing what ggml-cpu does: activations quantized to Q8_1 (Q4_1
         weights) or Q8_0 (Q8_0 weights) in f32 with f16 block scales before each matmul,
         and Q, K, V and the softmax probabilities rounded to f16 (the f16 KV cache path).
Then single blocks started from llama.cpp's stored l_out of the previous layer, and with
--full the whole model from `embd` (30 blocks, about 15 s).
"""

import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("residual_analysis.py: error: needs numpy")

F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
          10: "<Q", 11: "<q", 12: "<d"}
Q4_1_BLOCK = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", 32)])


def die(msg):
    sys.exit(f"residual_analysis.py: error: {msg}")


class Gguf:
    """GGUF v2/v3: metadata, tensor directory, and tensors as float64 or raw blocks."""

    def __init__(self, path):
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.buf[:4]) != b"GGUF":
            raise ValueError("not a GGUF file")
        self.pos = 4
        if self._u("<I") not in (2, 3):
            raise ValueError("unsupported GGUF version")
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.meta = {}
        for _ in range(n_kv):
            key = self._str()
            self.meta[key] = self._value(self._u("<I"))
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            dims = [self._u("<Q") for _ in range(self._u("<I"))]
            self.tensors[name] = (dims, self._u("<I"), self._u("<Q"))
        align = self.meta.get("general.alignment", 32)
        self.data = (self.pos + align - 1) // align * align

    def _u(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError("truncated GGUF header")
        value = struct.unpack(fmt, bytes(self.buf[self.pos:self.pos + size]))[0]
        self.pos += size
        return value

    def _str(self):
        size = self._u("<Q")
        text = bytes(self.buf[self.pos:self.pos + size]).decode("utf-8")
        self.pos += size
        return text

    def _value(self, typ):
        if typ in SCALAR:
            return self._u(SCALAR[typ])
        if typ == 8:
            return self._str()
        if typ == 9:
            elem = self._u("<I")
            return [self._value(elem) for _ in range(self._u("<Q"))]
        raise ValueError(f"unknown GGUF value type {typ}")

    def blocks(self, name):
        """(type, rows, block array) of a 2-D quantized tensor; rows = dims[1]."""
        dims, typ, off = self.tensors[name]
        n = int(np.prod(dims))
        dt = {Q4_1: Q4_1_BLOCK, Q8_0: Q8_0_BLOCK}.get(typ)
        if dt is None:
            raise ValueError(f"{name}: ggml type {typ} is not Q4_1 or Q8_0")
        blk = np.frombuffer(self.buf, dt, n // 32, self.data + off)
        return typ, dims[1], blk.reshape(dims[1], -1)

    def get(self, name):
        """The tensor in float64, numpy shape = reversed ggml dims ([out][in] for weights)."""
        if name not in self.tensors:
            raise ValueError(f"the GGUF has no tensor {name}")
        dims, typ, off = self.tensors[name]
        n, shape = int(np.prod(dims)), tuple(reversed(dims))
        if typ in (F32, F16):
            dt = "<f4" if typ == F32 else "<f2"
            return np.frombuffer(self.buf, dt, n, self.data + off).astype(np.float64).reshape(shape)
        typ, _, blk = self.blocks(name)
        d = blk["d"].astype(np.float64)[..., None]
        if typ == Q8_0:
            return (d * blk["qs"]).reshape(shape)
        # Q4_1: low nibble of byte j is value j, high nibble value j + 16.
        q = np.concatenate([blk["qs"] & 0xF, blk["qs"] >> 4], axis=-1)
        return (d * q + blk["m"].astype(np.float64)[..., None]).reshape(shape)


def f16(x):
    return np.asarray(x).astype(np.float16).astype(np.float64)


def q8_activations(x):
    """ggml-cpu's x86 quantize_row_q8_0/q8_1, in f32 as the C code does it: per block of 32,
    d = amax/127 and q = round-half-even(x * (127/amax)). Doing it in f64 instead moves
    values that sit on a rounding boundary to the other integer."""
    xb = np.asarray(x, dtype=np.float32).reshape(*np.shape(x)[:-1], -1, 32)
    amax = np.max(np.abs(xb), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(amax > 0, np.rint(xb * (np.float32(127) / amax)), np.float32(0))
    return (amax / np.float32(127))[..., 0], q


class Model:
    def __init__(self, gguf):
        self.g = gguf
        m = gguf.meta
        if m.get("general.architecture") != "llama":
            raise ValueError("only the llama architecture is supported")
        self.n_layer = m["llama.block_count"]
        self.n_head = m["llama.attention.head_count"]
        self.n_kv = m["llama.attention.head_count_kv"]
        self.hd = m["llama.embedding_length"] // self.n_head
        self.eps = m["llama.attention.layer_norm_rms_epsilon"]
        self.base = m.get("llama.rope.freq_base", 10000.0)
        self.out_name = "output.weight" if "output.weight" in gguf.tensors else "token_embd.weight"
        self._w = {}

    def w(self, name):
        if name not in self._w:
            self._w[name] = self.g.get(name)
        return self._w[name]

    def matmul(self, x, name, emul):
        """x @ W^T; with emul as ggml-cpu: integer block dots of the Q8 activations with the
        weight quants, f16 scales, plus Q4_1's min times Q8_1's stored s = d * sum(q)."""
        if not emul:
            return x @ self.w(name).T
        typ, _, blk = self.g.blocks(name)
        d, q = q8_activations(x)
        xd = f16(d)
        if typ == Q8_0:
            sumi = np.einsum("tbk,obk->tob", q, blk["qs"].astype(np.float32), dtype=np.float64)
            return np.einsum("tob,ob,tb->to", sumi, blk["d"].astype(np.float64), xd)
        wq = np.concatenate([blk["qs"] & 0xF, blk["qs"] >> 4], axis=-1).astype(np.float32)
        sumi = np.einsum("tbk,obk->tob", q, wq, dtype=np.float64)
        xs = f16((d * q.sum(-1, dtype=np.float32)).astype(np.float32))
        return (np.einsum("tob,ob,tb->to", sumi, blk["d"].astype(np.float64), xd)
                + xs @ blk["m"].astype(np.float64).T)

    def rms(self, x):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)

    def rope(self, x, pos):
        """llama.cpp's NORM mode: rotates adjacent pairs (2i, 2i+1) of each head."""
        i = np.arange(self.hd // 2)
        theta = pos[:, None] * self.base ** (-2.0 * i / self.hd)
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
        out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
        return out

    def softmax(self, kq):
        n = kq.shape[-1]
        s = kq / np.sqrt(self.hd) + np.triu(np.full((n, n), -np.inf), 1)
        p = np.exp(s - s.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)

    def kv_of(self):
        return np.arange(self.n_head) // (self.n_head // self.n_kv)

    def block(self, il, x, emul, ref=None):
        """Block il on x [token][n_embd] (all prompt positions from 0). Returns every
        intermediate under llama.cpp's names. With ref (llama.cpp's tensors of this block),
        each step starts from llama.cpp's own input to it instead of the previous result."""
        P, n = f"blk.{il}.", x.shape[0]
        H, KV, hd = self.n_head, self.n_kv, self.hd
        pos = np.arange(n, dtype=np.float64)
        r = (lambda key, mine: ref[key].reshape(mine.shape)) if ref is not None else (lambda key, mine: mine)
        sfx = f"-{il}"
        o = {}
        o[f"norm{sfx}/rms_norm/1"] = self.rms(x)
        o[f"attn_norm{sfx}"] = r(f"norm{sfx}/rms_norm/1", o[f"norm{sfx}/rms_norm/1"]) * self.w(P + "attn_norm.weight")
        a = r(f"attn_norm{sfx}", o[f"attn_norm{sfx}"])
        o[f"Qcur{sfx}/mul_mat"] = self.matmul(a, P + "attn_q.weight", emul)
        o[f"Kcur{sfx}/mul_mat"] = self.matmul(a, P + "attn_k.weight", emul)
        o[f"Vcur{sfx}"] = self.matmul(a, P + "attn_v.weight", emul)
        o[f"Qcur{sfx}/rope"] = self.rope(r(f"Qcur{sfx}/mul_mat", o[f"Qcur{sfx}/mul_mat"]).reshape(n, H, hd), pos)
        o[f"Kcur{sfx}/rope"] = self.rope(r(f"Kcur{sfx}/mul_mat", o[f"Kcur{sfx}/mul_mat"]).reshape(n, KV, hd), pos)
        q = r(f"Qcur{sfx}/rope", o[f"Qcur{sfx}/rope"])
        k = r(f"Kcur{sfx}/rope", o[f"Kcur{sfx}/rope"])
        v = r(f"Vcur{sfx}", o[f"Vcur{sfx}"]).reshape(n, KV, hd)
        if emul:
            q, k, v = f16(q), f16(k), f16(v)
        kv = self.kv_of()
        o[f"kq{sfx}"] = np.einsum("qhd,khd->hqk", q, k[:, kv])
        o[f"kq_soft_max{sfx}"] = self.softmax(r(f"kq{sfx}", o[f"kq{sfx}"]))
        p = r(f"kq_soft_max{sfx}", o[f"kq_soft_max{sfx}"])
        o[f"kqv{sfx}"] = np.einsum("hqk,khd->hqd", f16(p) if emul else p, v[:, kv])
        o[f"kqv_out{sfx}"] = r(f"kqv{sfx}", o[f"kqv{sfx}"]).transpose(1, 0, 2).reshape(n, H * hd)
        o[f"attn_out{sfx}"] = self.matmul(r(f"kqv_out{sfx}", o[f"kqv_out{sfx}"]), P + "attn_output.weight", emul)
        o[f"ffn_inp{sfx}"] = r(f"attn_out{sfx}", o[f"attn_out{sfx}"]) + x
        o[f"norm{sfx}/rms_norm/2"] = self.rms(r(f"ffn_inp{sfx}", o[f"ffn_inp{sfx}"]))
        o[f"ffn_norm{sfx}"] = r(f"norm{sfx}/rms_norm/2", o[f"norm{sfx}/rms_norm/2"]) * self.w(P + "ffn_norm.weight")
        f = r(f"ffn_norm{sfx}", o[f"ffn_norm{sfx}"])
        o[f"ffn_gate{sfx}"] = self.matmul(f, P + "ffn_gate.weight", emul)
        o[f"ffn_up{sfx}"] = self.matmul(f, P + "ffn_up.weight", emul)
        gate, up = r(f"ffn_gate{sfx}", o[f"ffn_gate{sfx}"]), r(f"ffn_up{sfx}", o[f"ffn_up{sfx}"])
        o[f"ffn_swiglu{sfx}"] = gate / (1.0 + np.exp(-gate)) * up
        o[f"ffn_out{sfx}"] = self.matmul(r(f"ffn_swiglu{sfx}", o[f"ffn_swiglu{sfx}"]), P + "ffn_down.weight", emul)
        o[f"l_out{sfx}"] = r(f"ffn_out{sfx}", o[f"ffn_out{sfx}"]) + r(f"ffn_inp{sfx}", o[f"ffn_inp{sfx}"])
        return o

    def head(self, x, emul):
        hn = self.rms(x) * self.w("output_norm.weight")
        return hn, self.matmul(hn, self.out_name, emul)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prefix", required=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--fixtures", default=os.path.join(root, "tests", "fixtures"))
    ap.add_argument("--full", action="store_true", help="also run the whole model from embd")
    args = ap.parse_args()

    base = os.path.join(args.fixtures, f"{args.prefix}_residuals")
    try:
        with open(base + ".json", encoding="utf-8") as f:
            man = json.load(f)
        raw = np.fromfile(os.path.join(args.fixtures, man["data_file"]), dtype="<f4")
        T, toks = {}, {}
        n = len(man["prompt"]["prompt_ids"])
        for t in man["tensors"]:
            start, count = t["offset"] // 4, t["count"]
            if start + count > raw.size or count != int(np.prod(t["shape"])):
                raise ValueError(f"tensor {t['key']} lies outside the data file")
            T[t["key"]] = raw[start:start + count].reshape(t["shape"]).astype(np.float64)
            toks[t["key"]] = list(range(n)) if t["tokens"] == "all" else t["tokens"]
        model = Model(Gguf(args.model))
    except (OSError, ValueError, KeyError, TypeError) as e:
        die(str(e))
    ids = man["prompt"]["prompt_ids"]

    x0 = T["embd"]
    print(f"embd vs dequantized token_embd rows: max |diff| "
          f"{np.max(np.abs(model.w('token_embd.weight')[ids] - x0)):.1e}")

    def causal(key, a):  # scores above the diagonal are masked out; compare the rest
        if key.startswith(("kq-", "kq_soft_max-")):
            return a[:, np.tril(np.ones((n, n), bool))]
        return a

    runs = {"chain f64": model.block(0, x0, False), "local f64": model.block(0, x0, False, T),
            "local emul": model.block(0, x0, True, T)}
    print("\nlayer 0, relative L2 error of llama.cpp against each reference (all tokens)")
    print(f"{'tensor':22s}" + "".join(f"{k:>12s}" for k in runs))
    for key in runs["chain f64"]:
        ref = T[key]
        print(f"{key:22s}" + "".join(
            f"{rel(causal(key, ref), causal(key, o[key].reshape(ref.shape))):12.2e}" for o in runs.values()))

    print("\nsingle blocks from llama.cpp's l_out of the layer before (rel L2 error of llama.cpp's "
          "l_out at the tokens kept)")
    full = [l for l in range(model.n_layer) if toks[f"l_out-{l}"] == list(range(n))]
    for prev in full:
        il = prev + 1
        if il >= model.n_layer:
            continue
        keep = toks[f"l_out-{il}"]
        row = [rel(T[f"l_out-{il}"], model.block(il, T[f"l_out-{prev}"], emul)[f"l_out-{il}"][keep])
               for emul in (False, True)]
        print(f"block {il:2d}: f64 {row[0]:.2e}  emul {row[1]:.2e}")
    last = T[f"l_out-{model.n_layer - 1}"][-1:]
    for emul in (False, True):
        hn, lg = model.head(last, emul)
        d = np.abs(T["result_output"] - lg)
        print(f"output head ({'emul' if emul else 'f64'}): result_norm {rel(T['result_norm'], hn):.2e}, "
              f"logits rel {rel(T['result_output'], lg):.2e}, max |d| {d.max():.4f}, mean |d| {d.mean():.4f}")

    if args.full:
        print("\nwhole model from embd: rel L2 error of llama.cpp's l_out at the last token")
        refs = {"f64": (False, False), "emul": (True, True)}
        xs = {k: x0 for k in refs}
        print(f"{'layer':8s}" + "".join(f"{k:>10s}" for k in refs))
        for il in range(model.n_layer):
            for k, (emul, _) in refs.items():
                xs[k] = model.block(il, xs[k], emul)[f"l_out-{il}"]
            mine = T[f"l_out-{il}"][toks[f"l_out-{il}"].index(n - 1)]
            print(f"l_out-{il:<3d}" + "".join(f"{rel(mine, xs[k][n - 1]):10.2e}" for k in refs))
        lc = T["result_output"][0]
        for k, (emul, _) in refs.items():
            _, lg = model.head(xs[k][n - 1:], emul)
            d = np.abs(lc - lg[0])
            top = np.argsort(-lg[0], kind="stable")[:2]
            print(f"logits {k}: max |d| {d.max():.4f} mean |d| {d.mean():.4f}; argmax {top[0]} "
                  f"(gap {lg[0][top[0]] - lg[0][top[1]]:.3f})")
        top = np.argsort(-lc, kind="stable")[:2]
        print(f"llama.cpp argmax {top[0]} (gap {lc[top[0]] - lc[top[1]]:.3f})")


if __name__ == "__main__":
    main()
