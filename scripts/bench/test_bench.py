"""Tests of the benchmark harness itself (no model needed):
    python3 -m unittest discover -s scripts/bench -p 'test_*.py'
The statistics are checked against figures worked out by hand, the process measurement
against a child whose memory and CPU use are known."""

import json
import os
import sys
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import run  # noqa: E402
import stats  # noqa: E402


def rec(runner, rep, decode, prefill=100.0, busy=False, attempt=1, ok=True, tokens=(1, 2, 3),
        warmup=False):
    return {
        "runner": runner, "rep": rep, "attempt": attempt, "warmup": warmup, "ok": ok,
        "error": None if ok else "boom", "busy": busy,
        "busy_reason": "x" if busy else None, "tokens": list(tokens),
        "prefill_tok_s": prefill, "decode_tok_s": decode, "ttft_ms": 1000.0,
        "load_ms": 200.0, "peak_rss_mb": 150.0,
        "machine": {"loadavg_before": [1.0, 0, 0], "loadavg_after": [2.0, 0, 0],
                    "foreign_cpu": 0.1, "steal_cpu": 0.0, "runqueue_wait": 0.0},
    }


def runner(rid, engine, threads, variant="plain", peer=None, baseline=None):
    return {"id": rid, "engine": engine, "backend": "cpu", "threads": threads,
            "variant": variant, "peer": peer, "baseline": baseline}


def result(runs, runners):
    r = {
        "started": "2026-11-27T00:00:00+00:00", "runs": runs, "runners": runners,
        "machine": {"cpu": "test cpu", "cores": 2, "kernel": "k", "git_commit": "abcdef0123",
                    "git_dirty": False},
        "settings": {"model": "m.gguf", "prompt_tokens": 128, "generated_tokens": 3,
                     "reps": 3, "busy_rule": stats.BUSY_RULE, "capping": "not measured"},
    }
    r["summary"] = stats.summarize(r)
    return r


class BusyRule(unittest.TestCase):
    def test_needs_both_others_cpu_and_waiting(self):
        m = {"foreign_cpu": 1.5, "steal_cpu": 0.0, "runqueue_wait": 0.2}
        self.assertTrue(stats.busy_verdict(1, 2, m)[0])
        m["runqueue_wait"] = 0.01  # others ran on time the run left idle
        self.assertFalse(stats.busy_verdict(2, 2, m)[0])
        # The run's threads waited for each other: no one else wanted the CPU.
        m = {"foreign_cpu": 0.1, "steal_cpu": 0.0, "runqueue_wait": 0.3}
        self.assertFalse(stats.busy_verdict(2, 2, m)[0])
        m = {"foreign_cpu": 0.0, "steal_cpu": 0.3, "runqueue_wait": 0.0}
        self.assertTrue(stats.busy_verdict(1, 2, m)[0])  # the hypervisor took the vCPU

    def test_free_cores_belong_to_others(self):
        m = {"foreign_cpu": 1.1, "steal_cpu": 0.0, "runqueue_wait": None}
        self.assertFalse(stats.busy_verdict(1, 2, m)[0])  # the other core was theirs
        self.assertTrue(stats.busy_verdict(2, 2, m)[0])  # no schedstat: others' CPU alone
        self.assertTrue(stats.busy_verdict(0, 2, m)[0])  # 0 threads: one per core
        self.assertEqual(stats.busy_threshold(1, 16), 15.25)


class Selection(unittest.TestCase):
    def test_clean_retry_replaces_busy_attempt(self):
        runs = [rec("a", 1, 10, busy=True), rec("a", 1, 20, attempt=2),
                rec("a", 2, 30), rec("a", 3, 40), rec("a", 0, 99, warmup=True)]
        chosen, quality, discarded = stats.selected(runs, "a")
        self.assertEqual(sorted(r["decode_tok_s"] for r in chosen.values()), [20, 30, 40])
        self.assertEqual((quality, discarded), ("clean", 0))

    def test_busy_reps_discarded_when_three_clean(self):
        runs = [rec("a", 1, 10), rec("a", 2, 20), rec("a", 3, 30), rec("a", 4, 1, busy=True)]
        chosen, quality, discarded = stats.selected(runs, "a")
        self.assertEqual(len(chosen), 3)
        self.assertEqual((quality, discarded), ("clean", 1))

    def test_too_few_clean_uses_all_and_says_busy(self):
        runs = [rec("a", 1, 10), rec("a", 2, 20, busy=True), rec("a", 3, 30, busy=True),
                rec("a", 4, 0, ok=False)]
        chosen, quality, _ = stats.selected(runs, "a")
        self.assertEqual(len(chosen), 3)
        self.assertEqual(quality, "busy")


