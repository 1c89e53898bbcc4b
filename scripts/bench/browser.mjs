// The in-browser benchmark (BENCHMARKS.md): axiscope's own `?bench` page (wasm CPU, and WebGPU
// on SwiftShader) next to wllama (llama.cpp in wasm, npm @wllama/wllama) in headless Chromium,
// both loading the same GGUF from the same local server, once with cross-origin isolation
// (COOP/COEP: SharedArrayBuffer, wasm threads) and once without. Repetitions interleave the
// engines; every run is one fresh page in a browser context that keeps its caches, after an
// untimed warm-up that puts the model in the cache (so load time is "model cached"). Last,
// without isolation, the `?bench&map=SIZE` page times a persona map build (no warm-up: one
// quick build takes minutes); `--map-isolated` times it on the isolated page with `&threads=2`
// instead, where the worker's row helper takes part of every matmul on the second core.
//
// Writes target/bench/browser.json (runners and runs in run.py's record format), then
// merge_browser.py folds them into target/bench/results.{json,md,svg}.
//
// Usage: node scripts/bench/browser.mjs [--reps N] [--tokens N] [--dist DIR] [--out DIR]
//        [--bundle FILE.axb] [--only id,id] [--no-gpu] [--timeout-s S]
//        [--map tiny|quick|standard|none] [--map-reps N] [--map-timeout-s S] [--map-isolated]

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = (await import('node:module')).createRequire(path.join(here, 'browser/package.json'));
const { chromium } = require('playwright-core');
const { startServer } = await import(pathToFileURL(path.join(root, 'tests/e2e/server.mjs')).href);

const MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const CLK_TCK = 100; // Linux's USER_HZ for /proc times on every architecture we run on
const CORES = os.cpus().length;
const SPARE_MARGIN = 0.25; // as stats.py: cores others may use beyond those the run leaves free
const MAP_SIZES = ['tiny', 'quick', 'standard', 'none'];
const MAP_RUNNER = 'axiscope-map';

