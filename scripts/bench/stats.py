"""The benchmark's rules and arithmetic: when a run counts as taken on a busy machine, which
runs a figure is made of, medians with min and max, ratios to the peer and overheads against
the baseline. Pure functions over the records run.py writes (tested in test_bench.py)."""

import statistics

# The 1-minute load average is recorded before and after each run, but it is a 60-s moving
# average that also counts this benchmark's own previous runs, so it cannot tell whether
# others took CPU from a run. The flag uses what the run's own threads went through.
MAX_RUNQUEUE_WAIT = 0.05
MAX_STEAL = 0.1
SPARE_MARGIN = 0.25

BUSY_RULE = (
    "A run is flagged busy when other processes used more CPU during it than the cores it "
    f"left free plus {SPARE_MARGIN} (the machine's busy time from /proc/stat less the run's "
    "own, per second) and, where the kernel has schedstat, its threads also spent more than "
    f"{MAX_RUNQUEUE_WAIT:.0%} of their runnable time waiting for a CPU (sampled from "
    "/proc/PID/task/*/schedstat every 50 ms); or when the hypervisor stole more than "
    f"{MAX_STEAL} cores. Both conditions, because each alone misleads: others may only use "
    "time the run left idle, and a run's threads may wait for each other (more threads "
    "than cores, as in a worker pool beside its calling thread). Runs start at high "
    "priority (own session, autogroup and process nice -20, as root), so compilers at "
    "normal priority mostly wait for them; a busy run is retried (--retries) and per "
    "repetition the clean attempt stands. A figure is the median over the clean "
    f"repetitions when there are at least {3} (busy ones are discarded and counted); "
    "otherwise over all repetitions, and it is marked busy."
)

METRICS = ("prefill_tok_s", "decode_tok_s", "ttft_ms", "load_ms", "peak_rss_mb")
MIN_CLEAN = 3


def busy_threshold(threads, cores):
    """Cores others may use without taking any from a run with `threads` threads (0: one
    per core), plus a margin: the fallback rule, and the quiet-machine test before a run."""
    used = cores if threads == 0 else min(threads, cores)
    return (cores - used) + SPARE_MARGIN


def busy_verdict(threads, cores, machine):
    if machine["steal_cpu"] > MAX_STEAL:
        return True, f"hypervisor steal {machine['steal_cpu']:.2f} cores > {MAX_STEAL}"
    limit = busy_threshold(threads, cores)
    others = machine["foreign_cpu"]
    if others <= limit:
        return False, None
    wait = machine.get("runqueue_wait")
    if wait is None:
        return True, f"others used {others:.2f} cores > {limit}"
    if wait > MAX_RUNQUEUE_WAIT:
        return True, f"others used {others:.2f} cores > {limit}, threads waited {wait:.1%}"
    return False, None


def spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def picks(runs, runner_id):
    """Per repetition of one runner, the attempt that stands for it: the clean successful one
    if any, else the last successful one. Returns {rep: record}."""
    out = {}
    for r in runs:
        if r["runner"] != runner_id or r["warmup"] or not r["ok"]:
            continue
        cur = out.get(r["rep"])
        if cur is None or cur["busy"] or not r["busy"]:
            out[r["rep"]] = r
    return out


def selected(runs, runner_id):
    """(records a figure is made of, quality, number of busy repetitions discarded)."""
    by_rep = picks(runs, runner_id)
    clean = {k: r for k, r in by_rep.items() if not r["busy"]}
    if len(clean) >= MIN_CLEAN:
        return clean, "clean", len(by_rep) - len(clean)
    return by_rep, ("busy" if len(clean) < len(by_rep) else "clean"), 0


def paired_median(a, b, fn):
    """Median of fn(a[rep], b[rep]) over the repetitions both have (runs adjacent in time)."""
    vals = [fn(a[k], b[k]) for k in sorted(set(a) & set(b))]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(x, y):
    return x / y if x is not None and y not in (None, 0) else None


