// The app shell: header, model status, WebGPU detection, no console errors.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { distDir, startApp } from '../harness.mjs';

const MODEL_URL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('the shell renders, reports the model file and its size, without console errors', async () => {
  const { page, problems } = await app.open();
  await page.getByTestId('app-title').waitFor({ timeout: 60_000 });
  assert.equal((await page.getByTestId('app-title').textContent()).trim(), 'axiscope');

  const model = await app.waitForState(page, 'model-status');
  // Reference: the size of the file the server sends, read from disk, grouped by Node's Intl.
  const bytes = statSync(path.join(distDir, MODEL_URL)).size;
  assert.equal(model.state, 'reachable', model.text);
  assert.ok(model.text.includes(MODEL_URL), model.text);
  assert.ok(model.text.includes(`${bytes.toLocaleString('en-US')} bytes`), `${model.text} lacks ${bytes} bytes`);

  // The headers wasm threads will need; this also proves the page runs cross-origin isolated.
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
  const wasm = await page.evaluate(() =>
    performance.getEntriesByType('resource').map((e) => e.name).find((n) => n.endsWith('.wasm')),
  );
  assert.ok(wasm, 'the page loaded no .wasm');
  const wasmHead = await page.request.head(wasm);
  assert.equal(wasmHead.headers()['content-type'], 'application/wasm');

  await app.waitForState(page, 'webgpu-status');
  await app.screenshot(page, 'app-shell');
  assert.deepEqual(problems, []);
});

test('WebGPU: the page names the adapter that requestAdapter() returns (SwiftShader here)', async () => {
  const { page, problems } = await app.open();
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
  const { page, problems } = await app.open('', {
    beforeLoad: (p) => p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined })),
  });
  const gpu = await app.waitForState(page, 'webgpu-status');
  assert.equal(gpu.state, 'unavailable', gpu.text);
  assert.match(gpu.text, /no navigator\.gpu.*CPU/);
  assert.deepEqual(problems, []);
});

test('a missing model file is reported with its HTTP status', async () => {
  const { page, problems } = await app.open('', {
    beforeLoad: (p) => p.route('**/*.gguf', (route) => route.fulfill({ status: 404, body: 'gone' })),
  });
  const model = await app.waitForState(page, 'model-status');
  assert.equal(model.state, 'error', model.text);
  assert.match(model.text, /HTTP 404.*scripts\/fetch_model\.sh/);
  // The 404 itself is the only problem the page may have.
  assert.ok(problems.every((p) => /404/.test(p)), problems.join('\n'));
});