function parseArgs(argv) {
  const o = {
    reps: 3, tokens: 64, dist: path.join(root, 'dist'), out: path.join(root, 'target/bench'),
    bundle: null, only: null, gpu: true, timeoutS: 300, chromium: process.env.AXISCOPE_CHROMIUM ?? '/usr/bin/chromium',
    map: 'quick', mapReps: 1, mapTimeoutS: 1800, mapIsolated: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value after ${a}`);
      return argv[++i];
    };
    const int = (v, min) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new Error(`${a} needs a whole number >= ${min}, got ${v}`);
      return n;
    };
    if (a === '--reps') o.reps = int(val(), 1);
    else if (a === '--tokens') o.tokens = int(val(), 2);
    else if (a === '--dist') o.dist = path.resolve(val());
    else if (a === '--out') o.out = path.resolve(val());
    else if (a === '--bundle') o.bundle = path.resolve(val());
    else if (a === '--only') o.only = new Set(val().split(','));
    else if (a === '--no-gpu') o.gpu = false;
    else if (a === '--timeout-s') o.timeoutS = int(val(), 10);
    else if (a === '--map') {
      o.map = val();
      if (!MAP_SIZES.includes(o.map)) throw new Error(`--map needs one of ${MAP_SIZES.join(', ')}, got ${o.map}`);
    }
    else if (a === '--map-reps') o.mapReps = int(val(), 1);
    else if (a === '--map-timeout-s') o.mapTimeoutS = int(val(), 10);
    else if (a === '--map-isolated') o.mapIsolated = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

// ------------------------------------------------------------------ machine load (as run.py)

function cpuJiffies() {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = v;
  return { busy: user + nice + system + irq + softirq, steal: v[7] ?? 0 };
}

/** Field `i` (0-based, after the command name) of /proc/PID/stat. */
function statFields(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** CPU jiffies used so far by this harness and the browser it launched: its descendants, and
 *  every process in a session one of them belongs to (Chromium starts a session of its own).
 *  Reaped children's time counts too (cutime, cstime): a closed page's renderer exits, and its
 *  time moves to its parent, so it is neither lost nor counted as someone else's. */
function ownJiffies() {
  const procs = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = statFields(d);
      procs.set(Number(d), { ppid: Number(f[1]), session: f[3], cpu: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {
      // The process ended between readdir and read.
    }
  }
  const sessions = new Set([statFields('self')[3]]);
  for (const [pid, p] of procs) {
    for (let q = pid; q > 1; q = procs.get(q)?.ppid ?? 0) {
      if (q === process.pid) {
        sessions.add(p.session);
        break;
      }
    }
  }
  let sum = 0;
  for (const p of procs.values()) if (sessions.has(p.session)) sum += p.cpu;
  return sum;
}

function loadavg() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/** Measures what others used while `fn` ran. */
async function watched(fn) {
  const before = { cpu: cpuJiffies(), own: ownJiffies(), la: loadavg(), t: performance.now() };
  const value = await fn();
  const after = { cpu: cpuJiffies(), own: ownJiffies(), la: loadavg(), t: performance.now() };
  const wall = (after.t - before.t) / 1000;
  const foreign = Math.max(0, (after.cpu.busy - before.cpu.busy) - (after.own - before.own)) / CLK_TCK / wall;
  return {
    value,
    machine: {
      loadavg_before: before.la, loadavg_after: after.la,
      own_cpu: (after.own - before.own) / CLK_TCK / wall,
      foreign_cpu: foreign,
      steal_cpu: (after.cpu.steal - before.cpu.steal) / CLK_TCK / wall,
      runqueue_wait: null,
      wall_s: wall,
    },
  };
}

function busyVerdict(threads, m) {
  if (m.steal_cpu > 0.1) return `hypervisor steal ${m.steal_cpu.toFixed(2)} cores > 0.1`;
  const limit = CORES - Math.min(threads, CORES) + SPARE_MARGIN;
  return m.foreign_cpu > limit ? `others used ${m.foreign_cpu.toFixed(2)} cores > ${limit}` : null;
}

/** High priority like run.py: this session's autogroup and the process at nice -20 (as root);
 *  Chromium inherits both. */
function raisePriority() {
  try {
    writeFileSync('/proc/self/autogroup', '-20');
  } catch {
    // No autogroup scheduling, or not root.
  }
  try {
    os.setPriority(0, -20);
    return 'nice -20, autogroup -20';
  } catch {
    return 'normal (not root)';
  }
}

// ------------------------------------------------------------------ the served tree

/** One directory served by both servers: the app at /app/ (dist, which holds the model), wllama
 *  at /wllama/, its page, and the capping bundle; the model has one URL for both engines. */
function makeRoot(o) {
  const dir = path.join(o.out, 'browser-root');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  symlinkSync(o.dist, path.join(dir, 'app'));
  symlinkSync(path.join(here, 'browser/node_modules/@wllama/wllama'), path.join(dir, 'wllama'));
  symlinkSync(path.join(here, 'browser/wllama.html'), path.join(dir, 'wllama.html'));
  if (o.bundle) symlinkSync(o.bundle, path.join(dir, 'bundle.axb'));
  return dir;
}

function renderChatml(p) {
  return `<|im_start|>system\n${p.system}<|im_end|>\n<|im_start|>user\n${p.user}<|im_end|>\n<|im_start|>assistant\n`;
}

// ------------------------------------------------------------------ runners

const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Exact JS heap figures (performance.memory) instead of coarse buckets.
  '--enable-precise-memory-info',
];

function record(runner, base) {
  return {
    runner: runner.id, engine: runner.engine, backend: runner.backend, threads: runner.threads,
    variant: runner.variant, ok: false, error: null, prompt_tokens: null, generated_tokens: null,
    tokens: [], prefill_tok_s: null, decode_tok_s: null, ttft_ms: null, load_ms: null,
    peak_rss_mb: null, wall_s: null, engine_info: null, ...base,
  };
}

/** One `?bench` page: the plain run plus its record-all and cap variants (same page load), or
 *  with `map` the plain run and the map build. */
async function runAxiscope(ctx, mode, gpu, o, map = null, threads = 1) {
  const page = await ctx.newPage();
  try {
    const bundle = o.bundle ? '&bundle=../bundle.axb' : '';
    // The overheads are measured on one CPU thread only (a GPU run on SwiftShader is slow).
    const extra = map ? `&overhead=0&map=${map}${threads === 2 ? '&threads=2' : ''}` : gpu ? '&overhead=0' : threads === 2 ? '&overhead=0&threads=2' : bundle;
    await page.goto(`${mode.url}app/?bench&backend=${gpu ? 'gpu' : 'cpu'}&tokens=${o.tokens}${extra}`);
    const el = page.getByTestId('bench-result');
    await page.waitForFunction(
      () => ['ok', 'error'].includes(document.querySelector('[data-testid=bench-result]')?.dataset.state),
      null, { timeout: (map ? o.mapTimeoutS : o.timeoutS) * 1000 });
    const j = JSON.parse(await el.textContent());
    if (await el.getAttribute('data-state') !== 'ok') throw new Error(j.error ?? 'bench failed');
    return j;
  } finally {
    await page.close();
  }
}

async function runWllama(ctx, mode, threads, gpu, o, prompt, ids) {
  const page = await ctx.newPage();
  try {
    await page.goto(`${mode.url}wllama.html`);
    await page.waitForFunction(() => window.wllamaReady === true, null, { timeout: 60_000 });
    return await page.evaluate((args) => window.benchWllama(args), {
      modelUrl: `${mode.url}app/models/${MODEL}`, threads, gpu, tokens: o.tokens, prompt, ids,
    });
  } finally {
    await page.close();
  }
}

function fromAxiscope(r, variant, base) {
  const run = variant === 'plain' ? r : r[variant === 'record-all' ? 'record_all' : 'cap']?.run;
  if (!run) throw new Error(r.cap_note ?? `no ${variant} run`);
  return {
    ok: true, prompt_tokens: run.prompt_tokens, generated_tokens: run.generated_tokens,
    tokens: run.tokens, prefill_tok_s: run.prefill_tok_s, decode_tok_s: run.decode_tok_s,
    ttft_ms: run.ttft_ms, load_ms: variant === 'plain' ? r.model_load_ms : null,
    engine_info: `${r.backend_detail}; ${r.backend_reason ?? ''}`.trim(),
    browser: variant === 'plain' ? {
      model_from_cache: r.model_from_cache, page_to_model_ms: r.page_to_model_ms,
      js_heap_used_bytes: r.js_heap_used_bytes, worker_wasm_memory_bytes: r.worker_wasm_memory_bytes,
      wasm_files: r.wasm_files, cross_origin_isolated: r.cross_origin_isolated,
    } : undefined,
    ...base,
  };
}

/** wllama's token ids come from its untimed warm-up run (`logprobs` costs a softmax per
 *  token); a timed run with the same text has the same ids. */
function fromWllama(w, known, promptTokens) {
  const t = w.timings ?? {};
  // Same prompt as axiscope's, token for token: llama.cpp must have run all of it.
  if (t.prompt_n !== promptTokens) throw new Error(`wllama ran ${t.prompt_n} prompt tokens, not ${promptTokens}`);
  const ids = w.ids ?? (known && known.text === w.text ? known.ids : null);
  if (!ids) throw new Error(known ? 'wllama generated another text than in its warm-up run' : 'wllama returned no token ids');
  return {
    ok: true, prompt_tokens: t.prompt_n, generated_tokens: t.predicted_n,
    tokens: ids,
    prefill_tok_s: t.prompt_n / (t.prompt_ms / 1000),
    // Same definition as axiscope's: the first token comes from the prompt's logits.
    decode_tok_s: (t.predicted_n - 1) / (t.predicted_ms / 1000),
    ttft_ms: t.prompt_ms, load_ms: w.loadMs,
    engine_info: `wllama ${w.info.multithread ? 'multi' : 'single'}-thread build, ${w.info.threads} thread(s), WebGPU ${w.info.webgpu ? 'available' : 'not available'}`,
    browser: { js_heap_used_bytes: w.heap, cross_origin_isolated: w.isolated, text: w.text },
  };
}

function buildRunners(o) {
  const rs = [];
  for (const isolated of [false, true]) {
    const sfx = isolated ? '+coi' : '';
    const wasm = `wasm${sfx}`;
    const wl1 = { id: `wllama-${wasm}-1t`, engine: 'wllama', backend: wasm, threads: 1, variant: 'plain', isolated, kind: 'wllama' };
    const wl2 = { id: `wllama-${wasm}-2t`, engine: 'wllama', backend: wasm, threads: 2, variant: 'plain', isolated, kind: 'wllama' };
    // The targets: one thread against wllama's one thread, and the isolated page against
    // wllama's two threads (wllama uses threads only when isolated).
    const ax = { id: `axiscope-${wasm}-1t`, engine: 'axiscope', backend: wasm, threads: 1, variant: 'plain', isolated, kind: 'axiscope', peer: isolated ? wl2.id : wl1.id };
    rs.push(ax, wl1);
    if (isolated) rs.push(wl2);
    // The isolated page on two cores: axiscope's row helper worker (`&threads=2`).
    if (isolated) rs.push({ ...ax, id: `axiscope-${wasm}-2t`, threads: 2 });
    for (const v of ['record-all', 'cap']) {
      rs.push({ ...ax, id: `${ax.id}-${v}`, variant: v, peer: undefined, baseline: ax.id, partOf: ax.id });
    }
    if (o.gpu && !isolated) {
      rs.push({ id: `axiscope-webgpu`, engine: 'axiscope', backend: 'webgpu', threads: 0, variant: 'plain', isolated, kind: 'axiscope-gpu', peer: 'wllama-webgpu', required: false });
      rs.push({ id: `wllama-webgpu`, engine: 'wllama', backend: 'webgpu', threads: 0, variant: 'plain', isolated, kind: 'wllama-gpu', required: false });
    }
  }
  return o.only ? rs.filter((r) => o.only.has(r.id) || o.only.has(r.partOf)) : rs;
}

/** The map build's record: its own figures instead of tok/s, and the busy rule of one thread. */
function mapRecord(base, map = {}) {
  return {
    runner: MAP_RUNNER, ok: false, error: null, size: null, replies: null, rollouts: null,
    roles: null, seconds: null, replies_per_s: null, cos_pc1_axis: null, wall_s: null, ...map, ...base,
  };
}

/** `reps` pages of `?bench&map=SIZE`, each a fresh build (the timed build skips the map cache),
 *  without isolation, as most visitors' pages are (or isolated, with the row helper). */
async function runMapBuilds(browser, server, o) {
  const runs = [];
  const ctx = await browser.newContext({ serviceWorkers: 'block' });
  try {
    for (let rep = 1; rep <= o.mapReps; rep++) {
      const base = { rep, attempt: 1, warmup: false };
      let got;
      try {
        got = await watched(() => runAxiscope(ctx, { url: server.url }, false, o, o.map, o.mapIsolated ? 2 : 1));
      } catch (e) {
        runs.push(mapRecord({ ...base, error: String(e.message ?? e).split('\n')[0] }));
        console.log(`  rep ${rep} ${MAP_RUNNER}: FAILED ${runs.at(-1).error}`);
        continue;
      }
      const busy = busyVerdict(o.mapIsolated ? 2 : 1, got.machine);
      const rec = mapRecord(
        { ...base, isolated: o.mapIsolated, machine: got.machine, wall_s: got.machine.wall_s, busy: !!busy, busy_reason: busy },
        got.value.map_build ? { ok: true, ...got.value.map_build } : { error: 'the page reported no map_build' });
      runs.push(rec);
      console.log(`  rep ${rep} ${MAP_RUNNER}: ${rec.ok ? `${o.map} map, ${rec.replies} replies in ${rec.seconds.toFixed(1)} s (${rec.replies_per_s.toFixed(2)} replies/s)` : `FAILED ${rec.error}`}${busy ? ` [busy: ${busy}]` : ''}`);
    }
  } finally {
    await ctx.close();
  }
  return runs;
}

function machineInfo() {
  const cmd = (...a) => {
    try {
      return execFileSync(a[0], a.slice(1), { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? '';
  return {
    cpu, cores: CORES, kernel: os.release(), node: process.version,
    chromium: cmd(process.env.AXISCOPE_CHROMIUM ?? '/usr/bin/chromium', '--version'),
    wllama: JSON.parse(readFileSync(path.join(here, 'browser/node_modules/@wllama/wllama/package.json'), 'utf8')).version,
    git_commit: cmd('git', 'rev-parse', 'HEAD'),
    git_dirty: cmd('git', 'status', '--porcelain', '--untracked-files=no') !== '',
  };
}

function gzipSizes(dist) {
  return readdirSync(dist).filter((f) => f.endsWith('.wasm')).map((f) => {
    const b = readFileSync(path.join(dist, f));
    return { name: f, bytes: b.length, gzip_bytes: gzipSync(b, { level: 9 }).length };
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  for (const f of [path.join(o.dist, 'index.html'), path.join(o.dist, 'models', MODEL), o.chromium,
    path.join(here, 'browser/node_modules/@wllama/wllama/esm/index.js')]) {
    if (!existsSync(f)) throw new Error(`${f} is missing (scripts/build_web.sh; npm ci in scripts/bench/browser)`);
  }
  if (!o.bundle && existsSync(path.join(o.out, 'quick-bundle.axb'))) o.bundle = path.join(o.out, 'quick-bundle.axb');
  mkdirSync(o.out, { recursive: true });
  const priority = raisePriority();
  const promptSpec = JSON.parse(readFileSync(path.join(here, '..', '..', 'data', 'bench_prompt.json'), 'utf8'));
  const prompt = renderChatml(promptSpec);
  const runners = buildRunners(o);
  const mapBuild = o.map !== 'none' && (!o.only || o.only.has(MAP_RUNNER));
  const dir = makeRoot(o);
  const servers = {
    false: await startServer({ root: dir, isolate: false }),
    true: await startServer({ root: dir, isolate: true }),
  };
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: CHROMIUM_ARGS });
  const started = new Date();
  console.log(`browser bench: ${o.reps} reps, ${o.tokens} tokens, priority ${priority}, bundle ${o.bundle ?? 'none (no cap runs)'}`);
  console.log(`browser bench: runners ${[...runners.map((r) => r.id), ...(mapBuild ? [`${MAP_RUNNER} (${o.map}, ${o.mapReps} reps)`] : [])].join(', ')}`);
  const runs = [];
  let mapRuns = [];
  let seq = 0;
  const wllamaIds = new Map(); // runner id -> { text, ids } from its warm-up
  try {
    for (const isolated of [false, true]) {
      const mine = runners.filter((r) => r.isolated === isolated && !r.partOf);
      if (!mine.length) continue;
      const mode = { url: servers[isolated].url };
      // One context per mode: its Cache Storage keeps the model between runs (both engines
      // cache it), so every timed load is "model cached".
      const ctx = await browser.newContext({ serviceWorkers: 'block' });
      for (let rep = 0; rep <= o.reps; rep++) {
        const warm = rep === 0;
        for (const r of mine) {
          seq += 1;
          const base = { rep, attempt: 1, seq, warmup: warm };
          const variants = runners.filter((v) => v.partOf === r.id);
          let got;
          try {
            got = await watched(() => {
              if (r.kind === 'wllama') return runWllama(ctx, mode, r.threads, false, o, prompt, warm);
              if (r.kind === 'wllama-gpu') return runWllama(ctx, mode, 1, true, o, prompt, warm);
              return runAxiscope(ctx, mode, r.kind === 'axiscope-gpu', o, null, r.threads);
            });
          } catch (e) {
            const rec = record(r, { ...base, error: String(e.message ?? e).split('\n')[0] });
            runs.push(rec, ...variants.map((v) => record(v, { ...base, error: rec.error })));
            console.log(`  ${warm ? 'warm-up' : `rep ${rep}`} ${r.id}: FAILED ${rec.error}`);
            continue;
          }
          const busy = busyVerdict(Math.max(1, r.threads), got.machine);
          const common = { ...base, machine: got.machine, wall_s: got.machine.wall_s, busy: !!busy, busy_reason: busy };
          const recs = [];
          try {
            if (r.kind === 'wllama' || r.kind === 'wllama-gpu') {
              if (warm) wllamaIds.set(r.id, { text: got.value.text, ids: got.value.ids });
              recs.push(record(r, { ...fromWllama(got.value, wllamaIds.get(r.id), promptSpec.expected_tokens), ...common }));
            }
            else recs.push(record(r, { ...fromAxiscope(got.value, 'plain'), ...common }));
          } catch (e) {
            recs.push(record(r, { ...common, error: String(e.message ?? e) }));
          }
          // A GPU run that fell back to the CPU is not a GPU measurement.
          if (r.kind === 'axiscope-gpu' && got.value.backend !== 'gpu') {
            recs[0].ok = false;
            recs[0].error = `asked for WebGPU, ran ${got.value.backend_detail}: ${got.value.backend_reason}`;
          }
          for (const v of variants) {
            try {
              recs.push(record(v, { ...fromAxiscope(got.value, v.variant), ...common }));
            } catch (e) {
              recs.push(record(v, { ...common, error: String(e.message ?? e) }));
            }
          }
          runs.push(...recs);
          const a = recs[0];
          console.log(`  ${warm ? 'warm-up' : `rep ${rep}`} ${r.id}: ${a.ok ? `prefill ${a.prefill_tok_s?.toFixed(1)} decode ${a.decode_tok_s?.toFixed(1)} tok/s, ttft ${a.ttft_ms?.toFixed(0)} ms, load ${a.load_ms?.toFixed(0)} ms` : `FAILED ${a.error}`}${busy ? ` [busy: ${busy}]` : ''}`);
        }
      }
      await ctx.close();
    }
    if (mapBuild) mapRuns = await runMapBuilds(browser, servers[o.mapIsolated], o);
  } finally {
    await browser.close().catch(() => {});
    await servers.false.close();
    await servers.true.close();
  }
  const result = {
    schema: 'axiscope-bench-browser/1',
    started: started.toISOString().replace(/\.\d+Z$/, '+00:00'),
    finished: new Date().toISOString().replace(/\.\d+Z$/, '+00:00'),
    machine: machineInfo(),
    settings: {
      prompt_tokens: promptSpec.expected_tokens, generated_tokens: o.tokens, reps: o.reps, warmup: 1,
      priority, bundle: o.bundle ? path.relative(root, o.bundle) : null, wasm: gzipSizes(o.dist),
      chromium_args: CHROMIUM_ARGS, map: mapBuild ? { size: o.map, reps: o.mapReps } : null,
    },
    runners: runners.map(({ id, engine, backend, threads, variant, peer, baseline, required }) => ({
      id, engine, backend, threads, variant, peer: peer ?? null, baseline: baseline ?? null, required: required ?? true,
    })),
    runs,
    map_runs: mapRuns,
  };
  const file = path.join(o.out, 'browser.json');
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  console.log(`browser bench: wrote ${file}`);
}

main().catch((e) => {
  console.error(`browser bench: ${e.message ?? e}`);
  process.exit(1);
});