class Summary(unittest.TestCase):
    def setUp(self):
        runs = []
        # axiscope decode 50, 60, 70; llama.cpp 100, 100, 140; recording 40, 60, 70.
        for rep, (ax, lc, rc) in enumerate([(50, 100, 40), (60, 100, 60), (70, 140, 70)], 1):
            runs += [rec("ax", rep, ax), rec("lc", rep, lc, tokens=(1, 2, 9)),
                     rec("rec", rep, rc)]
        self.r = result(runs, [runner("ax", "axiscope", 1, peer="lc"),
                               runner("lc", "llama.cpp", 1),
                               runner("rec", "axiscope", 1, "record-all", baseline="ax")])
        self.by = {s["runner"]: s for s in self.r["summary"]["runners"]}

    def test_median_min_max(self):
        self.assertEqual(self.by["ax"]["decode_tok_s"],
                         {"median": 60, "min": 50, "max": 70, "n": 3})

    def test_ratios_to_peer(self):
        vs = self.by["ax"]["vs"]
        self.assertAlmostEqual(vs["ratio_of_medians"]["decode_tok_s"], 0.6)
        # Per rep 0.5, 0.6, 0.5 -> median 0.5.
        self.assertAlmostEqual(vs["paired_decode_ratio"], 0.5)
        self.assertEqual(vs["same_leading_tokens"], 2)

    def test_overhead_is_decode_time(self):
        o = self.by["rec"]["overhead"]
        # Per rep: 50/40 - 1 = 25 %, 0 %, 0 % -> median 0 %; from medians 60/60 - 1 = 0 %.
        self.assertAlmostEqual(o["decode_time_pct_paired"], 0.0)
        self.assertAlmostEqual(o["decode_time_pct_of_medians"], 0.0)
        self.assertTrue(o["same_tokens_as_baseline"])

    def test_changed_tokens_are_caught(self):
        runs = [rec("ax", i, 50) for i in (1, 2, 3)] + [
            rec("rec", i, 50, tokens=(1, 2, 4)) for i in (1, 2, 3)]
        r = result(runs, [runner("ax", "axiscope", 1),
                          runner("rec", "axiscope", 1, "record-all", baseline="ax")])
        self.assertFalse(r["summary"]["runners"][1]["overhead"]["same_tokens_as_baseline"])
        self.assertIn("**no**", report.markdown(r))

    def test_markdown_and_svg(self):
        md = report.markdown(self.r)
        rows = [line for line in md.splitlines() if line.startswith("| axiscope")
                or line.startswith("| llama.cpp")]
        self.assertEqual(len(rows), 4)  # three runners + one overhead row
        self.assertIn("60.0 (50.0-70.0)", md)
        self.assertIn("0.60x llama.cpp CPU, 1 thr", md)
        root = ET.fromstring(report.svg(self.r))
        ns = "{http://www.w3.org/2000/svg}"
        bars = [e for e in root.iter(ns + "rect") if e.get("class") == "bar"]
        self.assertEqual(len(bars), 6)  # prefill + decode for each of the three runners
        whiskers = [e for e in root.iter(ns + "line") if e.get("class") == "whisker"]
        self.assertEqual(len(whiskers), 6)
        # The tallest whisker top (llama.cpp prefill/decode max 140) is inside the plot.
        self.assertTrue(all(float(w.get("y2")) >= 60 for w in whiskers))

    def test_nice_axis(self):
        self.assertEqual(report._nice_max(151), 200)
        self.assertEqual(report._nice_max(0.3), 0.5)
        self.assertEqual(report._nice_max(2500), 2500)


