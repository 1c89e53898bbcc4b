// The in-browser benchmark page (`?bench`, BENCHMARKS.md): a short run must produce the JSON
// the bench runner reads, every figure a number, and the greedy tokens of the standard
// prompt equal to those llama.cpp and axiscope's native engine produced (committed in
// tests/e2e/bench/native_greedy.json by scripts/bench.sh); with `&map=` a timed persona map
// build. No speed is asserted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startApp } from '../harness.mjs';
import { MODEL_TIMEOUT_MS, routeBundle } from '../app.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const native = JSON.parse(readFileSync(path.join(here, '../bench/native_greedy.json'), 'utf8'));
// The engines agree on the first 14 greedy tokens (BENCHMARKS.md): 8 is well inside that.
const TOKENS = 8;

let app;
before(async () => {
  app = await startApp();
});
after(() => app?.close());

async function benchResult(page, timeout = MODEL_TIMEOUT_MS) {
  await page.waitForFunction(
    () => ['ok', 'error'].includes(document.querySelector('[data-testid="bench-result"]')?.dataset.state),
    null,
    { timeout },
  );
  const el = page.getByTestId('bench-result');
  return { state: await el.getAttribute('data-state'), json: JSON.parse(await el.textContent()) };
}

test('?bench runs the standard prompt and reports numbers and the native greedy tokens', async () => {
  const { page, problems } = await app.open(`?bench&backend=cpu&tokens=${TOKENS}`, {
    beforeLoad: (p) => routeBundle(p),
  });
  const { state, json: r } = await benchResult(page);
  await app.screenshot(page, 'bench');
  assert.equal(state, 'ok', JSON.stringify(r));
  assert.equal(r.backend, 'cpu');
  assert.equal(r.backend_requested, 'cpu');
  for (const k of ['threads', 'prefill_tok_s', 'decode_tok_s', 'ttft_ms', 'model_load_ms', 'page_to_model_ms', 'worker_wasm_memory_bytes']) {
    assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} = ${r[k]}`);
  }
  assert.equal(r.prompt_tokens, 128);
  assert.equal(r.generated_tokens, TOKENS);
  assert.deepEqual(r.tokens, native.llamacpp_native.slice(0, TOKENS));
  assert.deepEqual(r.tokens, native.axiscope_native.slice(0, TOKENS));
  assert.equal(r.pieces.length, TOKENS);
  // Chromium computes relaxed SIMD as the standard says: the page started the relaxed worker.
  // Two cores here: no row helper unless asked for (?threads=2, below).
  assert.equal(r.backend_detail, 'cpu (1 thread, simd128+relaxed)');
  // Both modules, as the browser fetched them (the page's and one of the two workers').
  const wasm = r.wasm_files.map((w) => w.name).sort();
  assert.equal(wasm.length, 2, JSON.stringify(r.wasm_files));
  assert.ok(wasm.some((n) => n.startsWith('axiscope-worker-relaxed')), wasm.join(' '));
  assert.ok(r.wasm_files.every((w) => w.decoded_bytes > 100_000), JSON.stringify(r.wasm_files));
  // Recording every layer leaves the tokens alone; with a bundle (the tests' synthetic one)
  // the capped run happens too.
  assert.ok(Number.isFinite(r.record_all_decode_overhead_pct));
  assert.deepEqual(r.record_all.run.tokens, r.tokens);
  assert.ok(Number.isFinite(r.cap_decode_overhead_pct), r.cap_note);
  assert.equal(r.cap.run.generated_tokens, TOKENS);
  assert.equal(typeof r.cap.same_tokens, 'boolean');
  assert.deepEqual(problems, []);
});

test('?simd=plain runs the plain simd128 worker, with the same greedy tokens', async () => {
  const { page, problems } = await app.open(`?bench&backend=cpu&tokens=${TOKENS}&overhead=0&simd=plain`, {
    beforeLoad: (p) => routeBundle(p),
  });
  const { state, json: r } = await benchResult(page);
  assert.equal(state, 'ok', JSON.stringify(r));
  assert.equal(r.backend_detail, 'cpu (1 thread, simd128)');
  assert.ok(r.wasm_files.every((w) => !w.name.includes('relaxed')), JSON.stringify(r.wasm_files));
  assert.deepEqual(r.tokens, native.llamacpp_native.slice(0, TOKENS));
  assert.deepEqual(problems, []);
});

test('?threads=2 shares the matmuls with a row helper worker, with the same greedy tokens', async () => {
  const { page, problems } = await app.open(`?bench&backend=cpu&tokens=${TOKENS}&threads=2`, {
    beforeLoad: (p) => routeBundle(p),
  });
  const { state, json: r } = await benchResult(page);
  assert.equal(state, 'ok', JSON.stringify(r));
  assert.equal(r.cross_origin_isolated, true);
  assert.equal(r.backend_detail, 'cpu (2 threads, simd128+relaxed)');
  assert.equal(r.threads, 2);
  // The helper's rows are bit-identical: the same tokens, recorded or not.
  assert.deepEqual(r.tokens, native.llamacpp_native.slice(0, TOKENS));
  assert.deepEqual(r.record_all.run.tokens, r.tokens);
  assert.deepEqual(problems, []);
});

test('without cross-origin isolation there is no helper, even when asked for', async () => {
  const plain = await startApp({ isolate: false });
  try {
    const { page, problems } = await plain.open(`?bench&backend=cpu&tokens=${TOKENS}&overhead=0&threads=2`, {
      beforeLoad: (p) => routeBundle(p),
    });
    const { state, json: r } = await benchResult(page);
    assert.equal(state, 'ok', JSON.stringify(r));
    assert.equal(r.cross_origin_isolated, false);
    assert.equal(r.backend_detail, 'cpu (1 thread, simd128+relaxed)');
    assert.deepEqual(r.tokens, native.llamacpp_native.slice(0, TOKENS));
    assert.deepEqual(problems, []);
  } finally {
    await plain.close();
  }
});

test('?bench&map=tiny builds the persona map after the runs and times it', async () => {
  const { page, problems } = await app.open(`?bench&backend=cpu&tokens=${TOKENS}&overhead=0&map=tiny`, {
    beforeLoad: (p) => routeBundle(p),
  });
  // As the build test allows for the same build.
  const { state, json: r } = await benchResult(page, 600_000);
  assert.equal(state, 'ok', JSON.stringify(r));
  assert.equal(r.generated_tokens, TOKENS);
  const m = r.map_build;
  assert.equal(m.size, 'tiny');
  // The first look: 8 roles once and the default's 5 prompts x 2 seeds, on one question;
  // empty replies are left out of the map.
  assert.equal(m.replies, 18);
  assert.equal(m.roles, 8);
  assert.ok(m.rollouts > 0 && m.rollouts <= 18, `rollouts = ${m.rollouts}`);
  for (const k of ['seconds', 'replies_per_s']) assert.ok(Number.isFinite(m[k]) && m[k] > 0, `${k} = ${m[k]}`);
  assert.ok(Math.abs(m.cos_pc1_axis) <= 1, `cos_pc1_axis = ${m.cos_pc1_axis}`);
  // Timed builds stay out of the map cache.
  const cached = await page.evaluate(async () => {
    const keys = await Promise.all((await caches.keys()).map(async (k) => (await caches.open(k)).keys()));
    return keys.flat().map((req) => req.url).filter((u) => u.includes('axiscope-built/'));
  });
  assert.deepEqual(cached, []);
  assert.deepEqual(problems, []);
});

test('?bench with a bad token count says so instead of running', async () => {
  const { page } = await app.open('?bench&tokens=1', { beforeLoad: (p) => routeBundle(p) });
  const { state, json } = await benchResult(page);
  assert.equal(state, 'error');
  assert.match(json.error, /tokens=1/);
  const bad = await app.open('?bench&map=huge', { beforeLoad: (p) => routeBundle(p) });
  const { state: badState, json: badJson } = await benchResult(bad.page);
  assert.equal(badState, 'error');
  assert.match(badJson.error, /map=huge/);
});
