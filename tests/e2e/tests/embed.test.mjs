// Embed mode: one view alone, nothing heavy loaded until the reader asks; themes; a phone-wide
// layout; keyboard use.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { routeBundle, waitModelReady } from '../app.mjs';
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
  // Tab from the top reaches the theme button first, then the rest in order.
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
