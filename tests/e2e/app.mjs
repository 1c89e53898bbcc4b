// Helpers for the app's browser tests: open the page with a known persona bundle, wait for the
// model, chat with short replies. The CPU engine in wasm is slow on a busy 2-core box, so
// replies are kept to a few tokens and the timeouts are generous.

import { syntheticBundle } from './bundle.mjs';

/** Loading the model (download or cache, parse) under load. */
export const MODEL_TIMEOUT_MS = 180_000;
/** One short reply (prefill of the conversation plus a few tokens), twice with capping. */
export const REPLY_TIMEOUT_MS = 240_000;

/** Serves `bundle` (default: the synthetic one) for every bundle the page asks for. */
export async function routeBundle(page, bundle = syntheticBundle()) {
  await page.route('**/bundles/**', (route) =>
    route.fulfill({ status: 200, contentType: 'application/octet-stream', body: bundle }),
  );
}

export async function waitModelReady(page, timeout = MODEL_TIMEOUT_MS) {
  await page.waitForFunction(
    () => document.querySelector('[data-testid="model-status"]')?.dataset.state === 'ready',
    null,
    { timeout },
  );
}

/** Opens the app with the synthetic bundle, waits for the model, sets short replies. */
export async function openReady(app, { relative = '', bundle, maxTokens = 8, beforeLoad, backend } = {}) {
  const opened = await app.open(relative, {
    backend,
    beforeLoad: async (page) => {
      await routeBundle(page, bundle);
      if (beforeLoad) await beforeLoad(page);
    },
  });
  await waitModelReady(opened.page);
  await setSetting(opened.page, 'setting-max-tokens', maxTokens);
  return opened;
}

/** Sets a generation setting (the settings panel is a closed <details> at first). */
export async function setSetting(page, testid, value) {
  const details = page.getByTestId('settings');
  if (!(await details.evaluate((d) => d.open))) await details.locator('summary').click();
  const input = page.getByTestId(testid);
  await input.fill(String(value));
  await input.dispatchEvent('change');
}

/** Resolves once the worker has finished every request (Send is enabled, nothing streams). */
export async function waitIdle(page, timeout = REPLY_TIMEOUT_MS) {
  await page.waitForFunction(
    () => !document.querySelector('[data-testid="chat-send"]').disabled && !document.querySelector('[aria-busy="true"]'),
    null,
    { timeout },
  );
}

/** Sends a message and waits for the whole turn (both replies when capping is on). */
export async function chat(page, text) {
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-send').click();
  // The turn shows at once; Send stays disabled until the worker is done.
  await page.waitForFunction(() => document.querySelector('[data-testid="chat-send"]').disabled, null, { timeout: 10_000 });
  await waitIdle(page);
}

/** Milliseconds between two performance marks the app sets (or from navigation start). */
export async function markGap(page, from, to) {
  return page.evaluate(
    ([a, b]) => {
      const t = (n) => (n ? performance.getEntriesByName(n).at(-1)?.startTime : 0);
      return t(b) - t(a);
    },
    [from, to],
  );
}

/** A download's whole body (Playwright's `download.createReadStream()`), as bytes or text. */
export async function streamBytes(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

export async function streamText(stream) {
  return (await streamBytes(stream)).toString('utf8');
}
