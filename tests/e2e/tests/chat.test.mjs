// Chat end to end with a known (synthetic) persona bundle: a streamed reply, its point on the
// drift chart and on the map's trail, the map's roles and numbers, the per-token view,
// undo and reset, and downloads.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp } from '../harness.mjs';
import { chat, markGap, openReady, routeBundle, waitModelReady, streamBytes, streamText } from '../app.mjs';
import { ANALYSIS_LAYER, DEFAULT_PROJECTION, EXPLAINED, SYNTHETIC_ROLES } from '../bundle.mjs';

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('a message gets a streamed reply, a drift point and a trail point; undo and reset', async () => {
  const { page, problems } = await openReady(app);

  // The map: one point per role of the bundle, the default marked, the bundle's numbers.
  const map = page.getByTestId('persona-map');
  await map.waitFor();
  assert.equal(await page.getByTestId('role-point').count(), SYNTHETIC_ROLES.length);
  assert.equal(await page.getByTestId('default-point').count(), 1);
  const stats = await page.getByTestId('map-stats').textContent();
  assert.match(stats, /cos\(PC1, axis\) = 1\.00/, stats);
  assert.match(stats, new RegExp(`PC1 ${EXPLAINED[0] * 100}%, PC2 ${EXPLAINED[1] * 100}%`), stats);
  assert.match(stats, new RegExp(`${SYNTHETIC_ROLES.length} roles, .* layer ${ANALYSIS_LAYER} of 30`), stats);
  // Colour by projection: the most assistant-like role is blue, the most fantastical orange.
  const fill = (name) => page.locator(`[data-testid="role-point"][data-role="${name}"]`).getAttribute('fill');
  const rgb = async (name) => (await fill(name)).match(/^rgb\((\d+),(\d+),(\d+)\)$/).slice(1).map(Number);
  const [tr, tg, tb] = await rgb('tutor');
  assert.ok(tb > tg && tg > tr, `tutor is not blue: ${[tr, tg, tb]}`);
  const [dr, dg, db] = await rgb('demon');
  assert.ok(dr > dg && dg > db, `demon is not orange: ${[dr, dg, db]}`);
  // Hover labels.
  await page.locator('[data-testid="role-point"][data-role="ghost"]').hover();
  assert.match(await page.getByTestId('role-label').textContent(), /ghost · axis -3\.00/);
  // PC2 on the x axis: tutor's x is then its PC2 (0.5), between poet (-2) and pirate (2).
  await page.getByTestId('map-x').selectOption('1');
  const cx = async (name) => Number(await page.locator(`[data-testid="role-point"][data-role="${name}"]`).getAttribute("data-x"));
  assert.ok((await cx('poet')) < (await cx('tutor')) && (await cx('tutor')) < (await cx('pirate')));
  await page.getByTestId('map-x').selectOption('0');

  // The drift chart has the default's level before any reply.
  await page.getByTestId('default-level').waitFor({ state: 'attached' });
  assert.equal(await page.getByTestId('drift-point').count(), 0);

  // Count how often the reply's text changes while it streams.
  await page.evaluate(() => {
    window.__lengths = new Set();
    new MutationObserver(() => {
      const el = document.querySelector('[data-testid="assistant-message"] .text');
      if (el) window.__lengths.add(el.textContent.length);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await chat(page, 'What is the capital of France?');
  const messages = page.getByTestId('assistant-message');
  assert.equal(await messages.count(), 1);
  const reply = (await messages.locator('.text').textContent()).trim();
  assert.ok(reply.length > 0, 'empty reply');
  const steps = await page.evaluate(() => window.__lengths.size);
  assert.ok(steps >= 3, `the reply arrived in ${steps} steps, not streamed token by token`);

  // One drift point, placed at its projection (the synthetic axis is hidden dimension 100).
  const points = page.getByTestId('drift-point');
  await points.first().waitFor();
  assert.equal(await points.count(), 1);
  const p = Number(await points.first().getAttribute('data-projection'));
  assert.ok(Number.isFinite(p));
  const badge = await page.getByTestId('reply-projection').textContent();
  assert.match(badge, /^axis [+-]/);
  assert.equal(await page.getByTestId('trail-point').count(), 1);
  // Hover shows the turn's text; the default's level sits above 0 (DEFAULT_PROJECTION > 0).
  await points.first().hover();
  const tip = await page.getByTestId('drift-tooltip').textContent();
  assert.ok(tip.includes(reply.slice(0, 20)), `${tip} vs ${reply}`);
  const levelY = Number(await page.getByTestId('default-level').getAttribute('y1'));
  assert.ok(DEFAULT_PROJECTION > 0 && levelY > 0);

  // Per-token view: one coloured span per content token; together they are the reply.
  await page.getByTestId('token-view').check();
  const tokens = page.getByTestId('token');
  assert.ok((await tokens.count()) >= 1);
  assert.equal((await tokens.allTextContents()).join('').trim(), reply);
  await app.screenshot(page, 'chat-one-turn');
  await page.getByTestId('token-view').uncheck();

  // A second turn reuses the cache; its first token comes quickly (measured, not asserted).
  await chat(page, 'And of Italy?');
  assert.equal(await points.count(), 2);
  const ttft = await markGap(page, 'axiscope:send', 'axiscope:first-token');
  console.log(`second turn: first token ${ttft.toFixed(0)} ms after Send`);

  // Downloads: the conversation JSON has both turns and their projections.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-json').click()]);
  const json = JSON.parse(await streamText(await download.createReadStream()));
  assert.equal(json.conversation.filter((m) => m.role === 'assistant').length, 2);
  assert.equal(json.projections.length, 2);
  assert.ok(Math.abs(json.projections[0].projection - p) < 1e-4);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-csv').click()]);
  assert.equal((await streamText(await csv.createReadStream())).trim().split('\n').length, 3);

  // The axis, as JSON and as a llama.cpp control vector (GGUF, direction.1 .. direction.29).
  const [axis] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-axis').click()]);
  const axisJson = JSON.parse(await streamText(await axis.createReadStream()));
  assert.equal(axisJson.layers.length, 30);
  assert.equal(axisJson.layers[ANALYSIS_LAYER].unit_axis.length, 576);
  const [cvec] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-cvec').click()]);
  const gguf = await streamBytes(await cvec.createReadStream());
  assert.equal(gguf.subarray(0, 4).toString('latin1'), 'GGUF');
  assert.equal(gguf.readUInt32LE(4), 3);
  assert.equal(Number(gguf.readBigUInt64LE(8)), 29, 'one tensor per layer but layer 0');
  assert.ok(gguf.includes(Buffer.from('direction.15')));

  // Undo drops the last turn and its point; reset empties everything.
  await page.getByTestId('chat-undo').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length === 1);
  assert.equal(await messages.count(), 1);
  await page.getByTestId('chat-undo').waitFor();
  await page.waitForFunction(() => !document.querySelector('[data-testid="chat-reset"]').disabled);
  await page.getByTestId('chat-reset').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-message"]').length === 0);
  assert.equal(await points.count(), 0);
  assert.deepEqual(problems, []);
});

test('a share link restores the conversation and measures it again', async () => {
  const first = await openReady(app);
  await chat(first.page, 'Hello there!');
  const reply = (await first.page.getByTestId('assistant-message').locator('.text').textContent()).trim();
  const p = Number(await first.page.getByTestId('drift-point').first().getAttribute('data-projection'));
  await first.page.getByTestId('share').click();
  const link = await first.page.getByTestId('share-link').inputValue();
  assert.match(link, /#s=[A-Za-z0-9_-]+$/);

  const second = await openReady(app, { relative: link.slice(link.indexOf('#')) });
  await second.page.getByTestId('drift-point').first().waitFor({ timeout: 120_000 });
  assert.equal((await second.page.getByTestId('assistant-message').locator('.text').textContent()).trim(), reply);
  const q = Number(await second.page.getByTestId('drift-point').first().getAttribute('data-projection'));
  // Same text, same model, same axis: the same projection (measured in another page).
  assert.ok(Math.abs(p - q) < 1e-3, `${p} vs ${q}`);
  assert.deepEqual(first.problems, []);
  assert.deepEqual(second.problems, []);
});

test("a visitor's own role is answered in the worker and lands on the map", async () => {
  const { page, problems } = await openReady(app, { maxTokens: 6 });
  await page.getByTestId('role-builder').locator('summary').click();
  await page.getByTestId('role-name').fill('lighthouse <keeper>');
  await page.getByTestId('role-prompt').fill('You are a lonely lighthouse keeper. You talk about the sea and the light.');
  await page.getByTestId('role-questions').selectOption('2');
  await page.getByTestId('role-place').click();
  await page.getByTestId('role-progress').waitFor({ timeout: 60_000 });
  const point = page.getByTestId('custom-role-point');
  await point.waitFor({ state: 'attached', timeout: 240_000 });
  assert.equal(await point.getAttribute('data-role'), 'lighthouse <keeper>');
  assert.ok(Number.isFinite(Number(await point.getAttribute('data-projection'))));
  // The name is text in the SVG, not markup.
  assert.match(await point.locator('text').textContent(), /^lighthouse <keeper> · axis /);
  assert.equal(await page.locator('svg keeper').count(), 0);
  // The conversation is untouched.
  assert.equal(await page.getByTestId('assistant-message').count(), 0);
  await app.screenshot(page, 'custom-role');
  assert.deepEqual(problems, []);
});

test('with the default settings a reply ends on its own; the model goes by its readable name', async () => {
  // No max tokens set: the page's default. Natively (seed 1, `axiscope generate`) this prompt's
  // reply ends on the end-of-turn token after 89 tokens.
  const { page, problems } = await app.open('', { beforeLoad: (p) => routeBundle(p) });
  await waitModelReady(page);
  const status = await page.getByTestId('model-status').textContent();
  assert.match(status, /^Model: SmolLM2-135M-Instruct \(llama,/, status);
  await chat(page, 'What is the capital of France?');
  const reply = page.getByTestId('assistant-message');
  assert.equal(await reply.getAttribute('data-finish'), 'end_of_turn', await reply.locator('.meta').textContent());
  assert.doesNotMatch(await reply.locator('.meta').textContent(), /cut at/);
  await page.getByTestId('drift-point').first().waitFor({ state: 'attached', timeout: 60_000 });
  assert.deepEqual(problems, []);
});

test('the map labels its extremes, finds and pins roles, zooms and pans, and shapes categories', async () => {
  const { page, problems } = await app.open('', { beforeLoad: (p) => routeBundle(p) });
  await page.getByTestId('persona-map').waitFor({ timeout: 60_000 });
  const tags = async () =>
    (await page.getByTestId('role-tag').evaluateAll((ts) => ts.map((t) => `${t.dataset.role}:${t.dataset.why}`))).sort();
  // PC1 x PC2: demon and tutor end PC1, poet and pirate end PC2 (bundle.mjs).
  const extremes = ['demon:extreme', 'pirate:extreme', 'poet:extreme', 'tutor:extreme'];
  assert.deepEqual(await tags(), extremes);

  // One marker shape per category (the path's commands, numbers left out).
  const shapes = new Map();
  for (const [category, d] of await page
    .getByTestId('role-point')
    .evaluateAll((ps) => ps.map((p) => [p.dataset.category, p.getAttribute('d').replace(/[-\d.,\s]+/g, ' ').trim()]))) {
    shapes.set(category, [...(shapes.get(category) ?? []), d]);
  }
  const kinds = [...shapes.values()].map((ds) => new Set(ds));
  assert.ok(kinds.every((k) => k.size === 1), JSON.stringify([...shapes]));
  assert.equal(new Set(kinds.map((k) => [...k][0])).size, 3, JSON.stringify([...shapes]));

  // Search labels what it finds; clicking a role keeps its label until clicked again.
  await page.getByTestId('role-search').fill('GHO');
  assert.deepEqual(await tags(), ['ghost:found', ...extremes].sort());
  assert.equal(await page.getByTestId('role-found').textContent(), '1 role');
  await page.getByTestId('role-search').fill('');
  const bard = page.locator('[data-testid="role-point"][data-role="bard"]');
  await bard.click();
  assert.equal(await bard.getAttribute('aria-pressed'), 'true');
  assert.deepEqual(await tags(), ['bard:pinned', ...extremes].sort());
  await bard.focus();
  await page.keyboard.press('Enter');
  assert.deepEqual(await tags(), extremes);

  // Zoom: distances grow 1.5 times per step; the arrow keys pan; 0 resets.
  const x = async (name) => Number(await page.locator(`[data-testid="role-point"][data-role="${name}"]`).getAttribute('data-x'));
  const span = async () => (await x('tutor')) - (await x('pirate'));
  const before = await span();
  await page.getByTestId('map-zoom-in').click();
  assert.ok(Math.abs((await span()) / before - 1.5) < 1e-3, `${await span()} vs ${before}`);
  const tutor = await x('tutor');
  await page.getByTestId('persona-map').focus();
  await page.keyboard.press('ArrowLeft');
  assert.ok((await x('tutor')) > tutor, 'ArrowLeft shows what lies left: everything moves right');
  await app.screenshot(page, 'map-zoomed');
  await page.keyboard.press('0');
  assert.ok(Math.abs((await span()) - before) < 1e-3);
  assert.deepEqual(problems, []);
});
