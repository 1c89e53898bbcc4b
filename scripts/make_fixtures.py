#!/usr/bin/env python3
"""Writes the llama.cpp reference fixtures that the engine tests compare against.

Run it with the venv from scripts/llamacpp_env.sh:

    $(scripts/llamacpp_env.sh | tail -1) scripts/make_fixtures.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prefix smollm2

It writes into tests/fixtures/ (or --out):
  PREFIX_tokenize.json      llama.cpp token ids for varied strings
  PREFIX_chat.json          the GGUF chat template rendered with jinja2, and its token ids
                            (for a GGUF without a template, --builtin-template NAME renders
                            with llama.cpp's own built-in template of that name instead)
  PREFIX_greedy.json        greedy generation with the top-10 logits at every step
  PREFIX_first_logits.f32   the full logit vector of the first step of every greedy case
                            (or of the first --first-logits-cases of them)

Every number here comes from llama.cpp itself; nothing is computed by our engine.
The output depends only on the model, the llama-cpp-python version and the CPU's
arithmetic, so re-running it on the same machine reproduces the files byte for byte.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys

try:
    import jinja2
    import jinja2.ext
    import jinja2.sandbox
    import numpy as np
    import llama_cpp
    from llama_cpp import llama_chat_format
except ImportError as e:
    sys.exit(
        f"make_fixtures.py: error: {e}. Run it with the venv's python from scripts/llamacpp_env.sh"
    )

# llama.cpp settings. Flash attention is switched off explicitly because its default is
# "auto" in recent llama.cpp, which could change the arithmetic from one machine to another.
N_CTX = 2048
N_BATCH = 512
N_UBATCH = 512
N_THREADS = 2
MAX_NEW_TOKENS = 48
TOP_N = 10
# Below this top1-top2 gap a different but correct engine may legitimately pick the other
# token; consumers stop comparing generated tokens at the first such step.
NEAR_TIE = 0.02

TOKENIZE_CASES = [
    "Hello world",
    "Hello, world! How are you today?",
    "",
    " ",
    " leading space",
    "trailing space ",
    "   three leading spaces",
    "multiple   spaces   between    words",
    "tab\tseparated\tvalues\t",
    "line one\nline two\n\nline four",
    "\r\n windows line endings\r\n",
    "\n\n\n",
    "  \n \t \n  mixed whitespace run  ",
    "12345",
    "3.14159265358979 and 1,000,000 and 2026-11-05",
    "The year 1984 had 365 days; 0x1F is 31.",
    "Punctuation!!! ... ??? ;;; --- (parens) [brackets] {braces}",
    "\"Quoted\" 'single' `backtick` \u00abguillemets\u00bb \u201ccurly\u201d",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich fa\u00e7ade",
    "Combining: e\u0301 versus \u00e9",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u4e2d\u6587\u4e5f\u53ef\u4ee5\u3002",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03b3\u03c1\u03ac\u03bc\u03bc\u03b1\u03c4\u03b1",
    "emoji \U0001f600\U0001f389\U0001f680",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 flag \U0001f3f3\ufe0f\u200d\U0001f308 thumbs \U0001f44d\U0001f3fd",
    "Math: \u2211 \u222b \u221a \u2264 \u2265 \u2260 \u221e \u03c0",
    "a\u00a0non-breaking space and a\u200bzero-width space",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "x = [1, 2, 3]  # comment\n\tindented with a tab",
    "{\"key\": \"value\", \"n\": 42, \"list\": [true, false, null]}",
    "https://example.com/path/to/page?query=1&lang=en#section",
    "email: someone@example.org, path: /usr/local/bin",
    "I'm sure you're right, it's what they've said and we'll see. Don't! I'd HAVEN'T",
    "ALL CAPS SHOUTING AND MiXeD CaSe",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>glued<|im_start|>",
    "<|endoftext|>",
    "<|im_start| is not a complete control token",
]

# Texts with the control tokens of a template family, added for a vocabulary where the first
# one is a single token (so files made before them stay as they are).
FAMILY_TOKENIZE_CASES = [
    [
        "<start_of_turn>user\nHi<end_of_turn>\n",
        "<bos><start_of_turn>model\nSure.<end_of_turn>\n<eos>",
        "text<end_of_turn>glued<start_of_turn> after",
        "<start_of_turn is not a complete control token",
        "spaces  before\n\n\nnewline runs\n\n and after  ",
    ],
]

# Candidate end-of-turn tokens; those that are one token of the vocabulary stop generation.
END_OF_TURN = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>"]

CHAT_CASES = [
    ("no_system", [{"role": "user", "content": "Hello!"}], True),
    (
        "with_system",
        [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Who are you?"},
        ],
        True,
    ),
    (
        "multi_turn_system",
        [
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "2+2 is 4."},
            {"role": "user", "content": "And times 3?"},
        ],
        True,
    ),
    (
        "multi_turn_no_system",
        [
            {"role": "user", "content": "Hi there."},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a fact."},
            {"role": "assistant", "content": "Honey never spoils."},
            {"role": "user", "content": "Another one."},
        ],
        True,
    ),
    ("empty_user", [{"role": "user", "content": ""}], True),
    (
        "unicode",
        [
            {"role": "system", "content": "R\u00e9ponds en fran\u00e7ais. \U0001f642"},
            {"role": "user", "content": "\u00bfQu\u00e9 tal? \u65e5\u672c\u8a9e \u041f\u0440\u0438\u0432\u0435\u0442 \U0001f468\u200d\U0001f469\u200d\U0001f467"},
        ],
        True,
    ),
    # A finished transcript (no generation prompt): how the science module tokenizes
    # recorded conversations.
    (
        "transcript_no_generation_prompt",
        [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
        False,
    ),
]

GREEDY_CASES = [
    ("capital", [{"role": "user", "content": "What is the capital of France?"}]),
    ("haiku", [{"role": "user", "content": "Write a haiku about the sea."}]),
    ("recursion", [{"role": "user", "content": "Explain recursion to a child."}]),
    (
        "pirate",
        [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Who are you?"},
        ],
    ),
    (
        "coding",
        [{"role": "user", "content": "Write a Python function that reverses a string."}],
    ),
    ("identity", [{"role": "user", "content": "What are you?"}]),
]


def die(msg):
    sys.exit(f"make_fixtures.py: error: {msg}")


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(model_path):
    return llama_cpp.Llama(
        model_path=model_path,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_UBATCH,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        n_gpu_layers=0,
        flash_attn=False,
        logits_all=True,  # so eval() copies the logits it computed into llm.scores
        seed=0,  # unused by greedy argmax; fixed so nothing depends on the clock
        verbose=False,
    )


def tokenize(llm, text):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def tokenize_cases(llm):
    """llama.cpp's ids for TOKENIZE_CASES and the family cases whose tokens the vocabulary has."""
    texts = list(TOKENIZE_CASES)
    for family in FAMILY_TOKENIZE_CASES:
        marker = family[0][: family[0].index(">") + 1]
        if len(tokenize(llm, marker)) == 1:
            texts += family
    return [{"text": t, "ids": tokenize(llm, t)} for t in texts]