def leading_agreement(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def summarize(result):
    runs = result["runs"]
    sel = {}
    out = []
    for d in result["runners"]:
        rid = d["id"]
        recs, quality, discarded = selected(runs, rid)
        sel[rid] = recs
        mine = [r for r in runs if r["runner"] == rid and not r["warmup"]]
        s = {
            "runner": rid, "engine": d["engine"], "backend": d["backend"],
            "threads": d["threads"], "variant": d["variant"],
            "quality": quality, "n_used": len(recs),
            "n_ok": sum(r["ok"] for r in mine),
            "n_failed": sum(not r["ok"] for r in mine),
            "n_busy_runs": sum(r["ok"] and r["busy"] for r in mine),
            "n_busy_reps_discarded": discarded,
            "errors": sorted({r["error"] for r in mine if r["error"]}),
        }
        for m in METRICS:
            s[m] = spread(r[m] for r in recs.values())
        s["engine_info"] = next((r.get("engine_info") for r in recs.values()), None)
        token_sets = {tuple(r["tokens"]) for r in recs.values()}
        s["deterministic"] = len(token_sets) <= 1
        out.append(s)

    by_id = {s["runner"]: s for s in out}
    for d in result["runners"]:
        s = by_id[d["id"]]
        mine = sel[d["id"]]
        peer = d.get("peer")
        if peer in by_id and by_id[peer]["n_used"] and s["n_used"]:
            p = by_id[peer]
            s["vs"] = {
                "peer": peer,
                "ratio_of_medians": {
                    m: ratio(s[m]["median"], p[m]["median"]) for m in METRICS
                    if s[m] and p[m]
                },
                "paired_decode_ratio": paired_median(
                    mine, sel[peer], lambda a, b: ratio(a["decode_tok_s"], b["decode_tok_s"])),
                "paired_prefill_ratio": paired_median(
                    mine, sel[peer], lambda a, b: ratio(a["prefill_tok_s"], b["prefill_tok_s"])),
                "same_leading_tokens": leading_agreement(
                    next(iter(mine.values()))["tokens"], next(iter(sel[peer].values()))["tokens"]),
            }
        base = d.get("baseline")
        if base in by_id and by_id[base]["n_used"] and s["n_used"]:
            b = by_id[base]
            # Decode *time* per token with the variant over without, less one.
            s["overhead"] = {
                "baseline": base,
                "decode_time_pct_paired": _pct(paired_median(
                    mine, sel[base], lambda v, w: ratio(w["decode_tok_s"], v["decode_tok_s"]))),
                "decode_time_pct_of_medians": _pct(
                    ratio(b["decode_tok_s"]["median"], s["decode_tok_s"]["median"])),
                "prefill_time_pct_of_medians": _pct(
                    ratio(b["prefill_tok_s"]["median"], s["prefill_tok_s"]["median"])),
                "same_tokens_as_baseline": {tuple(r["tokens"]) for r in mine.values()}
                == {tuple(r["tokens"]) for r in sel[base].values()},
            }

    timed = [r for r in runs if not r["warmup"]]
    la = [x for r in timed for x in (r["machine"]["loadavg_before"][0],
                                     r["machine"]["loadavg_after"][0])]
    return {
        "runners": out,
        "runs_total": len(timed),
        "runs_busy": sum(r["busy"] for r in timed),
        "runs_failed": sum(not r["ok"] for r in timed),
        "all_clean": all(s["quality"] == "clean" for s in out),
        "loadavg_1min": spread(la),
        "foreign_cpu": spread(r["machine"]["foreign_cpu"] for r in timed),
        "map_build": summarize_map_builds(result.get("map_runs", [])),
    }


def summarize_map_builds(runs):
    """The browser's persona map builds (browser.mjs --map), one runner: median (min-max) of
    time and replies per second, from the repetitions chosen as for the speed figures."""
    if not runs:
        return None
    recs, quality, discarded = selected(runs, runs[0]["runner"])
    used = list(recs.values())
    return {
        "runner": runs[0]["runner"],
        "size": next((r["size"] for r in used), None),
        "replies": next((r["replies"] for r in used), None),
        "roles": next((r["roles"] for r in used), None),
        "quality": quality, "n_used": len(used),
        "n_failed": sum(not r["ok"] for r in runs),
        "n_busy_reps_discarded": discarded,
        "errors": sorted({r["error"] for r in runs if r["error"]}),
        **{m: spread(r[m] for r in used) for m in ("seconds", "replies_per_s", "cos_pc1_axis")},
    }


def _pct(r):
    return None if r is None else (r - 1.0) * 100.0
