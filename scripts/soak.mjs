// Stability soak (not in CI: about 10-20 minutes): 200 generations in one page visit, with
// the JS heap (after a forced GC), the page's wasm memory and the model worker's wasm memory
// recorded every 20 generations. Every 50 turns the conversation is reset, so the context
// never fills; what must not grow is the memory left after the same work is done again.
//
// Usage: scripts/build_web.sh && node scripts/soak.mjs [generations=200] [max_tokens=4]
// Writes tests/e2e/artifacts/soak.json and prints the growth from generation 20 to the end.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { artifactsDir, startApp } from '../tests/e2e/harness.mjs';
import { chat, openReady } from '../tests/e2e/app.mjs';

const total = Number(process.argv[2] ?? 200);
const maxTokens = Number(process.argv[3] ?? 4);
const app = await startApp();
try {
  const { page, problems } = await openReady(app, {
    maxTokens,
    beforeLoad: (p) =>
      p.addInitScript(() =>
        addEventListener('TrunkApplicationStarted', (e) => {
          window.__pageMemory = e.detail.wasm.memory;
        }),
      ),
  });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const sample = async (n) => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const heap = metrics.find((m) => m.name === 'JSHeapUsedSize').value;
    const pageWasm = await page.evaluate(() => window.__pageMemory?.buffer.byteLength ?? 0);
    const worker = (await page.getByTestId('memory-status').textContent()).match(/([\d.]+) MB/);
    return { generations: n, js_heap_mb: heap / 1e6, page_wasm_mb: pageWasm / 1e6, worker_wasm_mb: worker ? Number(worker[1]) : null };
  };
  const samples = [];
  const t0 = Date.now();
  for (let n = 1; n <= total; n += 1) {
    if (n > 1 && (n - 1) % 50 === 0) {
      await page.getByTestId('chat-reset').click();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-message"]').length === 0);
    }
    await chat(page, `Message number ${n}: tell me one short fact.`);
    if (n % 20 === 0) {
      samples.push(await sample(n));
      console.log(JSON.stringify(samples.at(-1)), `${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  const [first, last] = [samples[0], samples.at(-1)];
  const growth = Object.fromEntries(
    ['js_heap_mb', 'page_wasm_mb', 'worker_wasm_mb'].map((k) => [k, +(last[k] - first[k]).toFixed(2)]),
  );
  const result = { generations: total, max_tokens: maxTokens, seconds: (Date.now() - t0) / 1000, samples, growth_from_20: growth, problems };
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(path.join(artifactsDir, 'soak.json'), JSON.stringify(result, null, 2));
  console.log('soak: growth from generation 20 to', total, JSON.stringify(growth), problems.length ? `problems: ${problems}` : '');
} finally {
  await app.close();
}