class BuiltinRenderer:
    """Renders with one of llama.cpp's built-in templates (llama_chat_apply_template), for a
    GGUF that carries no template of its own. llama.cpp adds the BOS token when it tokenizes,
    not in the template, so its text is put in front here where the vocabulary adds one."""

    def __init__(self, name, bos_prefix):
        self.name = name.encode("utf-8")
        self.bos_prefix = bos_prefix

    def render(self, messages, add_generation_prompt):
        chat = (llama_cpp.llama_chat_message * len(messages))(*[
            llama_cpp.llama_chat_message(role=m["role"].encode("utf-8"),
                                         content=m["content"].encode("utf-8"))
            for m in messages
        ])
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(
            self.name, chat, len(messages), add_generation_prompt, buf, size)
        if n < 0 or n > size:
            die(f"llama.cpp's built-in template {self.name!r} failed ({n})")
        return self.bos_prefix + buf.raw[:n].decode("utf-8")


class Renderer:
    """Renders a GGUF chat template the way Hugging Face and llama-cpp-python do:
    a sandboxed jinja2 environment with trim_blocks and lstrip_blocks, the loopcontrols
    extension, and raise_exception / bos_token / eos_token in the context."""

    def __init__(self, template, bos_token, eos_token):
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        self.template = env.from_string(template)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages, add_generation_prompt):
        def raise_exception(message):
            raise ValueError(f"chat template raised: {message}")

        return self.template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            raise_exception=raise_exception,
        )


