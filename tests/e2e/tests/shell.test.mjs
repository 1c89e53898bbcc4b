// The page and its worker: the default model loads in the worker (the page stays
// responsive), WebGPU detection, the backend named, the size of what the page downloads.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { distDir, startApp } from '../harness.mjs';
import { MODEL_TIMEOUT_MS, routeBundle, waitModelReady } from '../app.mjs';

const MODEL_URL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('the default model loads in a worker while the page stays responsive, without console errors', async () => {
  const { page, problems } = await app.open('', { backend: null, beforeLoad: (p) => routeBundle(p) });
  await page.getByTestId('app-title').waitFor({ timeout: 60_000 });
  assert.equal((await page.getByTestId('app-title').textContent()).trim(), 'axiscope');
  // While the worker downloads and parses 98 MB, the page's own thread keeps running: sample
  // the longest gap between animation frames.
  await page.evaluate(() => {
    window.__worstFrameGap = 0;
    let last = performance.now();
    const tick = (t) => {
      window.__worstFrameGap = Math.max(window.__worstFrameGap, t - last);
      last = t;
      if (document.querySelector('[data-testid="model-status"]')?.dataset.state !== 'ready') requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  await waitModelReady(page, MODEL_TIMEOUT_MS);
  const status = (await page.getByTestId('model-status').textContent()).trim();
  const bytes = statSync(path.join(distDir, MODEL_URL)).size;
  assert.match(status, /SmolLM2/i, status);
  assert.match(status, /llama, 30 layers, hidden 576/, status);
  assert.ok(status.includes(`${(bytes / 1e6).toFixed(1)} MB`), `${status} lacks the file size`);
  const gap = await page.evaluate(() => window.__worstFrameGap);
  // The engine parses and loads in the worker; a frame gap of seconds would mean it ran here.
  assert.ok(gap < 2000, `the page froze for ${gap.toFixed(0)} ms while the model loaded`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
  const backend = (await page.getByTestId('backend-status').textContent()).trim();
  // WebGPU by default on a hardware adapter; SwiftShader here is a software one, slower than
  // the wasm engine, so the page runs the CPU and says why (?backend=gpu forces WebGPU).
  assert.match(backend, /cpu .*the WebGPU adapter \(.*swiftshader.*\) is a software renderer.*asked: auto/i, backend);
  assert.match((await page.getByTestId('memory-status').textContent()).trim(), /Worker memory: \d+\.\d MB/);
  // The page loads only its own (leptos) module; the engine's module is the worker's.
  const wasm = await page.evaluate(() =>
    performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.wasm')),
  );
  assert.equal(wasm.length, 1, `the page itself should load one wasm module, got ${wasm}`);
  await app.screenshot(page, 'app-loaded');
  assert.deepEqual(problems, []);
});

test('?backend=gpu is parsed and shown, and WebGPU runs with the reason', async () => {
  const { page, problems } = await app.open('?backend=gpu', { beforeLoad: (p) => routeBundle(p) });
  await waitModelReady(page);
  const backend = (await page.getByTestId('backend-status').textContent()).trim();
  assert.match(backend, /asked: gpu/, backend);
  assert.match(backend, /webgpu .*asked for WebGPU \(\?backend=gpu\)/, backend);
  assert.deepEqual(problems, []);
});

test('WebGPU: the page names the adapter that requestAdapter() returns (SwiftShader here)', async () => {
  const { page, problems } = await app.open('?embed=map', { beforeLoad: (p) => routeBundle(p) });
  const gpu = await app.waitForState(page, 'webgpu-status');
  assert.equal(gpu.state, 'available', gpu.text);
  // Reference: ask the browser directly, outside the app.
  const info = await page.evaluate(async () => {
    const adapter = await navigator.gpu.requestAdapter();
    return { vendor: adapter.info.vendor, architecture: adapter.info.architecture, f16: adapter.features.has('shader-f16') };
  });
  assert.ok(gpu.text.includes(`${info.vendor} / ${info.architecture}`), `${gpu.text} vs ${JSON.stringify(info)}`);
  assert.ok(gpu.text.includes(`shader-f16: ${info.f16 ? 'yes' : 'no'}`), gpu.text);
  if (!process.env.AXISCOPE_REAL_GPU) assert.match(gpu.text, /swiftshader/i);
  assert.deepEqual(problems, []);
});

test('without navigator.gpu the page says so and falls back to the CPU', async () => {
  const { page, problems } = await app.open('?embed=map', {
    beforeLoad: async (p) => {
      await routeBundle(p);
      await p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    },
  });
  const gpu = await app.waitForState(page, 'webgpu-status');
  assert.equal(gpu.state, 'unavailable', gpu.text);
  assert.match(gpu.text, /no navigator\.gpu.*CPU/);
  assert.deepEqual(problems, []);
});

test('unknown and unsafe URL parameters are ignored and named, as text', async () => {
  const { page, problems } = await app.open('?embed=map&evil=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&bundle=javascript:alert(1)', {
    beforeLoad: (p) => routeBundle(p),
  });
  const notice = page.getByTestId('notice');
  await notice.waitFor({ timeout: 60_000 });
  const text = await notice.textContent();
  assert.match(text, /ignored \?bundle=javascript:alert\(1\)/);
  assert.match(text, /ignored unknown URL parameters: evil/);
  assert.equal(await page.locator('img').count(), 0, 'a URL parameter became markup');
  assert.deepEqual(problems, []);
});
