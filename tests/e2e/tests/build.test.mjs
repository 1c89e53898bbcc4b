// The map for a model without a bundle: built in the worker, kept in Cache Storage for the
// next visit; and a bundle made for another model is named as such.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { MODEL_TIMEOUT_MS, routeBundle, streamBytes, waitModelReady } from '../app.mjs';
import { syntheticBundle } from '../bundle.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('without a bundle the map is built in the browser, and found again on the next visit', async () => {
  const context = await app.newContext({ viewport: { width: 1100, height: 800 } });
  const problems = [];
  const open = async () => {
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    // No bundle is served: the 404 below is the only console error allowed.
    page.on('console', (m) => m.type() === 'error' && !/404/.test(m.text()) && problems.push(m.text()));
    await page.route('**/bundles/**', (route) => route.fulfill({ status: 404, body: 'no bundle' }));
    await page.goto(app.url);
    await waitModelReady(page, MODEL_TIMEOUT_MS);
    return page;
  };
  const page = await open();
  assert.match(await page.getByTestId('bundle-error').first().textContent(), /HTTP 404/);
  assert.equal(await page.getByTestId('map-builder').evaluate((d) => d.open), true, 'the builder should be open');
  await page.getByTestId('build-size').selectOption('tiny');
  await page.getByTestId('build-start').click();
  await page.getByTestId('build-progress').waitFor({ timeout: 60_000 });
  await page.getByTestId('persona-map').waitFor({ timeout: 600_000 });
  // The tiny build: 8 roles (the default is the star), 18 replies at most (8 + the
  // default's 5 prompts x 2 seeds); empty replies are left out.
  assert.equal(await page.getByTestId('role-point').count(), 8);
  const stats = await page.getByTestId('map-stats').textContent();
  assert.match(stats, /8 roles, (1[0-8]|[2-9]) rollouts, layer \d+ of 30/, stats);
  await app.screenshot(page, 'built-in-browser');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-bundle').click()]);
  assert.match(download.suggestedFilename(), /\.axb$/);
  // The bundle crossed from the worker as a transferred buffer: whole, with its magic.
  const axb = await streamBytes(await download.createReadStream());
  assert.equal(axb.subarray(0, 8).toString('latin1'), 'AXBUNDLE');
  assert.ok(axb.length > 50_000, `${axb.length} bytes`);
  await page.close();

  // Next visit, still no bundle served: the map built here comes back from the cache.
  const again = await open();
  await again.getByTestId('persona-map').waitFor({ timeout: 60_000 });
  assert.equal(await again.getByTestId('role-point').count(), 8);
  await context.close();
  assert.deepEqual(problems, []);
});

test('a bundle built for another model is named as such and the builder offered', async () => {
  const { page, problems } = await app.open('', { beforeLoad: (p) => routeBundle(p, syntheticBundle({ sha256: '0'.repeat(64) })) });
  await waitModelReady(page);
  const mismatch = page.getByTestId('bundle-mismatch');
  await mismatch.waitFor();
  assert.match(await mismatch.textContent(), /built for .*\(sha256 000000000000…\), not the loaded model/);
  assert.equal(await page.getByTestId('map-builder').evaluate((d) => d.open), true);
  assert.deepEqual(problems, []);
});
