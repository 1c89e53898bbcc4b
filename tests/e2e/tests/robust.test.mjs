// Robustness in the page: download faults (cut off mid-file, 404, a host without CORS, a
// damaged default model) are reported with a "Try again" button, leave nothing in Cache
// Storage, and keep the previous model and the conversation; the Content-Security-Policy is
// in force and nothing violates it while loading and chatting.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { distDir, startApp } from '../harness.mjs';
import { chat, MODEL_TIMEOUT_MS, openReady, waitIdle, waitModelReady } from '../app.mjs';

const MODEL_FILE = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL = readFileSync(path.join(distDir, MODEL_FILE));
// One byte flipped deep in the tensor data: it still parses, only its sha256 tells.
const DAMAGED = Buffer.from(MODEL);
DAMAGED[DAMAGED.length - 1000] ^= 0xff;

/**
 * A second origin serving the model badly. With `cors`, it allows the page (what a model
 * host must do); without, the browser refuses to hand the worker the response.
 * /cut.gguf announces the whole file and closes the connection after 1 MB, on the first
 * `cutTimes` requests; /missing.gguf is a 404.
 */
async function faultServer({ cors, cutTimes = 1 }) {
  let cuts = 0;
  const server = createServer((req, res) => {
    const headers = cors ? { 'Access-Control-Allow-Origin': '*' } : {};
    const url = new URL(req.url, 'http://x').pathname;
    if (url === '/damaged.gguf') {
      res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': DAMAGED.length });
      res.end(DAMAGED);
      return;
    }
    if (url === '/missing.gguf') {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end('no such model');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': MODEL.length });
    if (url === '/cut.gguf' && cuts < cutTimes) {
      cuts += 1;
      res.write(MODEL.subarray(0, 1 << 20), () => setTimeout(() => res.socket.destroy(), 50));
      return;
    }
    res.end(MODEL);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))),
  };
}

/** Every URL in Cache Storage with the size of its body. */
async function cached(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const c = await caches.open(name);
      for (const req of await c.keys()) out[req.url] = (await (await c.match(req)).arrayBuffer()).byteLength;
    }
    return out;
  });
}

async function loadUrl(page, url) {
  await page.getByTestId('model-url').fill(url);
  await page.getByTestId('model-url-load').click();
}

/** Waits for a model error matching `re`; returns its text. */
async function errorLike(page, re) {
  await page.waitForFunction(
    (src) => new RegExp(src, 'i').test(document.querySelector('[data-testid="model-error"]')?.textContent ?? ''),
    re.source,
    { timeout: MODEL_TIMEOUT_MS },
  );
  return page.getByTestId('model-error').textContent();
}

/** CSP violations, recorded by the page itself from its first script on. */
async function recordViolations(page) {
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
}

/** Sends a message the engine refuses at once, and waits for the refusal. */
async function sendRefused(page, text) {
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-send').click();
  await page.getByTestId('context-choice').waitFor({ timeout: 120_000 });
  await waitIdle(page);
}

let app;
let good;
let nocors;
before(async () => {
  app = await startApp();
  // /cut.gguf is cut twice: once among the faults, once more before "Try again".
  good = await faultServer({ cors: true, cutTimes: 2 });
  nocors = await faultServer({ cors: false });
});
after(async () => {
  await good?.close();
  await nocors?.close();
  await app?.close();
});

test('download faults: reported, retried, nothing corrupt cached, model and conversation kept', async () => {
  const { page, problems } = await openReady(app, { beforeLoad: recordViolations });
  await chat(page, 'Hi!');
  const reply = await page.getByTestId('assistant-message').first().textContent();
  const status = await page.getByTestId('model-status').textContent();
  const cases = [
    [`${good.url}cut.gguf`, /cut off|network|failed/],
    [`${good.url}missing.gguf`, /HTTP 404/],
    [`${nocors.url}model.gguf`, /cross-origin|failed/],
  ];
  const tried = [];
  for (const [url, re] of cases) {
    await loadUrl(page, url);
    const text = await errorLike(page, re);
    tried.push(`${url.replace(/127\.0\.0\.1:\d+/, 'host')}: ${text.trim()}`);
    assert.match(text, /previous model is still loaded/);
    assert.equal(await page.getByTestId('model-retry').count(), 1, 'no Try again button');
    assert.equal(await page.getByTestId('model-status').textContent(), status);
    const keys = Object.keys(await cached(page));
    assert.ok(!keys.some((k) => k.startsWith(good.url) || k.startsWith(nocors.url)), `cached after a fault: ${keys}`);
  }
  console.log('download faults tried:\n  ' + tried.join('\n  '));
  assert.equal((await page.getByTestId('assistant-message').first().textContent()), reply);

  // Try again on the cut download: the host now sends the whole file, which loads and is
  // cached at its full size.
  await loadUrl(page, `${good.url}cut.gguf`);
  await errorLike(page, /cut off|network|failed/);
  await page.getByTestId('model-retry').click();
  await waitModelReady(page);
  assert.equal(await page.getByTestId('model-error').count(), 0);
  const entries = await cached(page);
  assert.equal(entries[`${good.url}cut.gguf`], MODEL.length, JSON.stringify(entries));
  await chat(page, 'Still there?');
  assert.equal(await page.getByTestId('assistant-message').count(), 2);
  assert.deepEqual(await page.evaluate(() => window.__csp), []);
  await app.screenshot(page, 'robust-download-retried');
  // Only the faults themselves may show up as failed requests.
  assert.ok(problems.every((p) => /cut\.gguf|missing\.gguf|model\.gguf|404|CORS|Access-Control/i.test(p)), problems.join('\n'));
});

