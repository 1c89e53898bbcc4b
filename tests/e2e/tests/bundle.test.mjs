// The committed persona bundle of the default model (bundles/smollm2-135m-instruct.axb), as a
// visitor gets it: the page fetches it next to the model, and the map states the numbers that
// `axiscope report` gives for the same file (bundles/results/report.json, written by
// bundles/reproduce.py). A reply is then measured on the real axis.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { repoRoot, startApp } from '../harness.mjs';
import { chat, setSetting, waitModelReady } from '../app.mjs';

const report = JSON.parse(readFileSync(path.join(repoRoot, 'bundles/results/report.json'), 'utf8'));

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

test('the default bundle: the map shows every role and the CLI report\'s numbers; a reply lands on the drift chart', async () => {
  const { page, problems } = await app.open('');
  await waitModelReady(page);
  await page.getByTestId('persona-map').waitFor();
  const f = report.fidelity;
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="role-point"]').length === n, f.n_roles);
  assert.equal(await page.getByTestId('default-point').count(), 1);
  const stats = await page.getByTestId('map-stats').textContent();
  assert.ok(stats.includes(`cos(PC1, axis) = ${report.cos_pc1_axis.toFixed(2)}`), stats);
  const pcs = report.explained_variance.map((v, i) => `PC${i + 1} ${(v * 100).toFixed(0)}%`).join(', ');
  assert.ok(stats.includes(pcs), `${stats} lacks ${pcs}`);
  assert.ok(stats.includes(`${f.n_roles} roles`) && stats.includes(`layer ${report.layer} of ${f.n_layers}`), stats);
  assert.ok(stats.includes(`split-half stability of the axis ${report.split_half_cos.toFixed(2)}`), stats);
  // The farthest role along the axis is drawn on the role-play (orange) side of the colour scale.
  const far = report.fidelity.farthest_by_projection[0].role;
  const fill = await page.locator(`[data-testid="role-point"][data-role="${far}"]`).getAttribute('fill');
  const [r, , b] = fill.match(/^rgb\((\d+),(\d+),(\d+)\)$/).slice(1).map(Number);
  assert.ok(r > b, `${far} (farthest from the default) is not drawn orange: ${fill}`);

  // Every figure with its interval (the report's held-out intervals at the chosen layer).
  const h = report.held_out;
  const iv = (i) => `(${i.lo.toFixed(2)} to ${i.hi.toFixed(2)})`;
  assert.ok(stats.includes(`cos(PC1, axis) = ${report.cos_pc1_axis.toFixed(2)} ${iv(h.cos_pc1_axis)}`), stats);
  assert.ok(stats.includes(`split-half stability of the axis ${report.split_half_cos.toFixed(2)} ${iv(h.split_half_cos)}`), stats);
  assert.ok(stats.includes(`held-out cos(PC1, axis) ${h.halves_cos_pc1_axis_interval.value.toFixed(2)} ${iv(h.halves_cos_pc1_axis_interval)}`), stats);
  const rank = h.default_pc1_rank;
  assert.match(stats, new RegExp(`the Assistant ${rank.value}(st|nd|rd|th) of ${f.n_roles + 1} on PC1 \\(${rank.lo}(st|nd|rd|th) to ${rank.hi}(st|nd|rd|th)\\)`), stats);
  assert.ok(stats.includes(`intervals: ${Math.round(h.level * 100)}%`), stats);

  await setSetting(page, 'setting-max-tokens', 6);
  await chat(page, 'What is the capital of France?');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="drift-point"]').length === 1);
  // A single reply shows its spread.
  await page.getByTestId('drift-point').hover();
  assert.match(await page.getByTestId('drift-tooltip').innerText(), /± [\d.]+ \(one reply's spread\)/);
  assert.equal(await page.getByTestId('trail-point').count(), 1);
  await app.screenshot(page, 'default-bundle');

  // With the Assistant Axis as the map's x, roles line up by their projection and the reply's
  // trail point sits on the side of 0 its drift point does.
  await page.getByTestId('map-x').selectOption({ label: 'Assistant Axis' });
  const placed = await page.evaluate(() => ({
    roles: [...document.querySelectorAll('[data-testid="role-point"]')].map((e) => [Number(e.dataset.projection), Number(e.dataset.x)]),
    zero: Number(document.querySelector('[data-testid="map-zero-x"]').getAttribute('x1')),
    trail: Number(document.querySelector('[data-testid="trail-point"]').dataset.x),
    drift: Number(document.querySelector('[data-testid="drift-point"]').dataset.projection),
  }));
  placed.roles.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < placed.roles.length; i++) {
    assert.ok(placed.roles[i][1] >= placed.roles[i - 1][1], `x does not follow the projection: ${placed.roles[i - 1]} then ${placed.roles[i]}`);
  }
  assert.equal(Math.sign(placed.trail - placed.zero), Math.sign(placed.drift), JSON.stringify(placed));
  await page.getByTestId('map-x').selectOption({ label: 'PC1' });

  // The layer control: the map redrawn at another depth, with that layer's figures; the
  // conversation (measured at the chosen layer) is not drawn there.
  assert.equal(await page.getByTestId('layer-hit').count(), f.n_layers);
  const where = (name) => page.locator(`[data-testid="role-point"][data-role="${name}"]`).getAttribute('data-x');
  const before = await where(far);
  const other = 3;
  await page.locator(`[data-testid="layer-hit"][data-layer="${other}"]`).click();
  await page.waitForFunction((l) => document.querySelector('[data-testid="map-stats"]').textContent.startsWith(`Layer ${l}:`), other);
  const there = await page.getByTestId('map-stats').textContent();
  assert.ok(there.includes(`cos(PC1, axis) = ${report.cos_pc1_axis_per_layer[other].toFixed(2)}`), there);
  assert.ok(there.includes(`split-half stability of the axis ${report.split_half_cos_per_layer[other].toFixed(2)}`), there);
  assert.match(await page.getByTestId('map-layer-label').innerText(), new RegExp(`^${other} of ${f.n_layers} \\(chosen: ${report.layer}\\)`));
  assert.notEqual(await where(far), before, 'the roles move to the other layer\'s PCA');
  assert.equal(await page.getByTestId('trail-point').count(), 0);
  assert.equal(await page.getByTestId('role-point').count(), f.n_roles);
  await app.screenshot(page, 'map-layer-3');
  await page.getByTestId('map-layer-reset').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="map-stats"]').textContent.startsWith('cos(PC1, axis)'));
  assert.equal(await where(far), before);
  assert.equal(await page.getByTestId('trail-point').count(), 1);
  assert.deepEqual(problems, []);
});
