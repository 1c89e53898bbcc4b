"""The native benchmark: axiscope next to llama.cpp on the same GGUF and the same 128-token
prompt, interleaved, in one invocation. scripts/bench.sh builds and fetches what this needs
and then runs it; BENCHMARKS.md explains the metrics and the rules.

Every measurement is one child process run by a *runner*. A runner knows the command line and
how to read the child's JSON; the harness around it measures what no engine reports about
itself (wall time, peak RSS from wait4, the machine's load) and turns both into the same
record (see RECORD_FIELDS), so new runners (the GPU backend, a browser) plug in by adding one
class to `build_runners`.

Standard library only (the system python3); llama.cpp runs in its own venv's python.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (the sibling module; the path above makes it importable)
import stats  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# What every runner's record holds, whatever the engine (the contract for new runners).
RECORD_FIELDS = (
    "runner", "engine", "backend", "threads", "variant", "rep", "attempt", "seq", "warmup",
    "ok", "error", "prompt_tokens", "generated_tokens", "tokens",
    "prefill_tok_s", "decode_tok_s", "ttft_ms", "load_ms", "peak_rss_mb", "wall_s",
    "engine_info", "machine", "busy", "busy_reason",
)


def render_chatml(system, user):
    """The ChatML text SmolLM2's template renders for one user turn with a generation prompt."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


