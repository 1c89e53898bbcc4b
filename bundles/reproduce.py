#!/usr/bin/env python3
"""Reruns the measurements quoted in bundles/README.md on a bundle, through the axiscope CLI
(stdlib only): the fidelity report with its intervals, drift over the scripted
conversations (3 per kind x several seeds, slope +- SE per kind, the user-turn control, and
whether the map's PC1 and the drift projection agree in sign), and capping on role-play
prompts as paired differences (capped - uncapped, same seed, read back by the unedited
model). The capping band and percentile are the CLI's default (`axiscope report --json`
gives them). Writes the raw JSON to bundles/results/ and prints Markdown tables.

    python3 bundles/reproduce.py [--bundle B] [--seeds 3] [--jobs 2]
"""

import argparse
import json
import math
import statistics
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["coding", "writing", "therapy", "philosophy"]
ROLES = ["pirate", "ghost", "demon", "vampire", "cowboy"]
IDENTITY = "Who are you?"
# Two-sided 90% t quantiles by degrees of freedom (the intervals' level, as the report's).
T90 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
       9: 1.833, 10: 1.812, 12: 1.782, 14: 1.761, 16: 1.746, 20: 1.725, 24: 1.711, 30: 1.697}


def t90(dof):
    """The quantile for `dof`, rounded down to a tabulated one (a slightly wider interval)."""
    if dof < 1:
        return float("nan")
    return 1.645 if dof > 30 else T90[max(k for k in T90 if k <= dof)]


