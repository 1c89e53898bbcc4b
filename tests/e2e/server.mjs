// A small static file server for dist/: used by scripts/serve.sh and by the e2e tests.
//
// It sends COOP same-origin + COEP require-corp (cross-origin isolation, which wasm threads
// and SharedArrayBuffer need), the right MIME types (application/wasm lets the browser
// compile while downloading), Content-Length on GET and HEAD, and no caching, so a rebuilt
// dist/ is always what the browser gets.
//
// `isolate: false` (CLI --no-isolation) leaves out COOP/COEP, to measure a page that is not
// cross-origin isolated (scripts/bench/browser.mjs runs both).
//
// CLI: node tests/e2e/server.mjs [--root DIR] [--port PORT] [--host HOST] [--no-isolation]

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-cache',
};

// A worker runs under the policy of its own script's response, not the page's meta tag: the
// model worker may load its wasm (no eval) and fetch models from any host, nothing else.
const WORKER_CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src *; object-src 'none'";

/** public/axiscope-embed.js, the one file meant for other origins. */
const EMBED_SCRIPT = 'axiscope-embed.js';

/** Maps a URL path onto a file under `root`, or null when it escapes `root`. */
function resolveUnder(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

async function findFile(root, urlPath) {
  const file = resolveUnder(root, urlPath);
  if (!file) return null;
  try {
    const info = await stat(file);
    if (info.isFile()) return { file, size: info.size };
    if (info.isDirectory()) {
      const index = path.join(file, 'index.html');
      const indexInfo = await stat(index);
      if (indexInfo.isFile()) return { file: index, size: indexInfo.size };
    }
  } catch {
    // Missing file: fall through to 404.
  }
  return null;
}

/** The headers every response gets: all of ISOLATION_HEADERS, or without COOP/COEP. */
function baseHeaders(isolate) {
  if (isolate) return ISOLATION_HEADERS;
  const { 'Cross-Origin-Opener-Policy': _coop, 'Cross-Origin-Embedder-Policy': _coep, ...rest } = ISOLATION_HEADERS;
  return rest;
}

function send(res, status, body, headers = {}, isolate = true) {
  res.writeHead(status, {
    ...baseHeaders(isolate),
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/**
 * Starts serving `root`. Resolves to { url, port, close() } once listening.
 * `port` 0 picks a free port (what the tests use).
 */
export async function startServer({ root, port = 0, host = '127.0.0.1', log = false, isolate = true } = {}) {
  if (!root) throw new Error('startServer: root is required');
  const absRoot = path.resolve(root);
  const rootInfo = await stat(absRoot).catch(() => null);
  if (!rootInfo?.isDirectory()) {
    throw new Error(`startServer: ${absRoot} is not a directory (build the app first: trunk build --release)`);
  }

  const server = createServer(async (req, res) => {
    const started = Date.now();
    res.on('finish', () => {
      if (log) console.log(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - started} ms`);
    });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' }, isolate);
      return;
    }
    const urlPath = new URL(req.url, 'http://localhost').pathname;
    const found = await findFile(absRoot, urlPath);
    if (!found) {
      send(res, 404, `not found: ${urlPath}\n`, {}, isolate);
      return;
    }
    const ext = path.extname(found.file).toLowerCase();
    res.writeHead(200, {
      ...baseHeaders(isolate),
      ...(ext === '.js' ? { 'Content-Security-Policy': WORKER_CSP } : {}),
      // The embed resizer is loaded by pages on other origins (blogs): their no-cors request
      // would be refused under Cross-Origin-Resource-Policy: same-origin.
      ...(path.basename(found.file) === EMBED_SCRIPT ? { 'Cross-Origin-Resource-Policy': 'cross-origin' } : {}),
      'Content-Type': MIME[ext] ?? 'application/octet-stream',
      'Content-Length': found.size,
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(found.file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  return {
    url: `http://${host}:${actualPort}/`,
    port: actualPort,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function parseArgs(argv) {
  const options = { root: 'dist', port: 8080, host: '127.0.0.1', isolate: true };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--no-isolation') {
      options.isolate = false;
      i -= 1;
      continue;
    }
    if (value === undefined) throw new Error(`missing value after ${flag}`);
    if (flag === '--root') options.root = value;
    else if (flag === '--host') options.host = value;
    else if (flag === '--port') {
      options.port = Number(value);
      if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
        throw new Error(`--port must be an integer in 0..65535, got ${value}`);
      }
    } else throw new Error(`unknown option ${flag}`);
  }
  return options;
}

// Run as a program (not imported): serve until killed.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    const options = parseArgs(process.argv.slice(2));
    const server = await startServer({ ...options, log: true });
    console.log(`serving ${path.resolve(options.root)} at ${server.url} (COOP/COEP ${options.isolate ? 'on' : 'off'}; Ctrl-C stops)`);
  } catch (err) {
    console.error(`server: ${err.message}`);
    process.exit(1);
  }
}
