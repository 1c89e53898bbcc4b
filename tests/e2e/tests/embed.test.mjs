// Embed mode: one view alone, nothing heavy loaded until the reader asks; themes; a phone-wide
// layout; keyboard use; the Embed button's snippet pasted into a page of another origin.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { distDir, startApp } from '../harness.mjs';
import { MODEL_TIMEOUT_MS, REPLY_TIMEOUT_MS, openReady, routeBundle, waitModelReady } from '../app.mjs';
import { startServer } from '../server.mjs';
import { SYNTHETIC_ROLES } from '../bundle.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

/** Opens `relative` and records every model request the page (or its worker) makes. */
async function openCounting(relative) {
  const models = [];
  const opened = await app.open(relative, {
    beforeLoad: async (p) => {
      await routeBundle(p);
      p.on('request', (r) => r.url().endsWith('.gguf') && models.push(r.url()));
    },
  });
  return { ...opened, models };
}

test('?embed=map shows the map alone and loads no model', async () => {
  const { page, problems, models } = await openCounting('?embed=map&theme=dark');
  await page.getByTestId('persona-map').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('role-point').count(), SYNTHETIC_ROLES.length);
  for (const other of ['chat-input', 'drift-chart', 'cap-slider', 'app-title']) {
    assert.equal(await page.getByTestId(other).count(), 0, `${other} in the map embed`);
  }
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await page.waitForTimeout(1500);
  assert.deepEqual(models, [], 'the map embed fetched a model');
  await app.screenshot(page, 'embed-map-dark');
  assert.deepEqual(problems, []);
});

test('?embed=cap waits for the reader, then loads the model', async () => {
  const { page, problems, models } = await openCounting('?embed=cap');
  await page.getByTestId('cap-slider').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('persona-map').count(), 0);
  await page.waitForTimeout(1500);
  assert.deepEqual(models, [], 'the cap embed fetched a model before being asked');
  await page.getByTestId('embed-start').click();
  await waitModelReady(page);
  assert.equal(await page.getByTestId('embed-start').count(), 0);
  await app.screenshot(page, 'embed-cap');
  assert.deepEqual(problems, []);
});

