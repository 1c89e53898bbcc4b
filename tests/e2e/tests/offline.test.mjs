// A workshop room with bad Wi-Fi: a page visited once opens again, and chats, with the server
// gone. The service worker (public/sw.js) keeps the shell (page, both worker builds, the
// bundle); the app keeps the model (Cache Storage).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { distDir, startApp } from '../harness.mjs';
import { chat, setSetting, waitModelReady } from '../app.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

/** The files the service worker has stored, relative to the app's URL. */
async function storedFiles(page) {
  return page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    const cache = await caches.open('axiscope-shell-v1');
    const base = new URL('./', location.href).href;
    return (await cache.keys()).map((r) => r.url.replace(base, ''));
  });
}

test('a page visited once reloads and chats with the server stopped', async () => {
  const context = await app.newContext({ serviceWorkers: 'allow' });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${app.url}?backend=cpu`, { waitUntil: 'load' });
  await waitModelReady(page);

  // Every file precache.json names is stored before the network goes (both worker builds
  // included, though the page started only one).
  const listed = JSON.parse(readFileSync(path.join(distDir, 'precache.json'), 'utf8'));
  assert.ok(listed.some((f) => /relaxed.*\.wasm$/.test(f)) && listed.some((f) => /\.axb$/.test(f)), listed.join(' '));
  let stored = [];
  for (let i = 0; i < 120 && !listed.every((f) => stored.includes(f)); i++) {
    stored = await storedFiles(page);
    await page.waitForTimeout(500);
  }
  assert.deepEqual(listed.filter((f) => !stored.includes(f)), [], 'files the service worker did not store');

  await app.stopServer();
  await page.reload({ waitUntil: 'load' });
  await waitModelReady(page);
  const status = await page.getByTestId('model-status').textContent();
  assert.match(status, /from the browser cache/, status);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="role-point"]').length > 0, null, {
    timeout: 60_000,
  });
  await setSetting(page, 'setting-max-tokens', 6);
  await chat(page, 'Hello!');
  const reply = (await page.getByTestId('assistant-message').last().textContent()).trim();
  assert.ok(reply.length > 0, 'an empty reply offline');
  await app.screenshot(page, 'offline-reload');
  await context.close();
  assert.deepEqual(problems, []);
});
