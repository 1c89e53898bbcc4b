// Runs every tests/*.test.mjs with Node's test runner (one file at a time: each starts its
// own Chromium, and CI has 2 cores) and ends with one clear PASS/FAIL line.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';

const testsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tests');
const files = readdirSync(testsDir)
  .filter((f) => f.endsWith('.test.mjs'))
  .sort()
  .map((f) => path.join(testsDir, f));
if (files.length === 0) {
  console.error(`e2e: FAIL - no tests/*.test.mjs in ${testsDir}`);
  process.exit(1);
}

const started = Date.now();
let passed = 0;
let failed = 0;
const stream = run({ files, concurrency: 1, timeout: 10 * 60_000 });
stream.on('test:pass', (t) => {
  if (t.details?.type !== 'suite') passed += 1;
});
stream.on('test:fail', (t) => {
  // A file that fails outside any test (import error, failing before()) counts too.
  if (t.details?.type !== 'suite') failed += 1;
});
const report = stream.compose(spec);
report.pipe(process.stdout);
// After the reporter's own summary, so this is the last line printed.
report.on('end', () => {
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (failed === 0 && passed > 0) {
    console.log(`\ne2e: PASS - ${passed} browser tests in ${files.length} files passed (${secs} s)`);
  } else {
    console.log(`\ne2e: FAIL - ${failed} failed, ${passed} passed (${secs} s); screenshots in tests/e2e/artifacts/`);
    process.exitCode = 1;
  }
});
