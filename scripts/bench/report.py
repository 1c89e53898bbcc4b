"""Renders a benchmark result (results.json, written by run.py) as a Markdown table and an SVG
bar chart. Standalone: `python3 scripts/bench/report.py target/bench/results.json` rewrites
results.md and results.svg next to it."""

import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape


def _label(s):
    if s["engine"] == "axiscope":
        where = s["backend"] if s["backend"] != "cpu" else "CPU"
    else:
        where = s["backend"].upper() if s["backend"] == "cpu" else s["backend"]
    thr = f", {s['threads']} thr" if s["threads"] else ""
    var = "" if s["variant"] == "plain" else f", {s['variant']}"
    return f"{s['engine']} {where}{thr}{var}"


def _fig(sp, digits=1):
    if not sp:
        return "-"
    return f"{sp['median']:.{digits}f} ({sp['min']:.{digits}f}-{sp['max']:.{digits}f})"


def _x(r):
    return "-" if r is None else f"{r:.2f}x"


def _pct(p):
    return "-" if p is None else f"{p:+.1f}%"


def _same(variant, same):
    if variant == "cap":
        # Capping is meant to change the reply whenever the floor binds.
        return "yes (the floor never bound)" if same else "no (the cap changed the reply)"
    return "yes" if same else "**no**"


def _runs(s):
    """How many repetitions a figure is made of, and what was left out or failed."""
    runs = f"{s['n_used']} used"
    if s["n_busy_reps_discarded"]:
        runs += f", {s['n_busy_reps_discarded']} busy discarded"
    if s["quality"] == "busy":
        runs += ", **busy machine**"
    if s["n_failed"]:
        runs += f", {s['n_failed']} failed"
    return runs


def _map_build(mb):
    """The persona map rebuild's line (browser.mjs --map)."""
    what = f"{mb['size']}, {mb['replies']} replies" if mb["replies"] else mb["size"] or "no size"
    cos = f"; cos(PC1, axis) {mb['cos_pc1_axis']['median']:.2f}" if mb["cos_pc1_axis"] else ""
    errors = "".join(f"; failed: {e}" for e in mb["errors"])
    return (f"Persona map rebuild in the browser ({what}; `?bench&map=`, one wasm thread, not "
            f"isolated, no map cache): {_fig(mb['seconds'])} s, "
            f"{_fig(mb['replies_per_s'], 2)} replies/s{cos}; {_runs(mb)}{errors}.")


