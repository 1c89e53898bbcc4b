// Inside an embedded view (?embed=map|drift|cap in an iframe): tells the parent page this
// page's height whenever it changes, so the parent's axiscope-embed.js can size the iframe to
// fit. The message is { type: 'axiscope:height', height: CSS pixels } and carries nothing
// else, so any origin may receive it. The parent may ask again with { type: 'axiscope:measure' }
// (its script can load after this page's first report).
(() => {
  if (window.parent === window || !new URLSearchParams(location.search).has('embed')) return;
  const post = () => {
    const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    window.parent.postMessage({ type: 'axiscope:height', height }, '*');
  };
  new ResizeObserver(post).observe(document.documentElement);
  window.addEventListener('message', (e) => {
    if (e.source === window.parent && e.data?.type === 'axiscope:measure') post();
  });
})();
