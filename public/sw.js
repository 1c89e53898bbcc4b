// axiscope's service worker: keeps a copy of the app shell (the page, both model-worker
// builds, styles, the default persona bundle) so that a page visited once opens again with
// the network off - a workshop room with bad Wi-Fi. The model file is not stored here: the
// app caches it itself (Cache Storage, size and sha256 checked), so requests under models/
// pass by untouched.
//
// Network first, cache second: online visitors always get the deployed files (Trunk hashes
// their names), offline ones get the last copy seen. precache.json (written at build time by
// scripts/precache.mjs) lists every shell file, so the worker build the page did not pick
// is stored too.
const SHELL = 'axiscope-shell-v1';

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL);
      let files = [];
      try {
        const res = await fetch('precache.json', { cache: 'no-store' });
        if (res.ok) files = await res.json();
      } catch {
        // Offline at install: the fetch handler still stores what the page loads.
      }
      // One by one, so one missing file does not cancel the rest (cache.addAll would).
      await Promise.all(
        ['./', ...files].map(async (file) => {
          try {
            const res = await fetch(file, { cache: 'no-store' });
            if (res.ok) await cache.put(file, res);
          } catch {
            // Left to the fetch handler.
          }
        }),
      );
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || url.pathname.includes('/models/')) return;
  event.respondWith(networkFirst(req));
});

async function networkFirst(req) {
  const cache = await caches.open(SHELL);
  try {
    const res = await fetch(req);
    if (res.ok && res.type === 'basic') await cache.put(req, res.clone());
    return res;
  } catch (err) {
    // A page URL carries its settings in the query (?backend=cpu, ?embed=map): the shell is
    // the same page whatever they are.
    const hit =
      (await cache.match(req, { ignoreSearch: req.mode === 'navigate' })) ??
      (req.mode === 'navigate' ? await cache.match('./') : undefined);
    if (hit) return hit;
    throw err;
  }
}