# ---------------------------------------------------------------- machine load

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def read_loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def read_cpu_jiffies():
    """(busy, steal) jiffies of the whole machine from /proc/stat's first line."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    v = [int(x) for x in parts[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return user + nice + system + irq + softirq, steal


def probe_foreign(seconds):
    """Cores in use by others over a short window while this harness sleeps."""
    b0, s0 = read_cpu_jiffies()
    time.sleep(seconds)
    b1, s1 = read_cpu_jiffies()
    return ((b1 - b0) + (s1 - s0)) / CLK_TCK / seconds


def wait_until_quiet(limit_s, threshold):
    """Waits up to `limit_s` for a 1-s window with less than `threshold` foreign cores.
    Returns (seconds waited, last probe)."""
    start = time.monotonic()
    probe = probe_foreign(1.0)
    while probe > threshold and time.monotonic() - start < limit_s:
        probe = probe_foreign(1.0)
    return time.monotonic() - start, probe


def raise_priority(nice):
    """In the child before exec. With autogroup scheduling (Linux's default for desktops and
    these VMs) CPU is shared between sessions first, so a process's own nice value only
    matters against its own session: the child gets a session of its own, and that
    session's autogroup gets the niceness. The child's threads inherit both."""
    os.setsid()
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroup scheduling: the process nice value below is what counts
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def read_priority(pid):
    """`nice N, autogroup nice M` as the child got it (None once it has exited)."""
    try:
        nice = os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return f"nice {nice}, autogroup {f.read().split()[-1]}"
    except (OSError, IndexError):
        return f"nice {nice}"


class SchedWatch(threading.Thread):
    """Samples /proc/PID/task/*/schedstat (per thread: ns on a CPU, ns runnable but waiting
    for one) every `interval` s while the child runs, keeping each thread's latest values.
    The waiting time is the direct measure of a busy machine: time the run's threads were
    ready and others had the CPU. Threads that ended within the last interval lose at
    most that interval's share."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.last = {}
        self.available = os.path.exists(f"/proc/{pid}/schedstat")
        self.done = threading.Event()

    def sample(self):
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    run_ns, wait_ns = (int(x) for x in f.read().split()[:2])
            except (OSError, ValueError):
                continue
            self.last[tid] = (run_ns, wait_ns)

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def totals(self):
        """(seconds on a CPU, seconds waiting), summed over the child's threads."""
        return (sum(r for r, _ in self.last.values()) / 1e9,
                sum(w for _, w in self.last.values()) / 1e9)


def run_child(argv, timeout_s, nice=0):
    """Runs one child at niceness `nice`; returns (rc, stdout, stderr, wall_s, rusage,
    machine dict). wait4 gives this child's own peak RSS and CPU time
    (getrusage(RUSAGE_CHILDREN) would give the maximum over every child so far)."""
    la0 = read_loadavg()
    b0, s0 = read_cpu_jiffies()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         preexec_fn=(lambda: raise_priority(nice)) if nice else None)
    priority = read_priority(p.pid)
    watch = SchedWatch(p.pid)
    watch.start()
    out, err = [], []
    readers = [
        threading.Thread(target=lambda: out.append(p.stdout.read())),
        threading.Thread(target=lambda: err.append(p.stderr.read())),
    ]
    for r in readers:
        r.start()
    killer = threading.Timer(timeout_s, p.kill)
    killer.start()
    try:
        # Wait for the exit without reaping, so the pid cannot be reused while the watcher
        # still reads /proc/PID; then one last sample and reap.
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        watch.done.set()
        watch.join()
        _, status, ru = os.wait4(p.pid, 0)
    except KeyboardInterrupt:
        p.kill()  # in its own session, the child did not get the terminal's Ctrl-C
        raise
    wall = time.perf_counter() - t0
    killer.cancel()
    for r in readers:
        r.join()
    p.stdout.close()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    b1, s1 = read_cpu_jiffies()
    la1 = read_loadavg()
    child_cpu = ru.ru_utime + ru.ru_stime
    on_cpu, waiting = watch.totals()
    machine = {
        "loadavg_before": la0,
        "loadavg_after": la1,
        "child_cpu_s": round(child_cpu, 3),
        # Others' CPU use during the run: the machine's busy time less this child's own.
        "foreign_cpu": round(max(0.0, (b1 - b0) / CLK_TCK - child_cpu) / wall, 3),
        "steal_cpu": round((s1 - s0) / CLK_TCK / wall, 3),
        "priority": priority,
        # Share of the threads' runnable time spent waiting for a CPU (None: no schedstat).
        "runqueue_wait": round(waiting / (on_cpu + waiting), 4)
        if watch.available and on_cpu + waiting > 0 else None,
        "runqueue_wait_s": round(waiting, 3) if watch.available else None,
    }
    stdout = out[0].decode("utf-8", "replace") if out else ""
    stderr = err[0].decode("utf-8", "replace") if err else ""
    if p.returncode < 0:
        stderr += f"\n(killed by signal {-p.returncode}; timeout {timeout_s} s)"
    return p.returncode, stdout, stderr, wall, ru, machine


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


# ---------------------------------------------------------------- runners


class Runner:
    """One engine configuration. Subclasses give `argv` and `parse`; `parse` returns the
    engine's own figures (prompt_tokens, tokens, prefill_ms, decode_ms, prefill_tok_s,
    decode_tok_s, ttft_ms, load_ms or None, engine_info)."""

    engine = ""
    backend = ""

    def __init__(self, threads, variant="plain", peer=None, baseline=None, required=True):
        self.threads = threads
        self.variant = variant
        self.peer = peer  # runner id this one is compared with (speed ratio)
        self.baseline = baseline  # runner id this variant's overhead is measured against
        # An optional runner (a GPU that may be missing) that fails is reported, not fatal.
        self.required = required

    @property
    def id(self):
        t = f"-{self.threads}t" if self.threads else ""
        v = "" if self.variant == "plain" else f"-{self.variant}"
        return f"{self.engine_key}-{self.backend}{t}{v}"

    @property
    def engine_key(self):
        return self.engine.replace(".", "")

    def describe(self):
        return {
            "id": self.id, "engine": self.engine, "backend": self.backend,
            "threads": self.threads, "variant": self.variant,
            "peer": self.peer, "baseline": self.baseline, "required": self.required,
        }


class AxiscopeRunner(Runner):
    engine = "axiscope"

    def __init__(self, ctx, backend, threads, variant="plain", peer=None, baseline=None,
                 required=True):
        super().__init__(threads, variant, peer, baseline, required)
        self.ctx = ctx
        self.backend = backend

    def argv(self):
        c = self.ctx
        a = [c.axiscope, "generate", "--model", c.model, "--json",
             "--max-tokens", str(c.tokens), "--temperature", "0", "--repeat-penalty", "1"]
        if self.backend != "cpu":
            a += ["--backend", self.backend]
        if self.threads:
            a += ["--threads", str(self.threads)]
        if self.variant == "cap":
            # The CLI refuses --raw with a bundle; the chat template renders the same text
            # (the prompt token count is checked after the run).
            a += ["--system", c.prompt["system"], "--prompt", c.prompt["user"],
                  "--bundle", c.bundle] + c.cap_args
        else:
            a += ["--raw", "--prompt", c.prompt_text]
        if self.variant == "record-all":
            a += ["--record-layers", "all"]
        return a

    def parse(self, out):
        j = last_json_line(out)
        n_prompt = j["prompt_tokens"]
        toks = j["tokens"]
        prefill_ms = n_prompt * 1000.0 / j["prefill_tok_s"] if j["prefill_tok_s"] > 0 else None
        decode_ms = (len(toks) - 1) * 1000.0 / j["decode_tok_s"] if j["decode_tok_s"] > 0 else None
        if j.get("stop") != "max_tokens":
            raise ValueError(f"stopped early ({j.get('stop')}) after {len(toks)} tokens")
        if self.variant == "record-all":
            # Every token the model ran (prompt and all generated but the last) at every layer.
            want = n_prompt + len(toks) - 1
            if j.get("recorded_tokens") != want or not j.get("recorded_layers"):
                raise ValueError(
                    f"recording incomplete: {j.get('recorded_tokens')} tokens x "
                    f"{j.get('recorded_layers')} layers, expected {want} tokens"
                )
        return {
            "prompt_tokens": n_prompt, "tokens": toks,
            "prefill_ms": prefill_ms, "decode_ms": decode_ms,
            "prefill_tok_s": j["prefill_tok_s"], "decode_tok_s": j["decode_tok_s"],
            # The first token is picked from the prefill's logits; that pick (< 1 ms) is
            # counted in axiscope's decode time, so its TTFT is the prefill time.
            "ttft_ms": prefill_ms,
            "load_ms": None,  # the harness derives it from the wall time, unless:
            # with a bundle the CLI also reads the reply back after generating.
            "wall_has_extra": self.variant == "cap",
            "engine_info": j.get("backend", ""),
        }


class LlamaCppRunner(Runner):
    engine = "llama.cpp"
    backend = "cpu"

    def __init__(self, ctx, threads):
        super().__init__(threads)
        self.ctx = ctx

    def argv(self):
        c = self.ctx
        return [c.llamacpp_python, str(HERE / "llamacpp_run.py"), "--model", c.model,
                "--prompt-file", c.prompt_file, "--threads", str(self.threads),
                "--tokens", str(c.tokens)]

    def parse(self, out):
        j = last_json_line(out)
        if not j.get("ok"):
            raise ValueError(j.get("error", "llama.cpp runner failed"))
        j["engine_info"] = (
            f"{j.pop('engine_version')}, flash_attn_type {j['settings']['flash_attn_type']}"
        )
        return j


# TODO(browser bench hook): the app has no `?bench` mode yet (issue 7). When it has one, add
# a BrowserRunner here whose argv starts `node scripts/bench/browser.mjs --backend cpu|gpu
# [--isolated]` (headless Chromium from tests/e2e, page `?bench&backend=...&tokens=N`) and
# whose parse maps the page's `data-testid="bench-result"` JSON onto the fields above; the
# wllama peer is a second runner of the same kind. Peak RSS is then the browser's.


def cli_has_flag(axiscope, flag):
    try:
        r = subprocess.run([axiscope, "generate", "--help"], capture_output=True, text=True,
                           timeout=60)
    except OSError:
        return False
    return flag in r.stdout


def build_runners(ctx):
    """The interleaving order within one repetition: each axiscope run sits next to its
    llama.cpp peer, and each variant next to its baseline."""
    rs = []
    for t in ctx.threads:
        rs.append(AxiscopeRunner(ctx, "cpu", t, peer=f"llamacpp-cpu-{t}t"))
        rs.append(LlamaCppRunner(ctx, t))
        if ctx.record_overhead:
            rs.append(AxiscopeRunner(ctx, "cpu", t, "record-all", baseline=f"axiscope-cpu-{t}t"))
        if ctx.cap_overhead:
            rs.append(AxiscopeRunner(ctx, "cpu", t, "cap", baseline=f"axiscope-cpu-{t}t"))
    if ctx.gpu:
        # No GPU llama.cpp here; the GPU path is set against axiscope's own fastest CPU run.
        rs.append(AxiscopeRunner(ctx, "gpu", 0, peer=f"axiscope-cpu-{max(ctx.threads)}t",
                                 required=False))
    if ctx.only:
        rs = [r for r in rs if r.id in ctx.only]
    return rs


# ---------------------------------------------------------------- one measurement


def measure(ctx, runner, rep, attempt, seq, warmup):
    waited, probe = (0.0, None)
    if ctx.wait_idle > 0:
        waited, probe = wait_until_quiet(ctx.wait_idle, stats.busy_threshold(runner.threads, CORES))
    rc, out, err, wall, ru, machine = run_child(runner.argv(), ctx.timeout, ctx.nice)
    machine["idle_wait_s"] = round(waited, 1)
    machine["probe_before"] = None if probe is None else round(probe, 3)
    rec = {
        "runner": runner.id, "engine": runner.engine, "backend": runner.backend,
        "threads": runner.threads, "variant": runner.variant,
        "rep": rep, "attempt": attempt, "seq": seq, "warmup": warmup,
        "ok": False, "error": None, "prompt_tokens": None, "generated_tokens": None,
        "tokens": None, "prefill_tok_s": None, "decode_tok_s": None, "ttft_ms": None,
        "load_ms": None, "peak_rss_mb": ru.ru_maxrss / 1024.0, "wall_s": round(wall, 3),
        "engine_info": None, "machine": machine,
    }
    try:
        if rc != 0:
            raise ValueError(f"exit {rc}: {(err.strip() or out.strip())[-400:]}")
        m = runner.parse(out)
        if m["prompt_tokens"] != ctx.prompt_tokens:
            raise ValueError(f"ran {m['prompt_tokens']} prompt tokens, not {ctx.prompt_tokens}")
        if len(m["tokens"]) != ctx.tokens:
            raise ValueError(f"generated {len(m['tokens'])} tokens, not {ctx.tokens}")
        load_ms = m.get("load_ms")
        if load_ms is None and not m.get("wall_has_extra"):
            # Everything but the prompt's and reply's compute: start, GGUF read and parse,
            # tokenizer, exit. An upper bound on the load itself (process start is ~1 ms).
            load_ms = wall * 1000.0 - m["prefill_ms"] - m["decode_ms"]
        rec.update(
            ok=True, prompt_tokens=m["prompt_tokens"], generated_tokens=len(m["tokens"]),
            tokens=m["tokens"], prefill_tok_s=m["prefill_tok_s"],
            decode_tok_s=m["decode_tok_s"], ttft_ms=m["ttft_ms"], load_ms=load_ms,
            engine_info=m.get("engine_info"),
        )
        for k in ("rss_before_load_mb", "settings"):
            if k in m:
                rec[k] = m[k]
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        rec["error"] = str(e)
    rec["busy"], rec["busy_reason"] = stats.busy_verdict(runner.threads, CORES, machine)
    return rec


def fmt_run(rec):
    if not rec["ok"]:
        return f"FAILED: {rec['error']}"
    m = rec["machine"]
    flag = f"  BUSY ({rec['busy_reason']})" if rec["busy"] else ""
    wait = "-" if m["runqueue_wait"] is None else f"{m['runqueue_wait']:.1%}"
    load = "    -" if rec["load_ms"] is None else f"{rec['load_ms']:5.0f}"
    return (f"prefill {rec['prefill_tok_s']:7.1f} tok/s  decode {rec['decode_tok_s']:6.1f} tok/s"
            f"  ttft {rec['ttft_ms']:6.0f} ms  load {load} ms"
            f"  rss {rec['peak_rss_mb']:5.0f} MB  waited {wait}  others {m['foreign_cpu']:.2f} cores"
            f"  load {m['loadavg_before'][0]:.2f}->{m['loadavg_after'][0]:.2f}{flag}")


# ---------------------------------------------------------------- setup checks


def check_prompt(ctx):
    """Both tokenizers must see the same 128 tokens, or the engines run different work."""
    r = subprocess.run([ctx.axiscope, "tokenize", "--model", ctx.model, "--text",
                        ctx.prompt_text], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"bench: axiscope tokenize failed: {r.stderr.strip()}")
    ax_ids = json.loads(r.stdout)["ids"]
    r = subprocess.run([ctx.llamacpp_python, str(HERE / "llamacpp_run.py"), "--model",
                        ctx.model, "--prompt-file", ctx.prompt_file, "--tokenize-only"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"bench: llama.cpp tokenize failed: {(r.stdout + r.stderr).strip()[-400:]}")
    lc_ids = last_json_line(r.stdout)["ids"]
    if ax_ids != lc_ids:
        sys.exit(f"bench: the tokenizers disagree on the prompt ({len(ax_ids)} vs "
                 f"{len(lc_ids)} tokens): not the same work, refusing to compare")
    want = ctx.prompt.get("expected_tokens")
    if want is not None and len(ax_ids) != want:
        sys.exit(f"bench: the standard prompt is {len(ax_ids)} tokens, prompt.json says {want}")
    return ax_ids


def setup_capping(ctx, out_dir):
    """Whether the capping-overhead runs happen, and a line saying how or why not. Capping
    needs the CLI's cap flags and a persona bundle; without --bundle a quick one (`axiscope
    build --quick`, ~1 min) is built: what capping costs does not depend on how good the
    axis is. The band and percentile are the CLI's default (`axiscope report --json`,
    "capping_default": the paper's 70-90 % of the depth and 75th percentile, defined once in
    src/science/steer.rs)."""
    if ctx.no_cap:
        return False, "not measured (--no-cap)"
    if not cli_has_flag(ctx.axiscope, "--cap-percentile"):
        return False, "not measurable yet: this axiscope has no --cap-percentile"
    if ctx.bundle:
        if not Path(ctx.bundle).exists():
            sys.exit(f"bench: --bundle {ctx.bundle} not found")
    else:
        ctx.bundle = str(out_dir / "quick-bundle.axb")
        fresh = (Path(ctx.bundle).exists()
                 and Path(ctx.bundle).stat().st_mtime >= Path(ctx.axiscope).stat().st_mtime)
        if not fresh:
            print(f"bench: building a quick persona bundle for the capping runs "
                  f"({ctx.bundle}, ~1 min)", flush=True)
            r = subprocess.run([ctx.axiscope, "build", "--model", ctx.model, "--quick",
                                "--jobs", "2", "--out", ctx.bundle], capture_output=True,
                               text=True, timeout=3600, cwd=ROOT)
            if r.returncode != 0:
                return False, f"not measured: `axiscope build --quick` failed: " \
                              f"{r.stderr.strip()[-300:]}"
    r = subprocess.run([ctx.axiscope, "report", "--bundle", ctx.bundle, "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"bench: axiscope report failed: {r.stderr.strip()}")
    rep = json.loads(r.stdout)
    cap, n = rep["capping_default"], rep["model"]["n_layers"]
    (lo, hi), q = cap["band"], cap["percentile"]
    ctx.cap_args = ["--cap-percentile", str(q), "--cap-layers", f"{lo}:{hi}"]
    return True, (f"capping layers {lo}-{hi - 1} of {n} at the {q}th percentile of "
                  f"{os.path.relpath(ctx.bundle, ROOT)}")


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, cwd=ROOT,
                                  timeout=30).stdout.strip()
        except OSError:
            return ""

    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "rustc": cmd("rustc", "--version"),
        "git_commit": cmd("git", "rev-parse", "HEAD"),
        "git_dirty": bool(cmd("git", "status", "--porcelain", "--untracked-files=no")),
    }


# ---------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--axiscope", required=True, help="the release axiscope binary")
    ap.add_argument("--llamacpp-python", required=True, help="python of the llama.cpp venv")
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--prompt", default=str(HERE.parent.parent / "data" / "bench_prompt.json"))
    ap.add_argument("--out", default=str(ROOT / "target/bench"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (page cache)")
    ap.add_argument("--tokens", type=int, default=64, help="generated tokens per run")
    ap.add_argument("--threads", default="1,2", help="CPU thread counts, comma-separated")
    ap.add_argument("--retries", type=int, default=1,
                    help="extra attempts for a run flagged busy (all attempts are kept)")
    ap.add_argument("--wait-idle", type=float, default=5.0,
                    help="seconds to wait for a quiet machine before each run (0: never)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    ap.add_argument("--nice", type=int, default=None,
                    help="niceness of the measured processes (default -20 as root, else 0)")
    ap.add_argument("--no-record", action="store_true", help="skip the recording overhead")
    ap.add_argument("--bundle", help="persona bundle for the capping-overhead runs "
                    "(default: a quick one built into the output folder)")
    ap.add_argument("--no-cap", action="store_true", help="skip the capping overhead")
    ap.add_argument("--only", help="comma-separated runner ids to run")
    a = ap.parse_args(argv)
    if a.reps < 1 or a.tokens < 2 or a.warmup < 0 or a.retries < 0:
        ap.error("--reps >= 1, --tokens >= 2, --warmup >= 0, --retries >= 0")
    try:
        a.threads = sorted({int(t) for t in a.threads.split(",")})
    except ValueError:
        ap.error(f"--threads: {a.threads!r} is not a comma-separated list of numbers")
    if not a.threads or min(a.threads) < 1:
        ap.error("--threads: at least one count, each >= 1")
    a.only = set(a.only.split(",")) if a.only else None
    if a.nice is None:
        # On a shared machine a high priority keeps compilers at nice 0 from taking most of
        # a benchmark thread's core; only root may raise priority.
        a.nice = -20 if os.geteuid() == 0 else 0
    if not -20 <= a.nice <= 19:
        ap.error("--nice: -20 to 19")
    if a.nice < 0 and os.geteuid() != 0:
        ap.error("--nice below 0 needs root")
    return a


def main(argv=None):
    ctx = parse_args(argv)
    out_dir = Path(ctx.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in (ctx.axiscope, ctx.llamacpp_python, ctx.model):
        if not Path(p).exists():
            sys.exit(f"bench: {p} not found (scripts/bench.sh builds and fetches it)")
    with open(ctx.prompt, encoding="utf-8") as f:
        ctx.prompt = json.load(f)
    ctx.prompt_text = render_chatml(ctx.prompt["system"], ctx.prompt["user"])
    ctx.prompt_file = str(out_dir / "prompt.txt")
    Path(ctx.prompt_file).write_text(ctx.prompt_text, encoding="utf-8")
    ctx.prompt_tokens = len(check_prompt(ctx))
    ctx.record_overhead = not ctx.no_record
    ctx.cap_overhead, cap_note = setup_capping(ctx, out_dir)
    ctx.gpu = cli_has_flag(ctx.axiscope, "--backend")
    runners = build_runners(ctx)
    if not runners:
        sys.exit("bench: no runner selected (see --only)")

    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"bench: {ctx.prompt_tokens}-token prompt, {ctx.tokens} generated tokens, "
          f"{ctx.reps} reps (+{ctx.warmup} warm-up), nice {ctx.nice}, runners: "
          f"{', '.join(r.id for r in runners)}")
    print(f"bench: capping overhead {cap_note}; GPU runner "
          f"{'on' if ctx.gpu else 'off (this axiscope has no --backend)'}")
    records = []
    seq = 0
    for rep in range(1 - ctx.warmup, ctx.reps + 1):
        warm = rep < 1
        for r in runners:
            for attempt in range(1, ctx.retries + 2):
                seq += 1
                rec = measure(ctx, r, rep, attempt, seq, warm)
                records.append(rec)
                tag = "warm-up" if warm else f"rep {rep}"
                print(f"  {tag:7} {r.id:28} {fmt_run(rec)}", flush=True)
                if warm or not rec["busy"] or not rec["ok"]:
                    break
    finished = datetime.datetime.now(datetime.timezone.utc)

    result = {
        "schema": "axiscope-bench/1",
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "model": os.path.relpath(ctx.model, ROOT) if ctx.model.startswith(str(ROOT))
            else ctx.model,
            "prompt": ctx.prompt, "prompt_tokens": ctx.prompt_tokens,
            "generated_tokens": ctx.tokens, "reps": ctx.reps, "warmup": ctx.warmup,
            "retries": ctx.retries, "wait_idle_s": ctx.wait_idle, "sampling": "greedy",
            "nice": ctx.nice,
            "busy_rule": stats.BUSY_RULE, "capping": cap_note,
        },
        "runners": [r.describe() for r in runners],
        "runs": records,
    }
    result["summary"] = stats.summarize(result)
    (out_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    md = report.markdown(result)
    (out_dir / "results.md").write_text(md)
    (out_dir / "results.svg").write_text(report.svg(result))
    print()
    print(md)
    print(f"bench: wrote {out_dir}/results.json, results.md, results.svg")
    required = {r.id for r in runners if r.required}
    failed = [s["runner"] for s in result["summary"]["runners"]
              if s["n_ok"] == 0 and s["runner"] in required]
    if failed:
        sys.exit(f"bench: no successful run for {', '.join(failed)}")


if __name__ == "__main__":
    main()