def _tables(sm, generated_tokens):
    """The speed table, the overhead table and the notes for one summary (native or browser)."""
    by_id = {s["runner"]: s for s in sm["runners"]}
    lines = [
        "| Engine | Prefill tok/s | Decode tok/s | TTFT ms | Load ms | Peak RSS MB "
        "| Decode vs peer | Prefill vs peer | Runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sm["runners"]:
        vs = s.get("vs")
        if vs:
            peer = _label(by_id[vs["peer"]])
            dec = f"{_x(vs['ratio_of_medians'].get('decode_tok_s'))} {peer}"
            pre = _x(vs["ratio_of_medians"].get("prefill_tok_s"))
        else:
            dec = pre = "-"
        runs = _runs(s)
        lines.append(
            f"| {_label(s)} | {_fig(s['prefill_tok_s'])} | {_fig(s['decode_tok_s'])} "
            f"| {_fig(s['ttft_ms'], 0)} | {_fig(s['load_ms'], 0)} | {_fig(s['peak_rss_mb'], 0)} "
            f"| {dec} | {pre} | {runs} |"
        )
    over = [s for s in sm["runners"] if s.get("overhead")]
    lines.append("")
    if over:
        lines += [
            "| Variant | Decode time overhead (paired median) | (from medians) "
            "| Prefill time overhead | Same tokens as without |",
            "|---|---|---|---|---|",
        ]
        for s in over:
            o = s["overhead"]
            lines.append(
                f"| {_label(s)} | {_pct(o['decode_time_pct_paired'])} "
                f"| {_pct(o['decode_time_pct_of_medians'])} "
                f"| {_pct(o['prefill_time_pct_of_medians'])} "
                f"| {_same(s['variant'], o['same_tokens_as_baseline'])} |"
            )
        lines.append("")
    notes = []
    for s in sm["runners"]:
        if s["variant"] == "plain" and s.get("engine_info"):
            notes.append(f"{_label(s)}: {s['engine_info']}.")
    for s in [s for s in sm["runners"] if s.get("vs")]:
        notes.append(
            f"Greedy tokens, {_label(s)} vs {_label(by_id[s['vs']['peer']])}: the first "
            f"{s['vs']['same_leading_tokens']} of {generated_tokens} agree."
        )
    for s in sm["runners"]:
        if not s["deterministic"]:
            notes.append(f"{_label(s)}: repetitions generated different tokens.")
        for e in s["errors"]:
            notes.append(f"{_label(s)} failed: {e}")
    return lines, notes


def _machine_state(sm):
    la = sm["loadavg_1min"]
    fc = sm["foreign_cpu"]
    if not (la and fc):
        return "Machine state: no timed runs."
    return (f"Machine state: 1-minute load average {la['min']:.2f}-{la['max']:.2f} during the "
            f"runs; other processes used {fc['median']:.2f} cores in the median run (max "
            f"{fc['max']:.2f}); {sm['runs_busy']} of {sm['runs_total']} runs flagged busy, "
            f"{sm['runs_failed']} failed.")


def markdown(result):
    lines = []
    if result.get("runners"):
        m = result["machine"]
        st = result["settings"]
        sm = result["summary"]
        lines += [
            f"### Native benchmark, {result['started'][:10]}",
            "",
            f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; axiscope at "
            f"{m['git_commit'][:10]}{' (uncommitted changes)' if m['git_dirty'] else ''}. "
            f"{st['model']}; the standard {st['prompt_tokens']}-token ChatML prompt, "
            f"{st['generated_tokens']} greedy tokens; median (min-max) of {st['reps']} "
            f"interleaved repetitions.",
            "",
            _machine_state(sm),
            "",
        ]
        table, notes = _tables(sm, st["generated_tokens"])
        lines += table + [f"Capping overhead: {st['capping']}."] + notes
        lines += ["", f"Busy rule: {st['busy_rule']}", ""]
    if result.get("browser"):
        lines += browser_markdown(result["browser"])
    return "\n".join(lines)


def browser_markdown(br):
    """The in-browser part (scripts/bench/browser.mjs), merged by merge_browser.py."""
    m = br["machine"]
    st = br["settings"]
    sm = br["summary"]
    wasm = ", ".join(f"{w['name']} {w['bytes'] / 1e6:.2f} MB ({w['gzip_bytes'] / 1e6:.2f} MB gzip)"
                     for w in st["wasm"])
    lines = [
        f"### Browser benchmark, {br['started'][:10]}",
        "",
        f"{m['chromium']} headless on {m['cpu']}, {m['cores']} cores; wllama "
        f"{m['wllama']}; axiscope at {m['git_commit'][:10]}"
        f"{' (uncommitted changes)' if m['git_dirty'] else ''}. The same GGUF from the same "
        f"local server, the standard {st['prompt_tokens']}-token prompt, "
        f"{st['generated_tokens']} greedy tokens; median (min-max) of {st['reps']} interleaved "
        f"repetitions after a warm-up that caches the model. `wasm` pages are not "
        f"cross-origin isolated, `wasm+coi` pages are (COOP/COEP). Priority: "
        f"{st['priority']}.",
        "",
        _machine_state(sm),
        "",
    ]
    table, notes = _tables(sm, st["generated_tokens"])
    lines += table
    if sm.get("map_build"):
        lines += [_map_build(sm["map_build"]), ""]
    lines.append(f"axiscope wasm: {wasm}.")
    lines += notes
    lines += ["", "Busy rule (browser): a run is flagged busy when other processes used more "
              "CPU than the cores it left free plus 0.25 (machine busy time less the "
              "browser's own, per second), or the hypervisor stole more than 0.1 cores.", ""]
    return lines


def _nice_max(v):
    """A round axis maximum at or above v (1, 2, 2.5 or 5 times a power of ten)."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for f in (1, 2, 2.5, 5, 10):
        if f * p >= v:
            return f * p
    return 10 * p


def svg(result):
    """Grouped bars, one group per runner: prefill and decode tok/s medians, min-max
    whiskers. Groups whose figures come from a busy machine are marked with *."""
    runners = list(result["summary"]["runners"]) if result.get("runners") else []
    if result.get("browser"):
        # Browser engines after the native ones; their labels say wasm / webgpu.
        runners += result["browser"]["summary"]["runners"]
    groups = [s for s in runners if s["decode_tok_s"] or s["prefill_tok_s"]]
    series = (("prefill_tok_s", "prefill", "#4c78a8"), ("decode_tok_s", "decode", "#f58518"))
    W_GROUP, BAR, GAP = 150, 44, 8
    left, right, top, bottom = 70, 20, 60, 90
    width = left + right + max(1, len(groups)) * W_GROUP
    height = 420
    plot_h = height - top - bottom
    vmax = max([s[k]["max"] for s in groups for k, _, _ in series if s[k]] or [1.0])
    ymax = _nice_max(vmax * 1.08)

    def y(v):
        return top + plot_h * (1 - v / ymax)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">'
        f'{escape(_title(result))}</text>',
        f'<text x="{left}" y="40" fill="#555">{escape(_subtitle(result))}</text>',
    ]
    for i in range(6):
        v = ymax * i / 5
        yy = y(v)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
    out.append(f'<text transform="translate(18 {top + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">tokens / s</text>')
    for gi, s in enumerate(groups):
        gx = left + gi * W_GROUP + (W_GROUP - 2 * BAR - GAP) / 2
        for si, (key, _, color) in enumerate(series):
            sp = s[key]
            if not sp:
                continue
            x = gx + si * (BAR + GAP)
            cx = x + BAR / 2
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y(sp["median"]):.1f}" width="{BAR}" '
                       f'height="{y(0) - y(sp["median"]):.1f}" fill="{color}"/>')
            out.append(f'<line class="whisker" x1="{cx:.1f}" x2="{cx:.1f}" '
                       f'y1="{y(sp["min"]):.1f}" y2="{y(sp["max"]):.1f}" stroke="black"/>')
            for v in (sp["min"], sp["max"]):
                out.append(f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y(v):.1f}" '
                           f'y2="{y(v):.1f}" stroke="black"/>')
            out.append(f'<text x="{cx:.1f}" y="{y(sp["max"]) - 4:.1f}" text-anchor="middle" '
                       f'font-size="11">{sp["median"]:.0f}</text>')
        label = _label(s).split(", ", 1)
        cx = left + gi * W_GROUP + W_GROUP / 2
        star = " *" if s["quality"] == "busy" else ""
        out.append(f'<text x="{cx:.1f}" y="{y(0) + 18:.1f}" text-anchor="middle">'
                   f'{escape(label[0] + star)}</text>')
        if len(label) > 1:
            out.append(f'<text x="{cx:.1f}" y="{y(0) + 33:.1f}" text-anchor="middle">'
                       f'{escape(label[1])}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
               f'stroke="black"/>')
    lx = left
    ly = height - 22
    for _, name, color in series:
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{name} (median, whisker min-max)</text>')
        lx += 230
    if any(s["quality"] == "busy" for s in groups):
        out.append(f'<text x="{lx}" y="{ly}" fill="#a00">* measured on a busy machine</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _title(result):
    if result.get("runners") and result.get("browser"):
        return "axiscope vs llama.cpp (native) and wllama (browser), SmolLM2-135M Q4_1"
    if result.get("browser"):
        return "axiscope vs wllama in headless Chromium, SmolLM2-135M Q4_1"
    return "axiscope vs llama.cpp, SmolLM2-135M Q4_1, native"


def _subtitle(result):
    if not result.get("runners"):
        result = result["browser"]
    st = result["settings"]
    sm = result["summary"]
    return (f"{result['started'][:10]}, {result['machine']['cores']} cores; "
            f"{st['prompt_tokens']}-token prompt, {st['generated_tokens']} greedy tokens, "
            f"{st['reps']} reps; {sm['runs_busy']}/{sm['runs_total']} runs flagged busy")


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: report.py target/bench/results.json")
    path = Path(argv[0])
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"report: cannot read {path}: {e}")
    (path.parent / "results.md").write_text(markdown(result))
    (path.parent / "results.svg").write_text(svg(result))
    print(f"report: wrote {path.parent}/results.md and results.svg")


if __name__ == "__main__":
    main(sys.argv[1:])
