// The model menu: a bigger model of the paper's families is chosen by name, its download size,
// host, licence and memory need are said before it starts, it loads by URL and chats; a device
// that reports too little memory gets the reason and keeps its model. The public host is not
// reachable here, so the menu's Gemma URL is answered with the random-weight gemma3 fixture
// (the engine's Gemma path and SentencePiece vocabulary, running in the browser).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { artifactsDir, repoRoot, startApp } from '../harness.mjs';
import { MODEL_TIMEOUT_MS, openReady, REPLY_TIMEOUT_MS, waitIdle, waitModelReady } from '../app.mjs';

const GEMMA = readFileSync(path.join(repoRoot, 'tests/fixtures/arch/gemma3.gguf'));
const GEMMA_URL = '**/gemma-3-1b-it-Q4_K_M.gguf';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('a menu model loads from its host and chats, with its costs said first', async () => {
  const { page, problems } = await openReady(app, {
    beforeLoad: (p) =>
      p.route(GEMMA_URL, (route) =>
        route.fulfill({ status: 200, headers: { 'content-type': 'application/octet-stream' }, body: GEMMA }),
      ),
  });
  await page.getByTestId('model-menu').selectOption('gemma-3-1b');
  const note = (await page.getByTestId('model-menu-note').textContent()).trim();
  assert.match(note, /806\.0 MB download from huggingface\.co/, note);
  assert.match(note, /needs about 1\d{3}\.\d MB of memory/, note);
  assert.match(note, /Licence: Gemma Terms of Use/, note);

  await page.getByTestId('model-menu-load').click();
  await page.waitForFunction(
    () => /gemma-3-1b-it-Q4_K_M/.test(document.querySelector('[data-testid="model-status"]')?.textContent ?? ''),
    null,
    { timeout: MODEL_TIMEOUT_MS },
  );
  await waitModelReady(page);
  const status = await page.getByTestId('model-status').textContent();
  assert.match(status, /gemma3/i, status);
  // Gemma's template has no system role: the page says where a system prompt goes.
  const templateNote = await page.getByTestId('model-template-note').textContent();
  assert.match(templateNote, /no system role: a system prompt opens the first user turn/, templateNote);

  // A 2-layer model of width 64 replies faster than the chat helper can see Send disabled.
  const before = await page.getByTestId('assistant-message').count();
  await page.getByTestId('chat-input').fill('Hello there');
  await page.getByTestId('chat-send').click();
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="assistant-message"]').length > n,
    before,
    { timeout: REPLY_TIMEOUT_MS },
  );
  await waitIdle(page);
  await page.screenshot({ path: path.join(artifactsDir, 'models-gemma.png'), fullPage: false });
  const reply = (await page.getByTestId('assistant-message').last().textContent()).trim();
  assert.ok(reply.length > 0, 'the Gemma model replied');
  assert.equal(await page.getByTestId('chat-error').count(), 0);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a device that reports too little memory is told why and keeps its model', async () => {
  const { page, problems } = await openReady(app, {
    beforeLoad: (p) => p.addInitScript(() => Object.defineProperty(navigator, 'deviceMemory', { get: () => 1 })),
  });
  const statusBefore = await page.getByTestId('model-status').textContent();
  await page.getByTestId('model-menu').selectOption('llama-3.2-1b');
  await page.getByTestId('model-menu-load').click();
  const error = page.getByTestId('model-error');
  await error.waitFor({ timeout: 10_000 });
  const text = (await error.textContent()).trim();
  assert.match(text, /Llama-3\.2-1B-Instruct needs about \d+\.\d MB of memory; this device reports 1 GB/, text);
  assert.equal(await page.getByTestId('model-status').textContent(), statusBefore);
  assert.deepEqual(problems, []);
  await page.close();
});
