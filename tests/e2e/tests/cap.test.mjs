// Capping and steering in the page, and a preset conversation with Stop.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { chat, openReady, REPLY_TIMEOUT_MS, waitIdle } from '../app.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

/** Moves a range input to `value` the way a visitor's drag ends. */
async function slide(page, testid, value) {
  await page.getByTestId(testid).evaluate((el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

test('capping on gives two replies and two drift points per turn, the capped one read back', async () => {
  const { page, problems } = await openReady(app);
  await slide(page, 'cap-slider', 75);
  // The paper's band, scaled to 30 layers (docs/method.md, "Capping").
  assert.match(await page.getByTestId('cap-label').textContent(), /75th percentile.*layers 21-26/);
  await page.getByTestId('cap-band-start').fill('18');
  await page.getByTestId('cap-band-start').dispatchEvent('change');
  assert.match(await page.getByTestId('cap-label').textContent(), /layers 18-26/);
  await chat(page, 'Who are you?');
  const replies = page.getByTestId('assistant-message');
  assert.equal(await replies.count(), 2);
  assert.deepEqual(await replies.evaluateAll((els) => els.map((e) => e.dataset.branch)), ['default', 'capped']);
  const points = page.getByTestId('drift-point');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length === 2);
  assert.deepEqual((await points.evaluateAll((els) => els.map((e) => e.dataset.branch))).sort(), ['capped', 'default']);
  assert.equal(await page.getByTestId('trail-point').count(), 2);
  // The capped reply's badge says it was read back by the unsteered model.
  const capped = page.locator('[data-testid="assistant-message"][data-branch="capped"] [data-testid="reply-projection"]');
  assert.match(await capped.getAttribute('title'), /read back by the unsteered model/);
  await app.screenshot(page, 'cap-two-replies');

  // Steering away from the Assistant still gives one reply per branch, and the setting shows.
  await slide(page, 'steer-slider', -50);
  assert.match(await page.getByTestId('steer-label').textContent(), /-0\.50 .*away from the Assistant/);
  await chat(page, 'Tell me a story.');
  assert.equal(await replies.count(), 4);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length === 4);

  // Capping off again: one reply per turn from then on.
  await slide(page, 'steer-slider', 0);
  await slide(page, 'cap-slider', 0);
  await chat(page, 'Thanks.');
  assert.equal(await replies.count(), 5);
  assert.deepEqual(problems, []);
});

test('a preset conversation replays its user turns; Stop ends it', async () => {
  const { page, problems } = await openReady(app, { maxTokens: 4 });
  await page.getByTestId('preset-select').selectOption('coding');
  await page.getByTestId('preset-run').click();
  // Let three turns finish, then stop the rest.
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length >= 3, null, {
    timeout: REPLY_TIMEOUT_MS * 2,
  });
  const left = Number((await page.getByTestId('preset-left').textContent()).match(/\d+/)[0]);
  assert.ok(left > 0 && left <= 9, `${left} turns left`);
  await page.getByTestId('chat-stop').click();
  await waitIdle(page);
  const users = await page.getByTestId('user-message').count();
  assert.ok(users >= 3 && users < 12, `${users} user turns after Stop`);
  // The user turns are the preset's, in order.
  const first = await page.getByTestId('user-message').first().textContent();
  assert.match(first, /sales|CSV|Python/i, first);
  // Nothing more arrives after Stop.
  await page.waitForTimeout(3000);
  assert.equal(await page.getByTestId('user-message').count(), users);
  await app.screenshot(page, 'preset-stopped');
  assert.deepEqual(problems, []);
});
