#!/usr/bin/env python3
"""Validate an axiscope persona data folder (stdlib only).

Usage:
  scripts/check_data.py [DATA_DIR]            # our own data set (default: data/), all rules
  scripts/check_data.py --format-only DIR     # someone else's data: only what axiscope reads
  scripts/check_data.py --self-test           # show that each rule catches a broken copy

Layout checked (see data/README.md):
  DIR/roles/<role>.json     {"instruction": [{"pos": "..."}, ...]}  (+ "role", "category" in ours)
  DIR/roles/default.json    the default (Assistant) condition, same format
  DIR/questions.jsonl       one {"question": "...", "id": N} per line
  DIR/transcripts/*.json    {"conversation": [{"role": "user"|"assistant", "content": "..."}]}

Exits 1 and lists every problem when a check fails; prints a summary either way.
"""

import json
import os
import re
import shutil
import sys
import tempfile

CATEGORIES = ("assistant-like", "human", "fantastical")
# The five default prompts are fixed by the method (docs/method.md, "Persona data").
DEFAULT_PROMPTS = [
    "",
    "You are an AI assistant.",
    "You are a large language model.",
    "You are {model_name}.",
    "Respond as yourself.",
]
TRANSCRIPT_KINDS = ("coding", "writing", "therapy", "philosophy")
PROMPTS_PER_ROLE = 5
MIN_ROLES = 64
MIN_QUESTIONS = 72
USER_TURNS = 12
# "Roughly a third each": no category may fall below a quarter of the roles.
MIN_CATEGORY_SHARE = 0.25
# Prompts are 1-3 sentences, questions one short sentence; these keep them
# short enough for a 135M model's small context.
MAX_PROMPT_SENTENCES = 3
MAX_QUESTION_CHARS = 120
MAX_TURN_SENTENCES = 3
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# A sentence ends at . ! or ? (optionally inside a closing quote) before space or end.
SENTENCE_END = re.compile(r"[.!?]['\")]?(?=\s|$)")


def sentences(text):
    return max(1, len(SENTENCE_END.findall(text)))


def load_json(path, errors):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        errors.append(f"{path}: cannot parse: {e}")
        return None


def nonempty_str(x):
    return isinstance(x, str) and x.strip() != ""


def read_prompts(path, obj, errors):
    """The system prompts a role file holds, or None if its shape is wrong."""
    if not isinstance(obj, dict) or not isinstance(obj.get("instruction"), list):
        errors.append(f"{path}: needs an object with an 'instruction' list")
        return None
    prompts = []
    for i, item in enumerate(obj["instruction"]):
        if not isinstance(item, dict) or not isinstance(item.get("pos"), str):
            errors.append(f"{path}: instruction[{i}] needs a string 'pos'")
            return None
        prompts.append(item["pos"])
    return prompts


def check_roles(root, strict, errors, summary):
    rdir = os.path.join(root, "roles")
    if not os.path.isdir(rdir):
        errors.append(f"{rdir}: missing folder")
        return
    names = sorted(n for n in os.listdir(rdir) if n.endswith(".json"))
    if "default.json" not in names:
        errors.append(f"{rdir}/default.json: missing (the default condition)")
    per_cat = {}
    seen_prompts = {}
    n_roles = 0
    for fname in names:
        path = os.path.join(rdir, fname)
        obj = load_json(path, errors)
        if obj is None:
            continue
        prompts = read_prompts(path, obj, errors)
        if prompts is None:
            continue
        stem = fname[: -len(".json")]
        if stem == "default":
            if strict and prompts != DEFAULT_PROMPTS:
                errors.append(f"{path}: prompts must be exactly {DEFAULT_PROMPTS}")
            elif not prompts:
                errors.append(f"{path}: no prompts")
            if strict and (obj.get("role"), obj.get("category")) != ("default", "default"):
                errors.append(f"{path}: role and category must both be 'default'")
            continue
        n_roles += 1
        if not prompts:
            errors.append(f"{path}: no prompts")
        if not strict:
            continue
        if not SNAKE.match(stem):
            errors.append(f"{path}: file name is not lowercase snake_case")
        if obj.get("role") != stem:
            errors.append(f"{path}: 'role' is {obj.get('role')!r}, expected {stem!r}")
        cat = obj.get("category")
        if cat not in CATEGORIES:
            errors.append(f"{path}: category {cat!r} not one of {CATEGORIES}")
        per_cat[cat] = per_cat.get(cat, 0) + 1
        if len(prompts) != PROMPTS_PER_ROLE:
            errors.append(f"{path}: {len(prompts)} prompts, expected {PROMPTS_PER_ROLE}")
        for i, p in enumerate(prompts):
            where = f"{path}: prompt {i}"
            if not nonempty_str(p):
                errors.append(f"{where}: empty")
                continue
            # Second person: the model is asked to *be* the character.
            if not p.startswith("You"):
                errors.append(f"{where}: should address the model as 'You ...'")
            if sentences(p) > MAX_PROMPT_SENTENCES:
                errors.append(f"{where}: more than {MAX_PROMPT_SENTENCES} sentences")
            if p in seen_prompts:
                errors.append(f"{where}: same text as {seen_prompts[p]}")
            seen_prompts[p] = where
    if n_roles < (MIN_ROLES if strict else 1):
        errors.append(f"{rdir}: {n_roles} roles, need at least {MIN_ROLES if strict else 1}")
    if strict and n_roles:
        for cat in CATEGORIES:
            if per_cat.get(cat, 0) < MIN_CATEGORY_SHARE * n_roles:
                errors.append(f"{rdir}: only {per_cat.get(cat, 0)} '{cat}' roles of {n_roles}")
    cats = ", ".join(f"{c}={n}" for c, n in sorted(per_cat.items(), key=str))
    summary.append(f"roles: {n_roles} (+ default)" + (f": {cats}" if cats else ""))


