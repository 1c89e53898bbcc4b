// Writes DIR/precache.json: every file of the built app the service worker (public/sw.js)
// stores for offline visits - the page, both model-worker builds, scripts, styles, the
// default persona bundle - as paths relative to DIR. Left out: the model files (the app caches
// those itself, sha256-checked), the bundles of menu models (the worker caches one when its
// model is used: a cold visitor should not download maps of models they never pick), rollout
// replies and the bundles' own docs and scripts, the list itself.
// Usage: node scripts/precache.mjs DIR  (the Trunk post-build hook runs it on the staging dir)
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = process.argv[2];
if (!root) {
  console.error('usage: node scripts/precache.mjs DIR');
  process.exit(2);
}

const SKIP = [
  /^models\//,
  /^bundles\/(?!smollm2-135m-instruct\.axb$)/,
  /\.jsonl$/,
  /^precache\.json$/,
  /^sw\.js$/,
  /^_headers$/,
];

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : [path.relative(root, full).split(path.sep).join('/')];
  });
}

const files = walk(root)
  .filter((f) => !SKIP.some((re) => re.test(f)))
  .sort();
writeFileSync(path.join(root, 'precache.json'), JSON.stringify(files, null, 1) + '\n');
console.log(`precache: ${files.length} files listed in precache.json`);