def top_entries(logits):
    # Stable sort on the negated logits: equal logits keep ascending id order, the same
    # tie-break as numpy's argmax (lowest id wins).
    order = np.argsort(-logits, kind="stable")[:TOP_N]
    return [[int(i), float(logits[i])] for i in order]


def greedy_case(model_path, renderer, name, messages, stop_ids):
    """Evaluates the rendered prompt in one batch, then feeds back the argmax one token
    at a time. A fresh context per case, so no case sees another's KV cache."""
    llm = load(model_path)
    try:
        prompt_text = renderer.render(messages, True)
        prompt_ids = tokenize(llm, prompt_text)
        if len(prompt_ids) + MAX_NEW_TOKENS > N_CTX:
            die(f"greedy case {name}: prompt of {len(prompt_ids)} tokens does not fit n_ctx")
        llm.eval(prompt_ids)
        steps = []
        first_logits = None
        generated = []
        stop_reason = "max_new_tokens"
        for _ in range(MAX_NEW_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if first_logits is None:
                first_logits = logits.copy()
            top = top_entries(logits)
            token = int(np.argmax(logits))
            assert token == top[0][0]
            steps.append({"token": token, "gap": top[0][1] - top[1][1], "top": top})
            generated.append(token)
            if token in stop_ids:
                stop_reason = "stop_token"
                break
            llm.eval([token])
        near = [i for i, s in enumerate(steps) if s["gap"] < NEAR_TIE]
        case = {
            "name": name,
            "messages": messages,
            "prompt_text": prompt_text,
            "prompt_ids": prompt_ids,
            "completion_text": llm.detokenize(generated, special=True).decode(
                "utf-8", errors="replace"
            ),
            "stop_reason": stop_reason,
            "first_near_tie_step": near[0] if near else None,
            "steps": steps,
        }
        return case, first_logits
    finally:
        llm.close()


def dumps(value, indent=0):
    """JSON with one line per step/case: lists of scalars (and lists of short lists, like
    the top-10 pairs) stay on one line, so diffs are readable and files stay small."""
    pad = "  " * indent
    inner = "  " * (indent + 1)

    def flat(v):
        return not isinstance(v, (dict, list)) or (
            isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)
        )

    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(flat(v) for v in value):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if all(isinstance(v, dict) and all(flat(x) for x in v.values()) for v in value):
            rows = [inner + json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in value]
        else:
            rows = [inner + dumps(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(value) + "\n")
    # Reading it back proves the custom layout is valid JSON and loses nothing.
    with open(path, encoding="utf-8") as f:
        if json.load(f) != json.loads(json.dumps(value)):
            die(f"{path}: JSON round trip changed the data")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="path to the GGUF file")
    ap.add_argument("--prefix", required=True, help="file name prefix, e.g. smollm2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    # Each case costs 4 * n_vocab bytes (0.2 MB for SmolLM2, 0.6 MB for Qwen2.5's 151,936
    # tokens); this keeps the file of a large-vocabulary model small.
    ap.add_argument("--first-logits-cases", type=int, default=len(GREEDY_CASES),
                    help="write the full first-step logits of only the first N greedy cases")
    ap.add_argument("--builtin-template", metavar="NAME",
                    help="for a GGUF without a chat template: render with llama.cpp's built-in "
                         "template NAME (e.g. gemma)")
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        die(f"model file not found: {args.model}")
    if not args.prefix.replace("_", "").isalnum():
        die(f"prefix must be letters, digits and '_': {args.prefix!r}")
    if not 1 <= args.first_logits_cases <= len(GREEDY_CASES):
        die(f"--first-logits-cases must be 1..{len(GREEDY_CASES)}")
    os.makedirs(args.out, exist_ok=True)

    try:
        llm = load(args.model)
    except ValueError as e:  # llama-cpp-python's way of saying the file did not load
        die(f"llama.cpp could not load {args.model}: {e}")
    template = llm.metadata.get("tokenizer.chat_template")
    if not template and not args.builtin_template:
        die("the GGUF has no tokenizer.chat_template (--builtin-template names llama.cpp's own)")
    vocab = llm._model
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    bos_token = vocab.token_get_text(bos_id) if bos_id != -1 else ""
    eos_token = vocab.token_get_text(eos_id) if eos_id != -1 else ""
    ends = [tokenize(llm, t) for t in END_OF_TURN]
    stop_ids = sorted({eos_id} | {e[0] for e in ends if len(e) == 1})
    n_vocab = llm.n_vocab()
    cp = llm.context_params

    settings = {
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_file": os.path.basename(args.model),
        "model_size": os.path.getsize(args.model),
        "model_sha256": file_digest(args.model),
        "n_vocab": n_vocab,
        "n_ctx": cp.n_ctx,
        "n_batch": cp.n_batch,
        "n_ubatch": cp.n_ubatch,
        "n_threads": cp.n_threads,
        "n_threads_batch": cp.n_threads_batch,
        "n_gpu_layers": 0,
        "flash_attn_type": cp.flash_attn_type,
        "flash_attn_type_meaning": "0 = disabled (-1 auto, 1 enabled)",
        "type_k": cp.type_k,
        "type_v": cp.type_v,
        "kv_type_meaning": "ggml type ids, 1 = f16 (the default, not overridden)",
        "logits_all": True,
        "tokenize_add_bos": False,
        "tokenize_special": True,
        "bos_id": bos_id,
        "eos_id": eos_id,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8").strip(),
    }
    for key, want in (("n_ctx", N_CTX), ("n_batch", N_BATCH), ("n_threads", N_THREADS),
                      ("flash_attn_type", llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED),
                      ("type_k", llama_cpp.GGML_TYPE_F16), ("type_v", llama_cpp.GGML_TYPE_F16)):
        if settings[key] != want:
            die(f"llama.cpp context has {key}={settings[key]}, expected {want}")

    tok_cases = tokenize_cases(llm)
    write_json(
        os.path.join(args.out, f"{args.prefix}_tokenize.json"),
        {"settings": settings, "cases": tok_cases},
    )

    if template:
        renderer = Renderer(template, bos_token, eos_token)
    else:
        adds_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
        renderer = BuiltinRenderer(args.builtin_template, bos_token if adds_bos else "")
        settings["template_source"] = f"llama.cpp built-in '{args.builtin_template}'"
    chat_cases = []
    for name, messages, add_gen in CHAT_CASES:
        text = renderer.render(messages, add_gen)
        # llama-cpp-python's own formatter renders the same template; agreeing with it
        # guards against a mistake in the environment set up above.
        theirs = template and llama_chat_format.Jinja2ChatFormatter(
            template, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=add_gen
        )(messages=messages).prompt
        if template and theirs != text:
            die(f"chat case {name}: our jinja2 rendering differs from llama-cpp-python's")
        chat_cases.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_gen,
                "text": text,
                "ids": tokenize(llm, text),
            }
        )
    write_json(
        os.path.join(args.out, f"{args.prefix}_chat.json"),
        {"settings": settings, "template": template, "cases": chat_cases},
    )
    llm.close()

    greedy = []
    first = []
    for name, messages in GREEDY_CASES:
        case, logits = greedy_case(args.model, renderer, name, messages, stop_ids)
        greedy.append(case)
        first.append(logits)
        print(
            f"{name}: {len(case['steps'])} steps, {case['stop_reason']}, "
            f"first near tie at {case['first_near_tie_step']}: {case['completion_text']!r}",
            file=sys.stderr,
        )
    logits_file = f"{args.prefix}_first_logits.f32"
    write_json(
        os.path.join(args.out, f"{args.prefix}_greedy.json"),
        {
            "settings": dict(
                settings,
                max_new_tokens=MAX_NEW_TOKENS,
                sampling="greedy argmax, lowest id on exact ties, no repetition penalty",
                stop_ids=stop_ids,
                top_n=TOP_N,
                near_tie=NEAR_TIE,
                first_logits_file=logits_file,
                first_logits_cases=args.first_logits_cases,
                first_logits_layout="little-endian f32, [first_logits_cases][n_vocab], "
                "the first greedy cases in order",
            ),
            "cases": greedy,
        },
    )
    np.stack(first[: args.first_logits_cases]).astype("<f4").tofile(os.path.join(args.out, logits_file))

    for suffix in ("tokenize.json", "chat.json", "greedy.json", "first_logits.f32"):
        path = os.path.join(args.out, f"{args.prefix}_{suffix}")
        print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