def axiscope(binary, *args):
    out = subprocess.run([binary, *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"axiscope {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def parallel(jobs, calls):
    """Runs axiscope calls (tuples of arguments) on `jobs` threads, results in order."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda c: axiscope(*c), calls))


def read_blob(path):
    """A bundle blob's manifest and arrays (layout: src/science/bundle.rs, bundles/README.md)."""
    b = Path(path).read_bytes()
    version, n = struct.unpack("<II", b[8:16])
    manifest = json.loads(b[16:16 + n])
    pos, arrays = (16 + n + 7) // 8 * 8, {}
    for a in manifest["arrays"]:
        size, code = {"f32": (4, "f"), "f16": (2, "e"), "u32": (4, "I")}[a["dtype"]]
        count = math.prod(a["shape"])
        arrays[a["name"]] = struct.unpack(f"<{count}{code}", b[pos:pos + count * size])
        pos = (pos + count * size + 7) // 8 * 8
    return version, manifest, arrays


def mean_se(xs):
    """Mean and its standard error (sd / sqrt(n))."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def slope(ys):
    """Least-squares slope of ys against 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def categories(path):
    """Per role category: mean centred projection on the axis and mean PC1, at the analysis layer."""
    version, m, a = read_blob(ROOT / path)
    layer, hidden, n_layers, k = m["analysis_layer"], m["model"]["hidden"], m["model"]["n_layers"], m["pca_components"]
    n_roles = len(m["roles"])
    u = a["unit_axis"][layer * hidden:(layer + 1) * hidden]
    # Version 2 keeps the PCA of every layer, version 1 of the analysis layer only.
    coords = a["pca_role_coords"][layer * n_roles * k:] if version >= 2 else a["pca_role_coords"]
    default_pc1 = a["pca_default_coords"][layer * k if version >= 2 else 0]
    rows = {}
    for r, info in enumerate(m["roles"]):
        start = (r * n_layers + layer) * hidden
        # role_offsets = role vector - mu_roles, so its dot with u is the centred projection.
        p = sum(x * y for x, y in zip(a["role_offsets"][start:start + hidden], u))
        rows.setdefault(info["category"], []).append((p, coords[r * k], info["name"]))
    print("\n| category | roles | mean projection | mean PC1 | roles above the default on PC1 |\n|---|---|---|---|---|")
    for cat, v in rows.items():
        above = [name for _, pc1, name in sorted(v, key=lambda x: -x[1]) if pc1 > default_pc1]
        print(f"| {cat} | {len(v)} | {statistics.fmean(x[0] for x in v):.2f} | {statistics.fmean(x[1] for x in v):.2f} | "
              f"{', '.join(above) or '-'} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="bundles/smollm2-135m-instruct.axb")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--bin", default=str(ROOT / "target/release/axiscope"))
    ap.add_argument("--seeds", type=int, default=3, help="sampled runs per conversation and per capping case")
    ap.add_argument("--max-tokens", default="48")
    ap.add_argument("--jobs", type=int, default=2, help="axiscope processes run at once")
    ap.add_argument("--out", default="bundles/results")
    ap.add_argument("--rollouts-cache", help="the build's --rollouts-cache: with the 'sizes' part, "
                    "re-assembles smaller plans from it (the curve of the figures against build size)")
    ap.add_argument("--sizes-questions", type=int, default=16,
                    help="with 'sizes': the largest plan's questions per role, as the cache was built "
                    "(80, all of data/questions.jsonl, extends the curve past the committed build)")
    ap.add_argument("--parts", default="report,drift,capping",
                    help="comma-separated subset to run; 'defaults' prints the layer and capping default used")
    a = ap.parse_args()
    parts = a.parts.split(",")
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model", a.model, "--bundle", a.bundle]

    rep = axiscope(a.bin, "report", "--bundle", a.bundle, "--json")
    if "defaults" in parts:
        # What the capping part uses (tests/science/pipeline.rs checks it is the CLI's).
        print(json.dumps({"layer": rep["layer"], "capping": {k: rep["capping_default"][k] for k in ["band", "percentile"]}}))
    if "report" in parts:
        report(a, out, rep)
    if "drift" in parts:
        drift(a, out, common)
    if "capping" in parts:
        capping(a, out, common, rep["capping_default"])
    if "sizes" in parts:
        sizes(a, out)


def interval(i):
    return f"{i['value']:.3f} (90% {i['lo']:.3f} .. {i['hi']:.3f})"


def report(a, out, rep):
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    f = rep["fidelity"]
    layer = rep["layer"]
    h = rep.get("held_out")
    choice = rep.get("layer_choice")
    print(f"## Fidelity (layer {layer})\n")
    print(f"- layer: {'chosen, ' + choice['rule'] if choice else 'fixed (not chosen on held-out questions)'}")
    if h:
        print(f"- cos(PC1, axis): {interval(h['cos_pc1_axis'])} (bootstrap over questions)")
        print(f"- held-out cos(PC1, axis), PC1 of one question half against the axis of the other: "
              f"{interval(h['halves_cos_pc1_axis_interval'])} (range over {h['random_splits']} random half splits)")
        print(f"- the same on half B alone (questions the layer choice did not see): {h['half_b_cos_pc1_axis'][layer]:.3f}")
        print(f"- split-half cos of the axis: {interval(h['split_half_cos'])} (range over random half splits)")
        r = h["default_pc1_rank"]
        print(f"- the Assistant on PC1: {rep['default_pc1']:.2f}, rank {rep['default_pc1_rank']} of {f['n_roles'] + 1} "
              f"(90% {r['lo']:.0f} .. {r['hi']:.0f}, bootstrap over questions; roles span "
              f"{rep['role_pc1_range'][0]:.2f} .. {rep['role_pc1_range'][1]:.2f})")
    else:
        print(f"- cos(PC1, axis): {rep['cos_pc1_axis']:.3f}")
        print(f"- split-half axis cos: {rep['split_half_cos']}")
        print(f"- default on PC1: rank {rep['default_pc1_rank']} of {f['n_roles'] + 1}")
    print("- explained variance PC1-3: " + ", ".join(f"{v * 100:.1f}%" for v in rep["explained_variance"][:3]))
    print("- nearest (gap along the axis): " + ", ".join(f"{d['role']} ({d['distance']:.2f})" for d in f["nearest_by_projection"]))
    print("- farthest (gap along the axis): " + ", ".join(f"{d['role']} ({d['distance']:.2f})" for d in f["farthest_by_projection"]))
    print("- nearest (PC1-3): " + ", ".join(d["role"] for d in f["nearest_in_pc_space"]))
    print("- farthest (PC1-3): " + ", ".join(d["role"] for d in f["farthest_in_pc_space"]))
    cap = rep["capping_default"]
    reach = cap.get("reach")
    if reach:
        cells = ", ".join(f"{l}: {v * 100:.0f}%" for l, v in zip(range(*reach["band"]), reach["edited_fraction"]))
        print(f"- default cap (layers {cap['band'][0]}:{cap['band'][1]}, percentile {cap['percentile']}) "
              f"edits this share of the default Assistant's own {reach['tokens']} reply tokens: {cells}")
    print("\n| layer | cos(PC1, axis) | split-half cos | held-out cos A\\|B | held-out cos in B | choice score (A) |\n|---|---|---|---|---|---|")
    scores = choice["scores"] if choice else []
    for l, (c, s) in enumerate(zip(rep["cos_pc1_axis_per_layer"], rep["split_half_cos_per_layer"] or [])):
        ho = f"{h['halves_cos_pc1_axis'][l]:.3f} | {h['half_b_cos_pc1_axis'][l]:.3f}" if h else "- | -"
        sc = f"{scores[l]:.3f}" if l < len(scores) else "-"
        mark = " **<**" if l == layer else ""
        print(f"| {l}{mark} | {c:.3f} | {s:.3f} | {ho} | {sc} |")
    categories(a.bundle)


def transcripts(kind):
    """The kind's scripted conversations: <kind>.json (the app's preset) and <kind>-<n>.json."""
    files = sorted((ROOT / "data/transcripts").glob(f"{kind}*.json"))
    return [p for p in files if p.stem == kind or p.stem.startswith(kind + "-")]


def trail_agreement(runs, sd):
    """Whether the map's trail (a reply's PC1) and the drift chart (its projection on the axis)
    tell the same story for the replies clearly off the average role: more than one reply's
    SD away on the axis. A disagreement only contradicts the chart if the reply's PC1 is also
    more than one SD to the other side; within that, the map shows it inside its own spread."""
    clear = [(t["projection"], t["pc"][0]) for rs in runs.values() for r in rs for t in r["turns"]
             if sd and abs(t["projection"]) > sd]
    agree = sum(1 for p, pc1 in clear if (p > 0) == (pc1 > 0))
    other = [pc1 for p, pc1 in clear if (p > 0) != (pc1 > 0)]
    beyond = sum(1 for pc1 in other if abs(pc1) > sd)
    n_all = sum(len(r["turns"]) for rs in runs.values() for r in rs)
    text = (f"One reply's projection has SD {sd:.2f} (pooled spread of rollouts around their role's mean). "
            f"{len(clear)} of {n_all} replies lie more than that from the average role; on "
            f"{agree} of them the map's PC1 has the same sign as the drift projection")
    if other:
        text += (f"; the other {len(other)} lie within {max(map(abs, other)):.2f} of the average role on PC1, "
                 f"and {beyond} of them more than one SD to the other side")
    return text + "."


def drift(a, out, common):
    calls, keys = [], []
    for kind in KINDS:
        for path in transcripts(kind):
            for seed in range(a.seeds):
                keys.append((kind, path.stem, seed))
                calls.append((a.bin, "project", *common, "--transcript", str(path.relative_to(ROOT)),
                              "--seed", str(seed), "--max-tokens", a.max_tokens, "--json"))
    results = parallel(a.jobs, calls)
    runs = {}
    for (kind, conv, seed), r in zip(keys, results):
        runs.setdefault(kind, []).append({"conversation": conv, "seed": seed, **r})
    (out / "drift.json").write_text(json.dumps(runs, indent=1))
    sd = results[0]["reply_sd"]
    n_convs = {k: len({r["conversation"] for r in v}) for k, v in runs.items()}
    print(f"\n## Drift ({', '.join(f'{n_convs[k]} {k}' for k in KINDS)} conversations x {a.seeds} seeds, "
          f"{a.max_tokens}-token replies, layer {results[0]['layer']})\n")
    print("Slopes are least-squares per run (12 turns), then mean +- SE over the runs of a kind. "
          "The user-turn control is the same slope for the projections of the user's own turns.\n")
    print("| kind | runs | mean reply projection | slope per turn +- SE | user-turn slope +- SE | reply - user slope +- SE |")
    print("|---|---|---|---|---|---|")
    stats = {}
    for kind in KINDS:
        rs = runs[kind]
        reply = [slope([t["projection"] for t in r["turns"]]) for r in rs]
        user = [slope([t["user_projection"] for t in r["turns"]]) for r in rs]
        level = statistics.fmean(t["projection"] for r in rs for t in r["turns"])
        stats[kind] = {"reply": mean_se(reply), "user": mean_se(user),
                       "excess": mean_se([x - y for x, y in zip(reply, user)]), "n": len(rs)}
        s = stats[kind]
        sig = lambda m_se: f"{m_se[0]:+.3f} +- {m_se[1]:.3f}{' *' if abs(m_se[0]) > 2 * m_se[1] else ''}"
        print(f"| {kind} | {len(rs)} | {level:.2f} | {sig(s['reply'])} | {sig(s['user'])} | {sig(s['excess'])} |")
    print("\n\\* more than 2 SE from zero. Differences between kinds (reply slopes; * where |diff| > 2 SE):\n")
    print("| | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    for k1 in KINDS:
        cells = []
        for k2 in KINDS:
            (m1, s1), (m2, s2) = stats[k1]["reply"], stats[k2]["reply"]
            d, se = m1 - m2, math.hypot(s1, s2)
            cells.append("" if k1 == k2 else f"{d:+.2f}{' *' if abs(d) > 2 * se else ''}")
        print(f"| {k1} | " + " | ".join(cells) + " |")
    print("\n" + trail_agreement(runs, sd))
    print("\nPer turn (mean over all runs of a kind):\n")
    print("| turn | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    n = min(len(r["turns"]) for rs in runs.values() for r in rs)
    for k in range(n):
        cells = [f"{statistics.fmean(r['turns'][k]['projection'] for r in runs[kind]):.2f}" for kind in KINDS]
        print(f"| {k} | " + " | ".join(cells) + " |")


def capping(a, out, common, cap):
    band = f"{cap['band'][0]}:{cap['band'][1]}"
    percentile = str(cap["percentile"])
    print(f"\n## Capping (the default: percentile {percentile}, layers {band}; \"{IDENTITY}\", "
          f"{len(ROLES)} roles x {a.seeds} seeds)\n")
    calls, keys = [], []
    for role in ROLES:
        system = json.loads((ROOT / f"data/roles/{role}.json").read_text())["instruction"][0]["pos"]
        base = ["generate", *common, "--system", system, "--prompt", IDENTITY, "--max-tokens", a.max_tokens, "--json"]
        for seed in range(a.seeds):
            for kind, extra in [("plain", []), ("capped", ["--cap-percentile", percentile, "--cap-layers", band])]:
                keys.append((role, seed, kind, system))
                calls.append((a.bin, *base, "--seed", str(seed), *extra))
    results = parallel(a.jobs, calls)
    capping = {}
    for (role, seed, kind, system), r in zip(keys, results):
        capping.setdefault(role, {"system": system, "plain": [], "capped": []})[kind].append(r)
    (out / "capping.json").write_text(json.dumps(capping, indent=1))
    default = results[0]["default_projection"]
    print("Each pair: the same role prompt and seed, uncapped and capped; both replies read back by the "
          "unedited model at the analysis layer. Toward the default: the capped reply is closer to the "
          f"default's projection ({default:.2f}).\n")
    print("| role | uncapped mean | capped mean | paired difference +- SE | pairs toward the default |")
    print("|---|---|---|---|---|")
    diffs, toward = [], 0
    for role in ROLES:
        rows = capping[role]
        d = [c["projection_unsteered"] - p["projection_unsteered"] for p, c in zip(rows["plain"], rows["capped"])]
        t = sum(1 for p, c in zip(rows["plain"], rows["capped"])
                if abs(c["projection_unsteered"] - default) < abs(p["projection_unsteered"] - default))
        diffs += d
        toward += t
        m, se = mean_se(d)
        print(f"| {role} | {statistics.fmean(r['projection_unsteered'] for r in rows['plain']):.2f} | "
              f"{statistics.fmean(r['projection_unsteered'] for r in rows['capped']):.2f} | {m:+.2f} +- {se:.2f} | "
              f"{t} of {len(d)} |")
    m, se = mean_se(diffs)
    q = t90(len(diffs) - 1)
    print(f"| all | | | {m:+.2f} +- {se:.2f} (90% {m - q * se:+.2f} .. {m + q * se:+.2f}) | {toward} of {len(diffs)} |")
    print("\nReplies (seed 0):\n")
    for role in ROLES:
        for k in ["plain", "capped"]:
            r = capping[role][k][0]
            text = r["text"].replace("\n", " ").strip()
            print(f"- {role}, {k} ({r['projection_unsteered']:.2f}): \"{text}\"")


def sizes(a, out):
    """The figures against build size: smaller plans re-assembled from the full build's
    rollouts (fewer questions: a prefix of the same seeded choice; fewer default seeds)."""
    if not a.rollouts_cache:
        sys.exit("the 'sizes' part needs --rollouts-cache (the cache the bundle was built with)")
    tmp = ROOT / "target" / "sizes"
    tmp.mkdir(parents=True, exist_ok=True)
    plans = [(4, 1), (4, 4), (8, 1), (8, 4), (12, 4), (16, 1), (16, 2), (16, 4)]
    # Past the committed build: more questions, each a prefix of the same seeded shuffle, so
    # every smaller plan's rollouts are in a larger build's cache.
    plans += [(q, 4) for q in (24, 32, 48, 64, 80) if q <= a.sizes_questions]
    calls = [(a.bin, "build", "--model", a.model, "--questions-per-role", str(q), "--default-seeds", str(d),
              "--rollouts-cache", a.rollouts_cache, "--out", str(tmp / f"q{q}-d{d}.axb")) for q, d in plans]
    # build prints progress on stderr and nothing on stdout; `report --json` reads each bundle.
    for c in calls:
        r = subprocess.run(c, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"axiscope {' '.join(c[1:])} failed:\n{r.stderr}")
    reps = [axiscope(a.bin, "report", "--bundle", str(tmp / f"q{q}-d{d}.axb"), "--json") for q, d in plans]
    (out / "sizes.json").write_text(json.dumps([{"questions": q, "default_seeds": d, "report": r}
                                                for (q, d), r in zip(plans, reps)], indent=1))
    print("\n## Figures against build size (subsets of the default build's rollouts)\n")
    print("| questions | default seeds | rollouts | layer | split-half cos | held-out cos(PC1, axis) | "
          "held-out in B | cos(PC1, axis) | Assistant's PC1 rank | split-half at 15 | split-half at 20 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (q, d), r in zip(plans, reps):
        f, h, l = r["fidelity"], r.get("held_out"), r["layer"]
        n = f["role_rollouts"] + f["default_rollouts"]
        sh = r["split_half_cos_per_layer"]
        if h:
            cells = (f"{interval(h['split_half_cos'])} | {interval(h['halves_cos_pc1_axis_interval'])} | "
                     f"{h['half_b_cos_pc1_axis'][l]:.3f} | {interval(h['cos_pc1_axis'])} | "
                     f"{r['default_pc1_rank']} ({h['default_pc1_rank']['lo']:.0f}..{h['default_pc1_rank']['hi']:.0f})")
        else:
            cells = f"{r['split_half_cos']:.3f} | - | - | {r['cos_pc1_axis']:.3f} | {r['default_pc1_rank']}"
        print(f"| {q} | {d} | {n} | {l} | {cells} | {sh[15]:.3f} | {sh[20]:.3f} |")


if __name__ == "__main__":
    main()
