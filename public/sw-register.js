// Registers axiscope's service worker (sw.js), which keeps the app shell for offline visits.
// Where it cannot (an insecure origin, storage blocked in a third-party iframe) the app works
// as before, online only; that is worth a warning, not an error.
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker
    .register('sw.js')
    .catch((err) => console.warn(`axiscope: no offline copy of the app (${err.message})`));
}
