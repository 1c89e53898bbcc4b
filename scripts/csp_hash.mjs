// Trunk post_build hook: index.html's Content-Security-Policy allows inline scripts only by
// hash, and the inline script Trunk writes (it imports the hashed wasm-bindgen file names)
// changes with every build. This replaces the placeholder 'inline-script-hashes' in the CSP
// meta tag with the sha256 of each inline <script> now in the page. Fails the build when the
// placeholder is missing, so the policy can never silently block the app.
//
// Usage: node scripts/csp_hash.mjs path/to/index.html
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
const html = readFileSync(file, 'utf8');
const PLACEHOLDER = "'inline-script-hashes'";
if (!html.includes(PLACEHOLDER)) {
  console.error(`csp_hash: ${file} has no ${PLACEHOLDER} in its Content-Security-Policy`);
  process.exit(1);
}
const hashes = [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)].map(
  (m) => `'sha256-${createHash('sha256').update(m[1], 'utf8').digest('base64')}'`,
);
writeFileSync(file, html.replace(PLACEHOLDER, hashes.join(' ') || "'none'"));
console.log(`csp_hash: ${hashes.length} inline script(s) allowed by hash in ${file}`);
