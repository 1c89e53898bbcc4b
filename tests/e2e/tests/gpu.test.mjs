// The WebGPU backend in the browser (SwiftShader's software adapter here, which the app uses
// only when asked: ?backend=gpu): its greedy tokens agree with the CPU engine's
// (`?backend=cpu`) up to the first near-tie, and a lost device moves the conversation to the
// CPU without losing it. `?backend=measure` times both at load and takes the faster: the CPU
// engine here, SwiftShader being far slower.
//
// Token ids and each step's two best logits come from the worker's debug hook
// (`self.__axiscope_debug.traces()`, docs/ARCHITECTURE.md), which also destroys the device
// (`loseGpu()`) as a driver reset would. SwiftShader needs tens of seconds per decoded token
// on a busy 2-core box, so the GPU page runs one short greedy reply and the bundle is one for
// another model (no drift reads, which would cost more GPU passes).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { openReady, setSetting, waitModelReady } from '../app.mjs';
import { syntheticBundle } from '../bundle.mjs';

/** Greedy tokens compared (each costs a decode pass on SwiftShader). */
const N_TOKENS = 4;
/** As tests/gpu/model.rs: the CPU quantizes activations to 8 bits, which moves its top-two
 * gap by ~0.17 RMS against the GPU's f32. A divergence is a near-tie when each engine ranks
 * the other's pick within this of its own best: rounding decided it. */
const NEAR_TIE = 0.5;
// A prompt whose reply starts without a near-tie ("What is the capital of France?" has one at
// its first token), so that several tokens are compared.
const PROMPT = 'Hi';
const GPU_REPLY_TIMEOUT_MS = 420_000;

let app;
/** The WebGPU page of the first test; the second goes on with its conversation. */
let gpuPage;
let gpuProblems;
let gpuTrace;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

/** The model worker, once the page has started it. */
async function modelWorker(page) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const w = page.workers().find((x) => x.url().includes('axiscope-worker'));
    if (w) return w;
    await page.waitForTimeout(100);
  }
  throw new Error(`no model worker among ${page.workers().map((w) => w.url())}`);
}

async function traces(page) {
  const w = await modelWorker(page);
  return JSON.parse(await w.evaluate(() => self.__axiscope_debug.traces()));
}

async function backendLine(page) {
  const el = page.getByTestId('backend-status');
  return { kind: await el.getAttribute('data-backend'), text: (await el.textContent()).trim() };
}

async function send(page, text) {
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-send').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="chat-send"]').disabled, null, { timeout: 10_000 });
}

async function waitIdle(page) {
  await page.waitForFunction(() => !document.querySelector('[data-testid="chat-send"]').disabled, null, {
    timeout: GPU_REPLY_TIMEOUT_MS,
  });
}

/** Opens the app with `backend`, sets greedy decoding of N_TOKENS tokens and sends PROMPT. */
async function greedyPage(backend) {
  const opened = await openReady(app, {
    backend,
    maxTokens: N_TOKENS,
    bundle: syntheticBundle({ sha256: '0'.repeat(64) }),
  });
  await setSetting(opened.page, 'setting-temperature', 0);
  await setSetting(opened.page, 'setting-repeat-penalty', 1);
  await send(opened.page, PROMPT);
  await waitIdle(opened.page);
  const [trace] = await traces(opened.page);
  return { ...opened, trace };
}

test('WebGPU (?backend=gpu): its greedy tokens agree with the CPU engine up to the first near-tie', async () => {
  const gpu = await greedyPage('gpu');
  [gpuPage, gpuProblems, gpuTrace] = [gpu.page, gpu.problems, gpu.trace];
  const gpuLine = await backendLine(gpu.page);
  assert.equal(gpuLine.kind, 'webgpu', gpuLine.text);
  assert.match(gpuLine.text, /Backend: webgpu \(.+\) \(asked for WebGPU \(\?backend=gpu\); asked: gpu\)/, gpuLine.text);
  assert.match(gpu.trace.backend, /^webgpu/);

  const cpu = await greedyPage('cpu');
  const cpuLine = await backendLine(cpu.page);
  assert.equal(cpuLine.kind, 'cpu', cpuLine.text);
  assert.match(cpuLine.text, /asked for the CPU \(\?backend=cpu\)/, cpuLine.text);
  assert.match(cpu.trace.backend, /^cpu/);
  assert.deepEqual(cpu.problems, []);
  await cpu.page.context().close();

  const [g, c] = [gpu.trace, cpu.trace];
  const n = Math.min(g.tokens.length, c.tokens.length);
  assert.ok(n >= 2, `too few tokens: GPU ${g.tokens}, CPU ${c.tokens}`);
  let first = g.tokens.slice(0, n).findIndex((t, i) => t !== c.tokens[i]);
  if (first < 0) first = n;
  const gap = (t) => t.logits[0] - t.logits[1];
  // Up to the first divergence both saw the same context: their best logits must be close
  // (the CPU's 8-bit activations move logits by a few tenths).
  let worstTop = 0;
  for (let i = 0; i < Math.min(first + 1, n); i++) {
    worstTop = Math.max(worstTop, Math.abs(g.top[i].logits[0] - c.top[i].logits[0]));
  }
  console.log(
    `GPU vs CPU greedy: ${first}/${n} tokens agree (GPU ${g.tokens}, CPU ${c.tokens}); max |top-1 logit diff| ${worstTop.toFixed(3)}; top-2 gaps GPU ${g.top.map((t) => gap(t).toFixed(3))}, CPU ${c.top.map((t) => gap(t).toFixed(3))}`,
  );
  if (first < n) {
    const [tg, tc] = [g.top[first], c.top[first]];
    console.log(`first divergence at token ${first}: GPU ${JSON.stringify(tg)}, CPU ${JSON.stringify(tc)}`);
    // How far below its own best an engine ranks the other's pick (Infinity: not in its top).
    const behind = (t, id) => {
      const k = t.ids.indexOf(id);
      return k < 0 ? Infinity : t.logits[0] - t.logits[k];
    };
    const [gBehind, cBehind] = [behind(tg, tc.ids[0]), behind(tc, tg.ids[0])];
    console.log(`the GPU ranks the CPU's pick ${gBehind.toFixed(3)} below its best, the CPU the GPU's ${cBehind.toFixed(3)}`);
    assert.ok(gBehind < NEAR_TIE && cBehind < NEAR_TIE, `divergence at token ${first} is no near-tie`);
  }
  assert.ok(worstTop < 1.5, `top-1 logits differ by ${worstTop}`);
  console.log(
    `speed, SwiftShader WebGPU vs wasm CPU, same prompt of ${g.prefilled} tokens: prefill ${g.prefill_tok_s.toFixed(2)} vs ${c.prefill_tok_s.toFixed(2)} tok/s, decode ${g.decode_tok_s.toFixed(3)} vs ${c.decode_tok_s.toFixed(3)} tok/s`,
  );
  assert.deepEqual(gpu.problems, []);
});