class MapBuild(unittest.TestCase):
    """The browser's persona map rebuild (browser.mjs --map): its own figures, not tok/s."""

    @staticmethod
    def build(rep, seconds, busy=False, ok=True):
        r = rec("axiscope-map", rep, None, busy=busy, ok=ok)
        r.update(size="quick", replies=142 if ok else None, roles=66 if ok else None,
                 seconds=seconds, replies_per_s=142 / seconds if ok else None,
                 cos_pc1_axis=0.9 if ok else None)
        return r

    def browser(self, map_runs):
        r = result([rec("ax", 1, 50)], [runner("ax", "axiscope", 1)])
        r.update(machine={**r["machine"], "chromium": "Chromium 1", "wllama": "3"},
                 map_runs=map_runs)
        r["settings"].update(wasm=[], priority="normal")
        r["summary"] = stats.summarize(r)
        return r

    def test_median_min_max_and_the_markdown_line(self):
        r = self.browser([self.build(1, 300.0), self.build(2, 200.0), self.build(3, 400.0),
                          self.build(4, 100.0, busy=True), self.build(5, None, ok=False)])
        mb = r["summary"]["map_build"]
        self.assertEqual(mb["seconds"], {"median": 300.0, "min": 200.0, "max": 400.0, "n": 3})
        self.assertAlmostEqual(mb["replies_per_s"]["median"], 142 / 300)
        self.assertEqual((mb["size"], mb["replies"], mb["n_busy_reps_discarded"], mb["n_failed"]),
                         ("quick", 142, 1, 1))
        line = next(x for x in report.browser_markdown(r) if x.startswith("Persona map"))
        self.assertIn("(quick, 142 replies;", line)
        self.assertIn("300.0 (200.0-400.0) s, 0.47 (0.35-0.71) replies/s", line)
        self.assertIn("3 used, 1 busy discarded, 1 failed; failed: boom.", line)

    def test_absent_without_map_runs(self):
        r = self.browser([])
        self.assertIsNone(r["summary"]["map_build"])
        self.assertFalse(any(x.startswith("Persona map") for x in report.browser_markdown(r)))


