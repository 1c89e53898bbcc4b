// axiscope embed resizer. An axiscope view in an iframe reports its height; this script, on
// the page that holds the iframe, sets the iframe's height to it, so the view never scrolls
// inside a box of guessed size. The "Embed" button on each card of the app copies a snippet
// that loads it:
//
//   <iframe src="https://HOST/PATH/?embed=map" title="..." style="width:100%;height:620px;border:0"></iframe>
//   <script src="https://HOST/PATH/axiscope-embed.js" async></script>
//
// Load it once or once per iframe (it installs itself once). Without it (a blog that strips
// scripts) the iframe keeps the height in its style. Only the iframe that sent a message is
// resized, and only with a number of pixels; nothing else is read from the messages.
(() => {
  if (window.__axiscopeEmbed) return;
  window.__axiscopeEmbed = true;
  const frames = () => Array.from(document.getElementsByTagName('iframe'));
  window.addEventListener('message', (e) => {
    const d = e.data;
    if (!d || d.type !== 'axiscope:height' || !Number.isFinite(d.height)) return;
    const frame = frames().find((f) => f.contentWindow === e.source);
    if (frame) frame.style.height = `${Math.min(Math.max(Math.round(d.height), 40), 20000)}px`;
  });
  // Views that reported before this script ran report again.
  const ask = () => frames().forEach((f) => f.contentWindow?.postMessage({ type: 'axiscope:measure' }, '*'));
  if (document.readyState === 'complete') ask();
  else window.addEventListener('load', ask);
})();
