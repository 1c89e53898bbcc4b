// The WebGPU backend in the browser (SwiftShader's software adapter here): the app picks it by
// default, its greedy tokens agree with the CPU engine's (`?backend=cpu`) up to the first
// near-tie, and a lost device moves the conversation to the CPU without losing it.
//
// Token ids and each step's two best logits come from the worker's debug hook
// (`self.__axiscope_debug.traces()`, docs/ARCHITECTURE.md), which also destroys the device
// (`loseGpu()`) as a driver reset would. SwiftShader is slow: replies are a few tokens.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { chat, openReady, setSetting } from '../app.mjs';

/** Greedy tokens compared per backend (each costs a forward pass on SwiftShader). */
const N_TOKENS = 12;
/** As tests/gpu_model.rs: the CPU quantizes activations to 8 bits, which moves its top-two
 * gap by ~0.17 RMS against the GPU's f32; a divergence where the CPU's gap is under this is a
 * near-tie, decided by rounding. */
const NEAR_TIE = 0.5;
const PROMPT = 'What is the capital of France?';

let app;
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

/** Opens the app on `query`, asks PROMPT greedily for N_TOKENS, returns the reply's trace. */
async function greedyReply(query) {
  const { page, problems } = await openReady(app, { relative: query, maxTokens: N_TOKENS });
  await setSetting(page, 'setting-temperature', 0);
  await setSetting(page, 'setting-repeat-penalty', 1);
  await chat(page, PROMPT);
  const [trace] = await traces(page);
  const line = await backendLine(page);
  await page.context().close();
  return { trace, line, problems };
}

test('WebGPU by default; its greedy tokens agree with the CPU engine up to the first near-tie', async () => {
  const gpu = await greedyReply('');
  assert.equal(gpu.line.kind, 'webgpu', gpu.line.text);
  assert.match(gpu.line.text, /Backend: webgpu \(.+\) \(WebGPU adapter found; asked: auto\)/, gpu.line.text);
  assert.match(gpu.trace.backend, /^webgpu/);
  const cpu = await greedyReply('?backend=cpu');
  assert.equal(cpu.line.kind, 'cpu', cpu.line.text);
  assert.match(cpu.line.text, /asked for the CPU \(\?backend=cpu\)/, cpu.line.text);
  assert.match(cpu.trace.backend, /^cpu/);

  const n = Math.min(gpu.trace.tokens.length, cpu.trace.tokens.length);
  assert.ok(n >= 2, `too few tokens: GPU ${gpu.trace.tokens}, CPU ${cpu.trace.tokens}`);
  let first = n;
  for (let i = 0; i < n; i++) {
    if (gpu.trace.tokens[i] !== cpu.trace.tokens[i]) {
      first = i;
      break;
    }
  }
  const gap = (t) => t.logits[0] - t.logits[1];
  // Where both ran the same tokens, both saw the same context: their best logits and
  // top-two gaps must be close (the CPU's 8-bit activations move them by a few tenths).
  let worstTop = 0;
  for (let i = 0; i < Math.min(first + 1, n); i++) {
    const [g, c] = [gpu.trace.top2[i], cpu.trace.top2[i]];
    worstTop = Math.max(worstTop, Math.abs(g.logits[0] - c.logits[0]));
  }
  console.log(
    `GPU vs CPU greedy: ${first}/${n} tokens agree; max |top-1 logit diff| ${worstTop.toFixed(3)} before the first divergence`,
  );
  if (first < n) {
    const [g, c] = [gpu.trace.top2[first], cpu.trace.top2[first]];
    console.log(
      `first divergence at token ${first}: GPU top-2 ${JSON.stringify(g)} (gap ${gap(g).toFixed(3)}), CPU top-2 ${JSON.stringify(c)} (gap ${gap(c).toFixed(3)})`,
    );
    assert.ok(gap(c) < NEAR_TIE, `divergence at token ${first} is no near-tie: CPU gap ${gap(c)}`);
    assert.equal(c.ids[1], g.ids[0], 'the GPU picked something other than the CPU\'s runner-up');
  }
  assert.ok(worstTop < 1.5, `top-1 logits differ by ${worstTop}`);
  console.log(
    `speed (SwiftShader WebGPU vs wasm CPU, same prompt of ${gpu.trace.prefilled} tokens): prefill ${gpu.trace.prefill_tok_s.toFixed(1)} vs ${cpu.trace.prefill_tok_s.toFixed(1)} tok/s, decode ${gpu.trace.decode_tok_s.toFixed(2)} vs ${cpu.trace.decode_tok_s.toFixed(2)} tok/s`,
  );
  assert.deepEqual(gpu.problems, []);
  assert.deepEqual(cpu.problems, []);
});

test('a lost WebGPU device moves the chat to the CPU and keeps the conversation', async () => {
  const { page, problems } = await openReady(app, { maxTokens: 4 });
  assert.equal((await backendLine(page)).kind, 'webgpu');
  await chat(page, 'Hello!');
  const first = (await page.getByTestId('assistant-message').first().locator('.text').textContent()).trim();
  assert.ok(first.length > 0);

  // The device goes while the second turn runs (or just before the worker picks it up).
  await page.getByTestId('chat-input').fill('Tell me more.');
  await page.getByTestId('chat-send').click();
  const worker = await modelWorker(page);
  assert.equal(await worker.evaluate(() => self.__axiscope_debug.loseGpu()), true);
  await page.waitForFunction(() => document.querySelector('[data-testid="chat-send"]').disabled === false, null, {
    timeout: 240_000,
  });

  const line = await backendLine(page);
  assert.equal(line.kind, 'cpu', line.text);
  assert.match(line.text, /WebGPU device was destroyed; moved to the CPU engine, the conversation was kept/, line.text);
  // Both turns are there, the first unchanged, and both replies are placed on the drift chart
  // (the second needed the whole conversation run again on the CPU).
  const messages = page.getByTestId('assistant-message');
  assert.equal(await messages.count(), 2);
  assert.equal((await messages.first().locator('.text').textContent()).trim(), first);
  assert.ok((await messages.nth(1).locator('.text').textContent()).trim().length > 0);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length === 2);
  const [t1, t2] = await traces(page);
  assert.match(t1.backend, /^webgpu/);
  assert.match(t2.backend, /^cpu/);
  assert.ok(t2.prefilled > t1.prefilled, 'the CPU did not run the conversation again');
  await app.screenshot(page, 'gpu-lost-fallback');
  assert.deepEqual(problems, []);
});
