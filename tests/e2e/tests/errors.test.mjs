// What the page does with bad models and failed downloads: a visible one-line message, the
// previous model and the conversation kept. And the model cache: a second visit loads from
// Cache Storage without the network; the page-load numbers are measured here.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { artifactsDir, distDir, startApp } from '../harness.mjs';
import { chat, markGap, MODEL_TIMEOUT_MS, openReady, routeBundle, setSetting, waitModelReady } from '../app.mjs';

const MODEL = path.join(distDir, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

async function pickFile(page, name, buffer) {
  await page.getByTestId('model-file').setInputFiles({ name, mimeType: 'application/octet-stream', buffer });
}

async function modelError(page) {
  const el = page.getByTestId('model-error');
  await el.waitFor({ timeout: MODEL_TIMEOUT_MS });
  return (await el.textContent()).trim();
}

test('bad files and failed downloads show an error; the model and the conversation survive', async () => {
  const { page, problems } = await openReady(app, {
    beforeLoad: async (p) => {
      await p.route('**/missing.gguf', (route) => route.fulfill({ status: 404, body: 'not here' }));
      // Only the announced length matters: the worker must refuse before reading the body.
      await p.route('**/huge-*.gguf', (route) =>
        route.fulfill({
          status: 200,
          headers: { 'content-length': route.request().url().match(/huge-(\d+)/)[1], 'content-type': 'application/octet-stream' },
          body: Buffer.from('GGUF'),
        }),
      );
    },
  });
  await chat(page, 'Hi!');
  const before = (await page.getByTestId('assistant-message').first().textContent()).trim();
  const statusBefore = await page.getByTestId('model-status').textContent();

  // Not GGUF at all: the engine's own reason.
  await pickFile(page, 'notes.gguf', Buffer.from('this is a text file, not a model\n'.repeat(10)));
  let error = await modelError(page);
  assert.match(error, /not a GGUF file: it starts with/, error);
  assert.match(error, /previous model is still loaded/);

  // A truncated copy of the real model: GGUF header fine, tensors cut off.
  const real = readFileSync(MODEL);
  await pickFile(page, 'truncated.gguf', real.subarray(0, 5_000_000));
  await page.waitForFunction(() => /truncated|damaged|beyond the end/i.test(document.querySelector('[data-testid="model-error"]')?.textContent ?? ''), null, {
    timeout: MODEL_TIMEOUT_MS,
  });
  error = await modelError(page);
  assert.match(error, /damaged GGUF|truncated/i, error);

  // A download that fails: HTTP 404 named.
  await page.getByTestId('model-url').fill('missing.gguf');
  await page.getByTestId('model-url-load').click();
  await page.waitForFunction(() => /HTTP 404/.test(document.querySelector('[data-testid="model-error"]')?.textContent ?? ''), null, {
    timeout: MODEL_TIMEOUT_MS,
  });

  // A file too big for the page's memory (the server announces 3.9 GB, and beyond 4 GB).
  for (const bytes of ['3900000000', '5000000000']) {
    await page.getByTestId('model-url').fill(`huge-${bytes}.gguf`);
    await page.getByTestId('model-url-load').click();
    await page.waitForFunction(
      (b) => new RegExp(`not enough memory.* ${Math.round(Number(b) / 1e6)} MB`).test(document.querySelector('[data-testid="model-error"]')?.textContent ?? ''),
      bytes,
      { timeout: MODEL_TIMEOUT_MS },
    );
  }

  // The conversation and the model are still there, and the chat goes on.
  assert.equal(await page.getByTestId('model-status').getAttribute('data-state'), 'ready');
  assert.equal(await page.getByTestId('model-status').textContent(), statusBefore);
  assert.equal((await page.getByTestId('assistant-message').first().textContent()).trim(), before);
  await chat(page, 'Still there?');
  assert.equal(await page.getByTestId('assistant-message').count(), 2);
  await app.screenshot(page, 'bad-file-kept-conversation');
  // The 404 itself, and the fake huge responses whose bodies the worker (rightly) abandons.
  assert.ok(problems.every((p) => /404|huge-/.test(p)), problems.join('\n'));
});

test('a second visit loads the model from Cache Storage, with no network; page-load numbers', async () => {
  // One browser context for both visits, so they share Cache Storage.
  const context = await app.newContext();
  const problems = [];
  const visit = async () => {
    const page = await context.newPage();
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
    await routeBundle(page);
    const t0 = Date.now();
    await page.goto(app.url, { waitUntil: 'load' });
    await waitModelReady(page, MODEL_TIMEOUT_MS);
    return { page, wallMs: Date.now() - t0 };
  };
  const first = await visit();
  assert.match(await first.page.getByTestId('model-status').textContent(), /downloaded/);
  await first.page.close();

  // Second visit: the model URL now fails, so the model can only come from the cache.
  let modelRequests = 0;
  await context.route('**/*.gguf', (route) => {
    modelRequests += 1;
    return route.abort('internetdisconnected');
  });
  const second = await visit();
  const status = await second.page.getByTestId('model-status').textContent();
  assert.match(status, /from the browser cache/, status);
  // Only the worker may have asked (it checks the cache first, so it should not).
  assert.equal(modelRequests, 0, 'the cached model was fetched again');

  const page = second.page;
  await setSetting(page, 'setting-max-tokens', 8);
  const interactive = await markGap(page, null, 'axiscope:interactive');
  const modelReady = await markGap(page, null, 'axiscope:model-ready');
  await chat(page, 'Hello!');
  const firstToken = await markGap(page, 'axiscope:send', 'axiscope:first-token');
  const wasm = statSync(path.join(distDir, (await listWasm()).page)).size;
  const numbers = {
    page_wasm_bytes: wasm,
    interactive_ms: Math.round(interactive),
    model_ready_from_cache_ms: Math.round(modelReady),
    first_token_ms: Math.round(firstToken),
    second_visit_wall_ms: second.wallMs,
  };
  console.log('page-load numbers:', JSON.stringify(numbers));
  mkdirSync(artifactsDir, { recursive: true });
  writeFileSync(path.join(artifactsDir, 'page-load.json'), JSON.stringify(numbers, null, 2));
  assert.ok(interactive > 0 && modelReady > interactive && firstToken > 0);
  await context.close();
  assert.deepEqual(problems, []);
});

async function listWasm() {
  const { readdirSync } = await import('node:fs');
  const files = readdirSync(distDir).filter((f) => f.endsWith('.wasm'));
  return { page: files.find((f) => f.startsWith('axiscope-web')), worker: files.find((f) => f.startsWith('axiscope-worker')) };
}
