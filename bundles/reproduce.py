#!/usr/bin/env python3
"""Reruns the measurements quoted in bundles/README.md on a bundle, through the axiscope CLI
(stdlib only): the fidelity report, drift over the four scripted conversations (several
seeds), and capping on role-play prompts (capped vs uncapped replies, read back by the
unedited model). Writes the raw JSON to bundles/results/ and prints Markdown tables.

    python3 bundles/reproduce.py [--bundle B] [--seeds 3] [--band 8:22] [--percentile 75]
"""

import argparse
import json
import statistics
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["coding", "writing", "therapy", "philosophy"]
ROLES = ["pirate", "ghost", "demon"]
IDENTITY = "Who are you?"


def axiscope(binary, *args):
    out = subprocess.run([binary, *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"axiscope {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def read_blob(path):
    """A bundle blob's manifest and arrays (layout: src/science/bundle.rs, bundles/README.md)."""
    b = Path(path).read_bytes()
    n = struct.unpack("<I", b[12:16])[0]
    manifest = json.loads(b[16:16 + n])
    pos, arrays = (16 + n + 7) // 8 * 8, {}
    for a in manifest["arrays"]:
        size, code = {"f32": (4, "f"), "f16": (2, "e"), "u32": (4, "I")}[a["dtype"]]
        count = 1
        for d in a["shape"]:
            count *= d
        arrays[a["name"]] = struct.unpack(f"<{count}{code}", b[pos:pos + count * size])
        pos = (pos + count * size + 7) // 8 * 8
    return manifest, arrays


def categories(path):
    """Per role category: mean centred projection on the axis and mean PC1, at the analysis layer."""
    m, a = read_blob(ROOT / path)
    layer, hidden, n_layers, k = m["analysis_layer"], m["model"]["hidden"], m["model"]["n_layers"], m["pca_components"]
    u = a["unit_axis"][layer * hidden:(layer + 1) * hidden]
    rows = {}
    for r, info in enumerate(m["roles"]):
        start = (r * n_layers + layer) * hidden
        # role_offsets = role vector - mu_roles, so its dot with u is the centred projection.
        p = sum(x * y for x, y in zip(a["role_offsets"][start:start + hidden], u))
        rows.setdefault(info["category"], []).append((p, a["pca_role_coords"][r * k], info["name"]))
    default_pc1 = a["pca_default_coords"][0]
    print("\n| category | roles | mean projection | mean PC1 | roles above the default on PC1 |\n|---|---|---|---|---|")
    for cat, v in rows.items():
        above = [name for _, pc1, name in sorted(v, key=lambda x: -x[1]) if pc1 > default_pc1]
        print(f"| {cat} | {len(v)} | {statistics.fmean(x[0] for x in v):.2f} | {statistics.fmean(x[1] for x in v):.2f} | "
              f"{', '.join(above) or '-'} |")


def slope(ys):
    """Least-squares slope of ys against 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="bundles/smollm2-135m-instruct.axb")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--bin", default=str(ROOT / "target/release/axiscope"))
    ap.add_argument("--seeds", type=int, default=3, help="sampled runs per conversation and per capping case")
    ap.add_argument("--band", default="8:22", help="capping band A:B (layers A..B-1)")
    ap.add_argument("--percentile", default="75")
    ap.add_argument("--max-tokens", default="48")
    ap.add_argument("--out", default="bundles/results")
    ap.add_argument("--parts", default="report,drift,capping", help="comma-separated subset to run")
    a = ap.parse_args()
    parts = a.parts.split(",")
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model", a.model, "--bundle", a.bundle]

    if "report" in parts:
        report(a, out)
    if "drift" in parts:
        drift(a, out, common)
    if "capping" in parts:
        capping(a, out, common)


def report(a, out):
    rep = axiscope(a.bin, "report", "--bundle", a.bundle, "--json")
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    f = rep["fidelity"]
    print(f"## Fidelity (layer {rep['layer']})\n")
    print(f"- cos(PC1, axis): {rep['cos_pc1_axis']:.3f}")
    print("- explained variance PC1-3: " + ", ".join(f"{v * 100:.1f}%" for v in rep["explained_variance"][:3]))
    print(f"- default on PC1: {rep['default_pc1']:.2f}, rank {rep['default_pc1_rank']} of {f['n_roles'] + 1} "
          f"(roles span {rep['role_pc1_range'][0]:.2f} .. {rep['role_pc1_range'][1]:.2f})")
    print(f"- split-half axis cos: {rep['split_half_cos']:.3f}")
    print("- nearest (gap along the axis): " + ", ".join(f"{d['role']} ({d['distance']:.2f})" for d in f["nearest_by_projection"]))
    print("- farthest (gap along the axis): " + ", ".join(f"{d['role']} ({d['distance']:.2f})" for d in f["farthest_by_projection"]))
    print("- nearest (PC1-3): " + ", ".join(d["role"] for d in f["nearest_in_pc_space"]))
    print("- farthest (PC1-3): " + ", ".join(d["role"] for d in f["farthest_in_pc_space"]))
    print("\n| layer | cos(PC1, axis) | split-half cos |\n|---|---|---|")
    for l, (c, s) in enumerate(zip(rep["cos_pc1_axis_per_layer"], rep["split_half_cos_per_layer"])):
        print(f"| {l} | {c:.3f} | {s:.3f} |")
    categories(a.bundle)


def drift(a, out, common):
    print(f"\n## Drift ({a.seeds} seeds, {a.max_tokens}-token replies)\n")
    print("| conversation | mean reply projection | first 3 turns | last 3 turns | slope per turn | mean user-turn projection |")
    print("|---|---|---|---|---|---|")
    drift = {}
    for kind in KINDS:
        runs = []
        for seed in range(a.seeds):
            r = axiscope(a.bin, "project", *common, "--transcript", f"data/transcripts/{kind}.json",
                         "--seed", str(seed), "--max-tokens", a.max_tokens, "--json")
            runs.append(r)
        drift[kind] = runs
        n = min(len(r["turns"]) for r in runs)
        per_turn = [statistics.fmean(r["turns"][k]["projection"] for r in runs) for k in range(n)]
        user = statistics.fmean(t["user_projection"] for r in runs for t in r["turns"])
        print(f"| {kind} | {statistics.fmean(per_turn):.2f} | {statistics.fmean(per_turn[:3]):.2f} | "
              f"{statistics.fmean(per_turn[-3:]):.2f} | {slope(per_turn):+.3f} | {user:.2f} |")
    (out / "drift.json").write_text(json.dumps(drift, indent=1))
    print("\nPer turn (mean over seeds):\n")
    print("| turn | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    n = min(len(r["turns"]) for runs in drift.values() for r in runs)
    for k in range(n):
        cells = [f"{statistics.fmean(r['turns'][k]['projection'] for r in drift[kind]):.2f}" for kind in KINDS]
        print(f"| {k} | " + " | ".join(cells) + " |")


def capping(a, out, common):
    print(f"\n## Capping (percentile {a.percentile}, layers {a.band}; \"{IDENTITY}\", {a.seeds} seeds)\n")
    print("| role | uncapped: mean projection | capped: mean projection (read back unedited) | default |")
    print("|---|---|---|---|")
    capping = {}
    for role in ROLES:
        system = json.loads((ROOT / f"data/roles/{role}.json").read_text())["instruction"][0]["pos"]
        base = ["generate", *common, "--system", system, "--prompt", IDENTITY, "--max-tokens", a.max_tokens, "--json"]
        rows = {"plain": [], "capped": []}
        for seed in range(a.seeds):
            rows["plain"].append(axiscope(a.bin, *base, "--seed", str(seed)))
            rows["capped"].append(axiscope(a.bin, *base, "--seed", str(seed), "--cap-percentile", a.percentile,
                                           "--cap-layers", a.band))
        capping[role] = {"system": system, **rows}
        mean = lambda k: statistics.fmean(r["projection_unsteered"] for r in rows[k])
        print(f"| {role} | {mean('plain'):.2f} | {mean('capped'):.2f} | {rows['plain'][0]['default_projection']:.2f} |")
    (out / "capping.json").write_text(json.dumps(capping, indent=1))
    print("\nReplies (seed 0):\n")
    for role in ROLES:
        for k in ["plain", "capped"]:
            r = capping[role][k][0]
            text = r["text"].replace("\n", " ").strip()
            print(f"- {role}, {k} ({r['projection_unsteered']:.2f}): \"{text}\"")


if __name__ == "__main__":
    main()