test('a lost WebGPU device moves the chat to the CPU and keeps the conversation', async () => {
  assert.ok(gpuPage, 'the WebGPU page of the first test is missing');
  const page = gpuPage;
  const messages = page.getByTestId('assistant-message');
  const first = (await messages.first().locator('.text').textContent()).trim();
  assert.ok(first.length > 0);
  await setSetting(page, 'setting-max-tokens', 4);
  // The device goes as the second turn starts (just before or while the worker runs it).
  await send(page, 'And of Italy?');
  const worker = await modelWorker(page);
  assert.equal(await worker.evaluate(() => self.__axiscope_debug.loseGpu()), true);
  await waitIdle(page);

  const line = await backendLine(page);
  assert.equal(line.kind, 'cpu', line.text);
  // The reason is the loss, or (if the browser reports the loss late) the failed GPU call.
  assert.match(line.text, /\((the WebGPU device was destroyed|GPU: )[^;]*; moved to the CPU engine, the conversation was kept; asked: gpu\)/, line.text);
  console.log(`after the loss: ${line.text}`);
  // Both turns are there, the first unchanged, the second answered on the CPU after it ran
  // the whole conversation again.
  assert.equal(await messages.count(), 2);
  assert.equal((await messages.first().locator('.text').textContent()).trim(), first);
  assert.ok((await messages.nth(1).locator('.text').textContent()).trim().length > 0);
  const [t1, t2] = await traces(page);
  assert.deepEqual(t1.tokens, gpuTrace.tokens);
  assert.match(t1.backend, /^webgpu/);
  assert.match(t2.backend, /^cpu/);
  assert.ok(t2.prefilled > t1.prefilled + t1.tokens.length, 'the CPU did not run the conversation again');
  console.log(
    `same page, after the fallback: CPU prefill ${t2.prefill_tok_s.toFixed(2)} tok/s over ${t2.prefilled} tokens, decode ${t2.decode_tok_s.toFixed(3)} tok/s (WebGPU before: ${t1.prefill_tok_s.toFixed(2)}, ${t1.decode_tok_s.toFixed(3)})`,
  );
  await app.screenshot(page, 'gpu-lost-fallback');
  assert.deepEqual(gpuProblems, []);
  await page.context().close();
});

test('?backend=measure times WebGPU and the CPU at load and takes the faster (the CPU, here)', async () => {
  const { page, problems } = await openReady(app, {
    backend: 'measure',
    bundle: syntheticBundle({ sha256: '0'.repeat(64) }),
  });
  const line = await backendLine(page);
  console.log(`measured choice: ${line.text}`);
  const m = line.text.match(/measured at load: WebGPU ([\d.]+) tok\/s vs CPU ([\d.]+) tok\/s/);
  assert.ok(m, line.text);
  const [gpu, cpu] = [Number(m[1]), Number(m[2])];
  assert.ok(gpu > 0 && cpu > 0, line.text);
  // The choice follows the numbers shown: SwiftShader takes seconds per token, the CPU tens
  // of tokens per second, so the CPU must win, by far.
  assert.ok(cpu > 3 * gpu, line.text);
  assert.equal(line.kind, 'cpu', line.text);
  assert.match(line.text, /asked: measure\)/, line.text);
  // The chosen backend then answers.
  await send(page, PROMPT);
  await waitIdle(page);
  const [trace] = await traces(page);
  assert.match(trace.backend, /^cpu/);
  assert.ok(trace.tokens.length > 0);

  // A later visit (same browser profile) with the default `?backend=auto` takes the remembered
  // choice, the same numbers "measured on an earlier visit", where without it `auto` would
  // pass SwiftShader over as software. The key comes from `requestAdapter()`'s info, so the
  // CPU is chosen before any device is opened.
  const again = new URL(page.url());
  again.searchParams.set('backend', 'auto');
  await page.goto(again.href, { waitUntil: 'load' });
  await waitModelReady(page);
  const later = await backendLine(page);
  console.log(`remembered choice: ${later.text}`);
  const r = later.text.match(/measured on an earlier visit: WebGPU ([\d.]+) tok\/s vs CPU ([\d.]+) tok\/s/);
  assert.ok(r, later.text);
  assert.deepEqual([r[1], r[2]], [m[1], m[2]], later.text);
  assert.equal(later.kind, 'cpu', later.text);
  assert.deepEqual(problems, []);
  await page.context().close();
});
