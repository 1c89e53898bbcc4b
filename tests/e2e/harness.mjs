// Shared setup for the browser tests: serves dist/ and drives headless Chromium.
//
// A test file needs only:
//
//   import { test, before, after } from 'node:test';
//   import assert from 'node:assert/strict';
//   import { startApp } from '../harness.mjs';
//
//   let app;
//   before(async () => { app = await startApp(); });
//   after(() => app?.close());
//
//   test('something the page shows', async () => {
//     const { page, problems } = await app.open();
//     await app.waitForState(page, 'model-status');
//     ...
//     assert.deepEqual(problems, []);
//   });
//
// Files named tests/*.test.mjs are picked up by run.mjs (scripts/test.sh runs it).

import { mkdirSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const distDir = path.resolve(process.env.AXISCOPE_DIST ?? path.join(repoRoot, 'dist'));
export const artifactsDir = path.join(here, 'artifacts');
export const chromiumPath = process.env.AXISCOPE_CHROMIUM ?? '/usr/bin/chromium';

/** How long to wait for the wasm app to render or finish a check (a loaded 2-core CI box is slow). */
export const APP_TIMEOUT_MS = 60_000;

// Headless Chromium as root in a container, with WebGPU on (SwiftShader gives a software
// adapter) and nothing that phones home. Playwright adds a fresh --user-data-dir itself.
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts the static server on a free port and launches Chromium. The page is cross-origin
 * isolated (COOP/COEP) unless `isolate: false`.
 * Returns { url, browser, open(), waitForState(), screenshot(), close() }.
 */
export async function startApp({ isolate = true } = {}) {
  await access(path.join(distDir, 'index.html')).catch(() => {
    throw new Error(`${distDir}/index.html is missing: build the app first (scripts/test.sh does)`);
  });
  await access(chromiumPath).catch(() => {
    throw new Error(`no Chromium at ${chromiumPath}: run scripts/setup.sh (or set AXISCOPE_CHROMIUM)`);
  });
  const server = await startServer({ root: distDir, isolate });
  let browser;
  try {
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
  } catch (err) {
    await server.close();
    throw new Error(`could not launch ${chromiumPath}: ${err.message}`);
  }

  return {
    url: server.url,
    browser,

    /**
     * Opens `relative` (default: the app) in a fresh context. `problems` collects console
     * errors, uncaught exceptions, failed requests and HTTP errors while the page lives.
     * `beforeLoad(page)` runs before navigation (routes, init scripts).
     * `backend` becomes `?backend=` unless the URL names one: the CPU engine by default,
     * because SwiftShader's software WebGPU needs about a minute per decoded token on a busy
     * 2-core box; `null` keeps the page's own choice (WebGPU where there is an adapter).
     * tests/gpu.test.mjs covers the WebGPU path.
     */
    async open(relative = '', { beforeLoad, backend = 'cpu' } = {}) {
      const context = await this.newContext();
      const page = await context.newPage();
      const problems = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
      });
      page.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
      // Chromium reports every HEAD request as failed (net::ERR_ABORTED) once its headers
      // have arrived, so a request that got a response is not a failure.
      const answered = new WeakSet();
      page.on('response', (res) => {
        answered.add(res.request());
        if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
      });
      page.on('requestfailed', (req) => {
        const headAborted = req.method() === 'HEAD' && req.failure()?.errorText === 'net::ERR_ABORTED';
        if (!(headAborted && answered.has(req))) {
          problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
        }
      });
      if (beforeLoad) await beforeLoad(page);
      const url = new URL(relative, server.url);
      if (backend && !url.searchParams.has('backend')) url.searchParams.set('backend', backend);
      await page.goto(url.href, { waitUntil: 'load' });
      return { page, problems };
    },

    /**
     * A fresh browser context. Service workers are blocked unless `serviceWorkers: 'allow'`:
     * page.route cannot see the requests a service worker answers, and most tests route some.
     */
    newContext(options = {}) {
      return browser.newContext({ viewport: { width: 1100, height: 700 }, serviceWorkers: 'block', ...options });
    },

    /** Stops the static server while the browser stays: the network is gone for the app. */
    stopServer() {
      return server.close();
    },

    /** Waits until [data-testid=testid] leaves data-state="checking"; returns { state, text }. */
    async waitForState(page, testid, timeout = APP_TIMEOUT_MS) {
      const el = page.getByTestId(testid);
      await el.waitFor({ timeout });
      await page.waitForFunction(
        (id) => {
          const node = document.querySelector(`[data-testid="${id}"]`);
          return node && node.dataset.state && node.dataset.state !== 'checking';
        },
        testid,
        { timeout },
      );
      return { state: await el.getAttribute('data-state'), text: (await el.textContent()).trim() };
    },

    /**
     * Saves a screenshot into tests/e2e/artifacts/<name>.png and returns its path: the full
     * page, or only what the view shows (`fullPage: false`, for what sits fixed over it).
     */
    async screenshot(page, name, { fullPage = true } = {}) {
      mkdirSync(artifactsDir, { recursive: true });
      const file = path.join(artifactsDir, `${name}.png`);
      await page.screenshot({ path: file, fullPage });
      return file;
    },

    async close() {
      await browser.close().catch(() => {});
      await server.close();
    },
  };
}