test('a damaged default model is refused by its sha256, not cached, and loads on retry', async () => {
  let damaged = true;
  const { page } = await app.open('', {
    beforeLoad: async (p) => {
      await recordViolations(p);
      // A redirect to the damaged copy (98 MB would not fit through Playwright's pipe).
      await p.route(`**/${MODEL_FILE}`, (route) =>
        damaged ? route.fulfill({ status: 302, headers: { location: `${good.url}damaged.gguf` } }) : route.continue(),
      );
    },
  });
  const text = await errorLike(page, /sha256/);
  assert.match(text, /damaged: sha256 [0-9a-f]{64}, expected b179c952/, text);
  assert.equal(await page.getByTestId('model-retry').count(), 1);
  const keys = Object.keys(await cached(page));
  assert.ok(!keys.some((k) => k.endsWith('.gguf')), `damaged model cached: ${keys}`);
  damaged = false;
  await page.getByTestId('model-retry').click();
  await waitModelReady(page);
  const entries = await cached(page);
  const entry = Object.entries(entries).find(([k]) => k.endsWith(MODEL_FILE));
  assert.equal(entry?.[1], MODEL.length, JSON.stringify(entries));
  assert.deepEqual(await page.evaluate(() => window.__csp), []);
});

test('the page sets a Content-Security-Policy without unsafe-eval, and keeps to it', async () => {
  const { page, problems } = await openReady(app, {
    relative: '?model=javascript:alert(1)&%3Cimg%20src=x%20onerror=alert(1)%3E=1',
    beforeLoad: recordViolations,
  });
  const csp = await page.evaluate(() => document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content ?? '');
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval' 'sha256-[A-Za-z0-9+/=]+'/, csp);
  assert.doesNotMatch(csp, /'unsafe-eval'|'unsafe-inline'|inline-script-hashes/, csp);
  assert.match(csp, /object-src 'none'/);
  // The unknown parameter is named as text, never markup.
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  await chat(page, 'Hello!');
  // An inline script, as an injection would add, is refused and reported.
  const ran = await page.evaluate(() => {
    window.__ran = false;
    const s = document.createElement('script');
    s.textContent = 'window.__ran = true';
    document.body.append(s);
    return new Promise((r) => setTimeout(() => r(window.__ran), 100));
  });
  assert.equal(ran, false, 'an inline script ran despite the CSP');
  const violations = await page.evaluate(() => window.__csp);
  assert.deepEqual(violations, ['script-src-elem inline'], 'only the deliberate injection may be refused');
  assert.ok(problems.every((p) => /Content Security Policy/.test(p)), problems.join('\n'));
});

test('a full context offers trim or start over; trimming keeps the earlier drift points', async () => {
  const { page, problems } = await openReady(app);
  await chat(page, 'Hi!');
  await page.getByTestId('drift-point').first().waitFor({ timeout: 60_000 });
  const points = await page.getByTestId('drift-point').count();
  const first = await page.getByTestId('assistant-message').first().textContent();
  // ~9,000 tokens: more than the model's 8,192-token context. The engine refuses it before
  // running anything, so this costs only the tokenization.
  const huge = 'word '.repeat(9000);
  await sendRefused(page, huge);
  const error = await page.getByTestId('chat-error').textContent();
  assert.match(error, /needs \d+ tokens but the model's context holds 8192: trim the oldest turns or start over/, error);
  await page.getByTestId('context-choice').waitFor();
  assert.equal(await page.getByTestId('user-message').count(), 1, 'the refused turn stays on the page');
  assert.equal(await page.getByTestId('context-trim').isEnabled(), true);

  await page.getByTestId('context-trim').click();
  await page.waitForFunction(() => document.querySelector('[data-turn="0"]')?.dataset.trimmed === 'true');
  assert.equal(await page.getByTestId('context-choice').count(), 0);
  assert.equal(await page.getByTestId('chat-error').count(), 0);
  // The trimmed turn stays: its text and its drift point.
  assert.equal(await page.getByTestId('assistant-message').first().textContent(), first);
  assert.equal(await page.getByTestId('drift-point').count(), points);
  assert.match(await page.getByTestId('user-message').first().textContent(), /trimmed/);

  // The chat goes on from an empty context; the new turn's reply is measured and charted.
  await chat(page, 'Hello again!');
  assert.equal(await page.getByTestId('assistant-message').count(), 2);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="drift-point"]').length > n, points, { timeout: 60_000 });
  // Undo takes back only what the model still sees.
  await page.getByTestId('chat-undo').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="user-message"]').length === 1);
  assert.equal(await page.getByTestId('chat-undo').isDisabled(), true);

  // Start over clears everything.
  await sendRefused(page, huge);
  await page.getByTestId('context-restart').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="user-message"]').length === 0);
  assert.equal(await page.getByTestId('context-choice').count(), 0);
  await app.screenshot(page, 'robust-context-start-over');
  assert.deepEqual(problems, []);
});