def check_questions(root, strict, errors, summary):
    path = os.path.join(root, "questions.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        errors.append(f"{path}: cannot read: {e}")
        return
    ids, texts = set(), set()
    count = 0
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{ln}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: cannot parse: {e}")
            continue
        if not isinstance(obj, dict) or not nonempty_str(obj.get("question")):
            errors.append(f"{where}: needs a non-empty string 'question'")
            continue
        q, qid = obj["question"], obj.get("id")
        # bool is an int subclass in Python; JSON true is not an id.
        if not isinstance(qid, int) or isinstance(qid, bool):
            errors.append(f"{where}: 'id' must be an integer")
            continue
        if qid in ids:
            errors.append(f"{where}: duplicate id {qid}")
        if q in texts:
            errors.append(f"{where}: duplicate question")
        if strict:
            if qid != count:
                errors.append(f"{where}: id {qid}, expected {count} (ids run 0.. in order)")
            if len(q) > MAX_QUESTION_CHARS or sentences(q) != 1 or not q.endswith("?"):
                errors.append(f"{where}: should be one short sentence ending in '?'")
        ids.add(qid)
        texts.add(q)
        count += 1
    if count < (MIN_QUESTIONS if strict else 1):
        errors.append(f"{path}: {count} questions, need at least {MIN_QUESTIONS if strict else 1}")
    summary.append(f"questions: {count}")


def check_transcripts(root, strict, errors, summary):
    tdir = os.path.join(root, "transcripts")
    if not os.path.isdir(tdir):
        errors.append(f"{tdir}: missing folder")
        return
    names = sorted(n for n in os.listdir(tdir) if n.endswith(".json"))
    if strict:
        for kind in TRANSCRIPT_KINDS:
            if f"{kind}.json" not in names:
                errors.append(f"{tdir}/{kind}.json: missing")
    parts = []
    for fname in names:
        path = os.path.join(tdir, fname)
        obj = load_json(path, errors)
        if obj is None:
            continue
        conv = obj.get("conversation") if isinstance(obj, dict) else None
        if not isinstance(conv, list) or not conv:
            errors.append(f"{path}: needs a non-empty 'conversation' list")
            continue
        users = 0
        bad = False
        for i, turn in enumerate(conv):
            where = f"{path}: turn {i}"
            if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
                errors.append(f"{where}: role must be 'user' or 'assistant'")
                bad = True
                continue
            if not nonempty_str(turn.get("content")):
                errors.append(f"{where}: empty content")
                bad = True
                continue
            if turn["role"] == "user":
                users += 1
                if strict and sentences(turn["content"]) > MAX_TURN_SENTENCES:
                    errors.append(f"{where}: more than {MAX_TURN_SENTENCES} sentences")
            elif strict:
                errors.append(f"{where}: ours hold user turns only (the app writes the replies)")
        if users == 0 and not bad:
            errors.append(f"{path}: no user turns")
        if strict:
            # <kind>.json is the app's preset; <kind>-<n>.json are more of the same kind,
            # for the drift statistics (bundles/reproduce.py).
            stem = fname[: -len(".json")]
            kind, _, n = stem.partition("-")
            if obj.get("kind") != kind or kind not in TRANSCRIPT_KINDS or (n and not n.isdigit()):
                errors.append(f"{path}: 'kind' is {obj.get('kind')!r}, expected {kind!r} "
                              f"(files are <kind>.json or <kind>-<n>.json, kind one of {TRANSCRIPT_KINDS})")
            if not nonempty_str(obj.get("title")):
                errors.append(f"{path}: needs a non-empty 'title'")
            if users != USER_TURNS:
                errors.append(f"{path}: {users} user turns, expected {USER_TURNS}")
        parts.append(f"{fname[:-5]}={users}")
    summary.append(f"transcripts: {len(names)} (user turns: {', '.join(parts)})")


def check(root, strict):
    errors, summary = [], []
    check_roles(root, strict, errors, summary)
    check_questions(root, strict, errors, summary)
    check_transcripts(root, strict, errors, summary)
    return errors, summary


def self_test(root):
    """Break a copy of the data one way at a time; every break must be reported."""
    base_errors, _ = check(root, True)
    if base_errors:
        print("self-test needs a clean data set first:\n  " + "\n  ".join(base_errors))
        return 1

    def edit_json(rel, fn):
        def apply(d):
            p = os.path.join(d, rel)
            with open(p, encoding="utf-8") as f:
                obj = json.load(f)
            fn(obj)
            with open(p, "w", encoding="utf-8") as f:
                json.dump(obj, f)
        return apply

    def write(rel, text, mode="w"):
        def apply(d):
            with open(os.path.join(d, rel), mode, encoding="utf-8") as f:
                f.write(text)
        return apply

    def remove(rel):
        return lambda d: os.remove(os.path.join(d, rel))

    role = "roles/ghost.json"
    cases = {
        "unparsable role": write(role, "{not json"),
        "four prompts": edit_json(role, lambda o: o["instruction"].pop()),
        "empty prompt": edit_json(role, lambda o: o["instruction"][0].update(pos=" ")),
        "third-person prompt": edit_json(role, lambda o: o["instruction"][0].update(pos="A ghost.")),
        "long prompt": edit_json(role, lambda o: o["instruction"][0].update(pos="You are. A. B. C.")),
        "role name mismatch": edit_json(role, lambda o: o.update(role="spirit")),
        "unknown category": edit_json(role, lambda o: o.update(category="spooky")),
        "prompt copied": edit_json(role, lambda o: o["instruction"][1].update(pos=o["instruction"][0]["pos"])),
        "missing default": remove("roles/default.json"),
        "changed default": edit_json("roles/default.json", lambda o: o["instruction"][0].update(pos="Hi.")),
        "too few roles": lambda d: [os.remove(os.path.join(d, "roles", n)) for n in sorted(os.listdir(os.path.join(d, "roles")))[:5] if n != "default.json"],
        "duplicate question id": write("questions.jsonl", json.dumps({"question": "Why not?", "id": 0}) + "\n", "a"),
        "empty question": write("questions.jsonl", json.dumps({"question": "", "id": 10**6}) + "\n", "a"),
        "bool id": write("questions.jsonl", json.dumps({"question": "Is it?", "id": True}) + "\n", "a"),
        "broken question line": write("questions.jsonl", "{\n", "a"),
        "transcript missing": remove("transcripts/therapy.json"),
        "bad turn role": edit_json("transcripts/coding.json", lambda o: o["conversation"][0].update(role="system")),
        "empty turn": edit_json("transcripts/coding.json", lambda o: o["conversation"][0].update(content="")),
        "eleven turns": edit_json("transcripts/writing.json", lambda o: o["conversation"].pop()),
        "wrong kind": edit_json("transcripts/writing.json", lambda o: o.update(kind="poetry")),
    }
    failed = 0
    for name, breaker in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "data")
            shutil.copytree(root, copy)
            breaker(copy)
            errors, _ = check(copy, True)
        status = "caught" if errors else "MISSED"
        failed += not errors
        print(f"  {status:6} {name}" + (f": {errors[0].replace(copy, 'DIR')}" if errors else ""))
    # The lenient mode must accept a data set that has only the keys axiscope reads.
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "data")
        shutil.copytree(root, copy)
        edit_json(role, lambda o: [o.pop("role"), o.pop("category")])(copy)
        errors, _ = check(copy, False)
        print(f"  {'ok' if not errors else 'FAILED':6} format-only accepts a role without role/category")
        failed += bool(errors)
    print(f"self-test: {len(cases) + 1 - failed}/{len(cases) + 1} passed")
    return 1 if failed else 0


def main(argv):
    strict = True
    args = []
    for a in argv:
        if a == "--format-only":
            strict = False
        elif a == "--self-test":
            args.append(a)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    here = os.path.dirname(os.path.abspath(__file__))
    default_root = os.path.join(here, "..", "data")
    if "--self-test" in args:
        return self_test(os.path.normpath(default_root))
    if len(args) > 1:
        print("expected at most one data folder; see --help")
        return 2
    root = os.path.normpath(args[0] if args else default_root)
    errors, summary = check(root, strict)
    print(f"{root} ({'all rules' if strict else 'format only'})")
    for line in summary:
        print("  " + line)
    if errors:
        print(f"{len(errors)} problem(s):")
        for e in errors:
            print("  " + e)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
