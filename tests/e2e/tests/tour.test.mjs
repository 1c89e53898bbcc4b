// The guided tour end to end on the real model, and axe-core scans (no serious or critical
// violation) of the full page in both themes, the tour and each embed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { REPLY_TIMEOUT_MS, chat, openReady, routeBundle, setSetting, waitModelReady } from '../app.mjs';
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

/**
 * How the tour's panel sits against the card whose heading is `id`, once scrolling has
 * stopped: whether the heading shows clear of the panel, and how many pixels of the card's
 * height show clear of it (in the view, not under the panel).
 */
async function placement(page, id) {
  await page.waitForFunction(
    () => new Promise((done) => {
      const y = scrollY;
      setTimeout(() => done(scrollY === y), 150);
    }),
    null,
    { timeout: 10_000 },
  );
  return page.evaluate((id) => {
    const heading = document.getElementById(id).getBoundingClientRect();
    const card = document.getElementById(id).closest('.card').getBoundingClientRect();
    const panel = document.querySelector('[data-testid="tour"]').getBoundingClientRect();
    const across = (a, b) => Math.min(a.right, b.right) > Math.max(a.left, b.left);
    const over = (a, b) => across(a, b) && Math.min(a.bottom, b.bottom) > Math.max(a.top, b.top);
    // The panel is beside the card (nothing under it) or a sheet below it.
    const bottom = Math.min(card.bottom, innerHeight, across(card, panel) ? panel.top : Infinity);
    return {
      headingClear: heading.top >= 0 && heading.bottom <= innerHeight && !over(heading, panel),
      clearPx: Math.round(bottom - Math.max(card.top, 0)),
      cardPx: Math.round(card.height),
      viewPx: innerHeight,
    };
  }, id);
}

/** The panel leaves the card's heading and at least half the view (or the whole card) clear. */
async function assertClear(page, id) {
  // The tour scrolls smoothly, in the frame after the step shows: give it time to arrive.
  await page
    .waitForFunction((id) => Math.abs(document.getElementById(id).getBoundingClientRect().top) < 40, id, { timeout: 5_000 })
    .catch(() => {});
  const p = await placement(page, id);
  assert.ok(p.headingClear, `the tour panel covers #${id}: ${JSON.stringify(p)}`);
  assert.ok(p.clearPx >= Math.min(p.cardPx, p.viewPx / 2), `the tour panel covers #${id}: ${JSON.stringify(p)}`);
}

test('#tour runs its three steps on the model, then is remembered', async () => {
  // Not openReady: its setting of max tokens would scroll the page under the tour's own
  // scroll to the map; it is set after step 1's check.
  const { page, problems } = await app.open('#tour', { beforeLoad: (p) => routeBundle(p) });
  await waitModelReady(page);
  const tour = page.getByTestId('tour');
  await stepDone(page, 0);
  // Step 1: the map, with the bundle's measured numbers.
  assert.match(await page.getByTestId('tour-measured').innerText(), /\d/);
  assert.ok((await page.getByTestId('role-point').count()) > 0);
  assert.deepEqual(await seriousViolations(page), [], 'axe on the tour');
  await assertClear(page, 'map-h');
  await app.screenshot(page, 'tour-1-map', { fullPage: false });
  await setSetting(page, 'setting-max-tokens', 8);

  // Step 2: the therapy preset's first turns run; each reply lands on the drift chart.
  await page.getByTestId('tour-next').click();
  await stepDone(page, 1);
  assert.equal(await page.locator('[data-testid="assistant-message"][data-branch="default"]').count(), 3);
  assert.equal(await page.locator('[data-testid="drift-point"][data-branch="default"]').count(), 3);
  assert.equal(await page.locator('[data-testid="assistant-message"][data-branch="capped"]').count(), 0);
  assert.match(await page.getByTestId('tour-progress').innerText(), /^Done: 3 turns/);
  await assertClear(page, 'drift-h');
  await app.screenshot(page, 'tour-2-drift', { fullPage: false });

  // Step 3: the same turns again, Default and Capped side by side.
  await page.getByTestId('tour-next').click();
  await stepDone(page, 2);
  for (const branch of ['default', 'capped']) {
    const sel = `[data-testid="drift-point"][data-branch="${branch}"]`;
    assert.equal(await page.locator(sel).count(), 3, `${branch} drift points`);
  }
  assert.match(await page.getByTestId('cap-label').innerText(), /75/);
  await assertClear(page, 'cap-h');
  await app.screenshot(page, 'tour-3-cap', { fullPage: false });
  // On a wide screen the panel stands beside the page: no card is under it.
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.evaluate(() => document.getElementById('cap-h').scrollIntoView({ block: 'start' }));
  await assertClear(page, 'cap-h');
  const under = await page.evaluate(() => {
    const p = document.querySelector('[data-testid="tour"]').getBoundingClientRect();
    return [...document.querySelectorAll('.card')].filter((c) => c.getBoundingClientRect().right > p.left).length;
  });
  assert.equal(under, 0, 'cards reach under the tour panel on a wide screen');
  await app.screenshot(page, 'tour-3-cap-wide', { fullPage: false });

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
