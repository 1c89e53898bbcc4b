// Accessibility scans with axe-core (npm `axe-core`, pinned in package.json). The page's CSP
// forbids inline scripts, so axe's source is evaluated through the DevTools protocol, which
// the CSP does not govern, instead of being added as a <script>.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './harness.mjs';

const AXE = readFileSync(path.join(repoRoot, 'tests/e2e/node_modules/axe-core/axe.min.js'), 'utf8');

/** Violations of `impact` 'serious' or 'critical' on the page as it is now, one line each. */
export async function seriousViolations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () =>
    (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    })),
  );
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.targets.join(', ')})`);
}
