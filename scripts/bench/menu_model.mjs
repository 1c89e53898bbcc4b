// Decode and prefill speed of another model in the browser next to the default model's, side
// by side in one run (issue 16): the app itself (not the ?bench page, whose prompt is defined
// for SmolLM2's vocabulary), one wasm thread (?backend=cpu, not isolated), greedy replies of
// N tokens to one prompt, speeds from the worker's debug traces. Repetitions alternate the
// models. The model file must be in dist/models/ (the Trunk build links every models/*.gguf,
// e.g. after scripts/fetch_qwen.sh).
//
// Usage: node scripts/bench/menu_model.mjs FILE.gguf [--reps N (3)] [--tokens N (32)]
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startApp } = await import(pathToFileURL(path.join(root, 'tests/e2e/harness.mjs')).href);
const { openReady, setSetting, chat } = await import(pathToFileURL(path.join(root, 'tests/e2e/app.mjs')).href);

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
if (!file) {
  console.error('usage: node scripts/bench/menu_model.mjs FILE.gguf [--reps N] [--tokens N]');
  process.exit(2);
}
const reps = opt('--reps', 3);
const tokens = opt('--tokens', 32);
const PROMPT = 'Write a long story about a lighthouse keeper who finds a message in a bottle.';

const app = await startApp({ isolate: false });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = { default: [], [file]: [] };
try {
  for (let rep = 0; rep < reps; rep++) {
    for (const which of Object.keys(runs)) {
      const relative = which === 'default' ? '' : `?model=${encodeURIComponent(`${app.url}models/${which}`)}`;
      const { page } = await openReady(app, { relative, maxTokens: tokens });
      await setSetting(page, 'setting-temperature', 0);
      await setSetting(page, 'setting-repeat-penalty', 1);
      await chat(page, PROMPT);
      const worker = page.workers().find((w) => w.url().includes('axiscope-worker'));
      const [t] = JSON.parse(await worker.evaluate(() => self.__axiscope_debug.traces()));
      runs[which].push(t);
      console.log(`rep ${rep} ${which}: prefill ${t.prefill_tok_s.toFixed(1)} tok/s over ${t.prefilled} tokens, decode ${t.decode_tok_s.toFixed(1)} tok/s over ${t.tokens.length} tokens (${t.backend})`);
      await page.context().close();
    }
  }
} finally {
  await app.close();
}
for (const [which, ts] of Object.entries(runs)) {
  console.log(`${which}: median decode ${median(ts.map((t) => t.decode_tok_s)).toFixed(1)} tok/s, prefill ${median(ts.map((t) => t.prefill_tok_s)).toFixed(1)} tok/s (${ts.length} runs)`);
}