class ProcessMeasurement(unittest.TestCase):
    def test_peak_rss_and_cpu_of_one_child(self):
        # Touches 80 MB and burns ~0.3 s of CPU; the harness must see both.
        code = ("import time; b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096]);"
                "t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
                "print('{\"done\": 1}')")
        rc, out, _, wall, ru, machine = run.run_child([sys.executable, "-c", code], 60)
        self.assertEqual(rc, 0)
        self.assertEqual(run.last_json_line(out), {"done": 1})
        self.assertGreater(ru.ru_maxrss / 1024, 80)
        self.assertGreater(machine["child_cpu_s"], 0.25)
        self.assertGreaterEqual(wall, 0.3)
        self.assertGreaterEqual(machine["foreign_cpu"], 0.0)

    @unittest.skipUnless(os.path.exists("/proc/self/schedstat"), "no schedstat")
    def test_runqueue_wait_seen_when_sharing_a_core(self):
        # The child shares CPU 0 with a busy grandchild of the same priority: its thread
        # waits for the CPU about half of the time it is runnable.
        code = ("import os, subprocess, sys, time\nos.sched_setaffinity(0, {0})\n"
                "g = subprocess.Popen([sys.executable, '-c', 'import time\\nt = time.time()"
                "\\nwhile time.time() - t < 1.5: pass'])\n"
                "t = time.time()\nwhile time.time() - t < 1.0: pass\ng.wait()\n")
        rc, _, err, _, _, machine = run.run_child([sys.executable, "-c", code], 60)
        self.assertEqual(rc, 0, err)
        self.assertGreater(machine["runqueue_wait"], 0.25)
        # Alone, a busy child hardly waits (unless this machine is loaded: then skip).
        rc, _, _, _, _, alone = run.run_child(
            [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 0.5: pass"], 60)
        if alone["foreign_cpu"] < 0.2:
            self.assertLess(alone["runqueue_wait"], 0.05)

    @unittest.skipUnless(os.geteuid() == 0, "raising priority needs root")
    def test_priority_is_raised(self):
        code = "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"
        rc, out, _, _, _, machine = run.run_child([sys.executable, "-c", code], 60, -5)
        self.assertEqual((rc, out.strip()), (0, "-5"))
        self.assertTrue(machine["priority"] is None or machine["priority"].startswith("nice -5"))

    def test_timeout_kills(self):
        rc, _, err, wall, _, _ = run.run_child([sys.executable, "-c",
                                                "import time; time.sleep(30)"], 0.5)
        self.assertNotEqual(rc, 0)
        self.assertLess(wall, 10)
        self.assertIn("killed", err)


class AxiscopeParse(unittest.TestCase):
    def runner(self, variant="plain"):
        return run.AxiscopeRunner(SimpleNamespace(), "cpu", 1, variant)

    def out(self, **kw):
        j = {"prompt_tokens": 128, "tokens": [5] * 64, "prefill_tok_s": 128.0,
             "decode_tok_s": 63.0, "stop": "max_tokens", "backend": "cpu (1 thread)",
             "recorded_layers": 30, "recorded_tokens": 191}
        j.update(kw)
        return "noise\n" + json.dumps(j) + "\n"

    def test_times_from_rates(self):
        m = self.runner().parse(self.out())
        self.assertAlmostEqual(m["prefill_ms"], 1000.0)
        self.assertAlmostEqual(m["decode_ms"], 1000.0)
        self.assertAlmostEqual(m["ttft_ms"], 1000.0)

    def test_early_stop_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "stopped early"):
            self.runner().parse(self.out(stop="end_of_turn"))

    def test_recording_must_cover_every_token(self):
        self.runner("record-all").parse(self.out())
        with self.assertRaisesRegex(ValueError, "recording incomplete"):
            self.runner("record-all").parse(self.out(recorded_tokens=128))

    def test_cap_run_has_no_load_time(self):
        m = self.runner("cap").parse(self.out())
        self.assertTrue(m["wall_has_extra"])
        ctx = SimpleNamespace(axiscope="ax", model="m", tokens=64, prompt_text="P",
                              prompt={"system": "S", "user": "U"}, bundle="b.axb",
                              cap_args=["--cap-percentile", "75", "--cap-layers", "21:27"])
        a = run.AxiscopeRunner(ctx, "cpu", 1, "cap").argv()
        self.assertNotIn("--raw", a)  # the CLI refuses --raw with a bundle
        self.assertEqual(a[a.index("--system"):], ["--system", "S", "--prompt", "U", "--bundle",
                         "b.axb", "--cap-percentile", "75", "--cap-layers", "21:27"])
        rec = {"ok": True, "prefill_tok_s": 1.0, "decode_tok_s": 1.0, "ttft_ms": 1.0,
               "load_ms": None, "peak_rss_mb": 1.0, "busy": False,
               "machine": {"runqueue_wait": None, "foreign_cpu": 0.0,
                           "loadavg_before": [0.0], "loadavg_after": [0.0]}}
        self.assertIn("load     - ms", run.fmt_run(rec))

    def test_argv(self):
        ctx = SimpleNamespace(axiscope="ax", model="m", tokens=64, prompt_text="P",
                              prompt={"system": "S", "user": "U"}, bundle="b.axb")
        a = run.AxiscopeRunner(ctx, "cpu", 2, "record-all").argv()
        for flag in (["--temperature", "0"], ["--repeat-penalty", "1"], ["--threads", "2"],
                     ["--raw", "--prompt", "P"], ["--record-layers", "all"]):
            i = a.index(flag[0])
            self.assertEqual(a[i:i + len(flag)], flag)
        self.assertEqual(run.AxiscopeRunner(ctx, "cpu", 2, "record-all").id,
                         "axiscope-cpu-2t-record-all")


class Arguments(unittest.TestCase):
    def test_bad_threads_rejected(self):
        for bad in (["--threads", "a"], ["--threads", "0"], ["--reps", "0"]):
            with self.assertRaises(SystemExit):
                run.parse_args(["--axiscope", "a", "--llamacpp-python", "p"] + bad)


if __name__ == "__main__":
    unittest.main()
