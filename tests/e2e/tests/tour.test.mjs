// The guided tour end to end on the real model, and axe-core scans (no serious or critical
// violation) of the full page in both themes, the tour and each embed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { REPLY_TIMEOUT_MS, chat, openReady, routeBundle, waitModelReady } from '../app.mjs';
import { seriousViolations } from '../axe.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

/** Waits until the tour shows `step` with its run finished. */
async function stepDone(page, step) {
  await page.waitForFunction(
    (s) => {
      const t = document.querySelector('[data-testid="tour"]');
      return t?.dataset.step === String(s) && t.dataset.done === 'true';
    },
    step,
    // Three turns of 24 tokens, twice on the capped step, on the wasm CPU engine.
    { timeout: 3 * REPLY_TIMEOUT_MS },
  );
}

test('#tour runs its three steps on the model, then is remembered', async () => {
  const { page, problems } = await openReady(app, { relative: '#tour' });
  const tour = page.getByTestId('tour');
  await stepDone(page, 0);
  // Step 1: the map, with the bundle's measured numbers.
  assert.match(await page.getByTestId('tour-measured').innerText(), /\d/);
  assert.ok((await page.getByTestId('role-point').count()) > 0);
  assert.deepEqual(await seriousViolations(page), [], 'axe on the tour');
  await app.screenshot(page, 'tour-1-map');

  // Step 2: the therapy preset's first turns run; each reply lands on the drift chart.
  await page.getByTestId('tour-next').click();
  await stepDone(page, 1);
  assert.equal(await page.locator('[data-testid="assistant-message"][data-branch="default"]').count(), 3);
  assert.equal(await page.locator('[data-testid="drift-point"][data-branch="default"]').count(), 3);
  assert.equal(await page.locator('[data-testid="assistant-message"][data-branch="capped"]').count(), 0);
  assert.match(await page.getByTestId('tour-progress').innerText(), /^Done: 3 turns/);
  await app.screenshot(page, 'tour-2-drift');

  // Step 3: the same turns again, Default and Capped side by side.
  await page.getByTestId('tour-next').click();
  await stepDone(page, 2);
  for (const branch of ['default', 'capped']) {
    const sel = `[data-testid="drift-point"][data-branch="${branch}"]`;
    assert.equal(await page.locator(sel).count(), 3, `${branch} drift points`);
  }
  assert.match(await page.getByTestId('cap-label').innerText(), /75/);
  await app.screenshot(page, 'tour-3-cap');

  // Finishing restores the visitor's settings and is remembered: no offer on the next visit.
  await page.getByTestId('tour-finish').click();
  assert.equal(await tour.count(), 0);
  assert.equal(await page.getByTestId('setting-max-tokens').inputValue(), '8');
  assert.equal(await page.evaluate(() => localStorage.getItem('axiscope:tour')), 'seen');
  await page.reload({ waitUntil: 'load' });
  await waitModelReady(page);
  assert.equal(await page.getByTestId('tour-offer').count(), 0);
  assert.deepEqual(problems, []);
});

test('axe: no serious or critical violation on the page, in both themes, with a reply', async () => {
  for (const theme of ['light', 'dark']) {
    const { page, problems } = await openReady(app, { relative: `?theme=${theme}` });
    assert.equal(await page.getByTestId('tour-offer').count(), 1, 'a first visit is offered the tour');
    await chat(page, 'Hello!');
    assert.deepEqual(await seriousViolations(page), [], `axe on the page (${theme})`);
    assert.deepEqual(problems, []);
    await page.context().close();
  }
});

test('axe: no serious or critical violation in any embed', async () => {
  for (const view of ['map', 'drift', 'cap']) {
    const { page, problems } = await app.open(`?embed=${view}`, { beforeLoad: routeBundle });
    await page.locator(`main[data-embed="${view}"]`).waitFor({ timeout: 60_000 });
    if (view === 'map') await page.getByTestId('persona-map').waitFor({ timeout: 60_000 });
    else await page.getByTestId('embed-start').waitFor({ timeout: 60_000 });
    assert.deepEqual(await seriousViolations(page), [], `axe on ?embed=${view}`);
    assert.deepEqual(problems, []);
    await page.context().close();
  }
});