test('360 px wide: nothing overflows sideways; the keyboard reaches the chat', async () => {
  const context = await app.newContext({ viewport: { width: 360, height: 740 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  await routeBundle(page);
  await page.goto(`${app.url}?theme=light`);
  await page.getByTestId('persona-map').waitFor({ timeout: 60_000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
  // Tab from the top reaches the tour and theme buttons first, then the rest in order.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'tour-start');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'theme-toggle');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await page.getByTestId('chat-input').focus();
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'chat-input');
  await app.screenshot(page, 'narrow-360');
  await context.close();
  assert.deepEqual(problems, []);
});

/** Polls `check` (async, returns a truthy value when done) until it holds or `ms` pass. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last?.ok) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: ${JSON.stringify(last)}`);
}

/** The height of the iframe `view` on `page`, and of the page inside it. */
async function heights(page, view) {
  const handle = await page.locator(`iframe[data-view="${view}"]`).elementHandle();
  const frame = await handle.contentFrame();
  const outer = await handle.evaluate((f) => f.getBoundingClientRect().height);
  const inner = await frame.evaluate(() => Math.ceil(document.documentElement.getBoundingClientRect().height));
  return { outer, inner, ok: Math.abs(outer - inner) <= 1 };
}

test('the Embed snippet works on another origin: every view renders, frames fit, the cap view chats', async () => {
  // The snippet as the app's Embed button gives it, in the light theme with 6-token replies.
  const opened = await openReady(app, { maxTokens: 6 });
  const appPage = opened.page;
  await appPage.getByTestId('theme-toggle').click();
  assert.equal(await appPage.evaluate(() => document.documentElement.dataset.theme), 'light');
  await appPage.getByTestId('embed-map').click();
  const mapSnippet = await appPage.locator('#embed-map-snippet').inputValue();
  assert.doesNotMatch(mapSnippet, /#s=/, 'the map embed loads no model: no conversation to carry');
  await appPage.getByTestId('embed-cap').click();
  const snippet = await appPage.locator('#embed-cap-snippet').inputValue();
  const [, src] = snippet.match(/^<iframe src="([^"]+)" title="[^"]+"/);
  const url = new URL(src.replaceAll('&amp;', '&'));
  assert.equal(`${url.origin}${url.pathname}`, app.url);
  assert.equal(url.searchParams.get('embed'), 'cap');
  assert.equal(url.searchParams.get('theme'), 'light');
  assert.match(url.hash, /^#s=[A-Za-z0-9_-]+$/);
  assert.ok(snippet.endsWith(`<script src="${app.url}axiscope-embed.js" async></script>`), snippet);
  assert.deepEqual(opened.problems, []);
  await appPage.context().close();

  // A "blog" on another origin (another port), without cross-origin isolation headers.
  const blog = await startServer({ root: distDir, isolate: false });
  const context = await app.newContext({ viewport: { width: 900, height: 800 } });
  try {
    const page = await context.newPage();
    const problems = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
    page.on('response', (r) => r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
    await page.goto(`${blog.url}embed-example.html?app=${encodeURIComponent(app.url)}${url.hash}`);
    const frame = (view) => page.frameLocator(`iframe[data-view="${view}"]`);

    await frame('map').getByTestId('persona-map').waitFor({ timeout: 60_000 });
    assert.ok((await frame('map').getByTestId('role-point').count()) > 50);
    await frame('drift').locator('.drift-card').waitFor({ timeout: 60_000 });
    await frame('drift').getByTestId('embed-start').waitFor();
    await frame('cap').getByTestId('cap-slider').waitFor({ timeout: 60_000 });
    for (const view of ['map', 'drift', 'cap']) {
      assert.equal(await frame(view).getByTestId(`embed-${view}`).count(), 0, `an Embed button inside the ${view} embed`);
      // Chromium does not render cross-origin frames out of view (nor run their resize
      // observers) until the reader scrolls to them.
      await page.locator(`iframe[data-view="${view}"]`).scrollIntoViewIfNeeded();
      await until(() => heights(page, view), 20_000, `the ${view} frame does not fit its page`);
    }
    const capFrame = await (await page.locator('iframe[data-view="cap"]').elementHandle()).contentFrame();
    assert.equal(await capFrame.evaluate(() => window.crossOriginIsolated), false);

    // The cap view loads the model when asked and chats: Default and Capped, 6 tokens each
    // (the snippet's settings); its frame grows with the conversation.
    const before = (await heights(page, 'cap')).outer;
    await frame('cap').getByTestId('embed-start').click();
    await capFrame.waitForFunction(() => document.querySelector('[data-testid="model-status"]')?.dataset.state === 'ready', null, {
      timeout: MODEL_TIMEOUT_MS,
    });
    await frame('cap').getByTestId('chat-input').fill('Hello!');
    await frame('cap').getByTestId('chat-send').click();
    await capFrame.waitForFunction(
      () => document.querySelectorAll('[data-testid="assistant-message"][data-finish]').length === 2,
      null,
      { timeout: REPLY_TIMEOUT_MS },
    );
    for (const branch of ['default', 'capped']) {
      const meta = await frame('cap').locator(`[data-testid="assistant-message"][data-branch="${branch}"] .meta`).textContent();
      assert.match(meta, /^[1-6] tokens,/, `${branch}: ${meta}`);
    }
    const after = await until(() => heights(page, 'cap'), 20_000, 'the cap frame does not follow its page');
    assert.ok(after.outer > before, `the cap frame stayed at ${before} px with a conversation in it`);
    await app.screenshot(page, 'embed-example-other-origin');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await blog.close();
  }
});
