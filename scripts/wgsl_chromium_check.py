#!/usr/bin/env python3
"""Compile every GPU kernel with Chromium's WGSL compiler (Tint, SwiftShader adapter).

naga (wgpu natively, `cargo test`) and Tint (the browser) disagree on some rules,
uniformity analysis above all, so a shader that passes the lavapipe tests can still
fail in the browser. This assembles each pipeline's source exactly as the Rust side
does (quant_common.wgsl + quant_<type>.wgsl + output snippets + kernel for the weight
kernels, shared snippets before the others),
creates every module and pipeline in headless Chromium through chromedriver, and
prints ok/FAIL per pipeline. Exit status 1 on any failure.

Needs Debian `chromium` and `chromium-driver`. Usage: python3 scripts/wgsl_chromium_check.py
"""

import functools
import http.server
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# The kernels live beside the Rust that dispatches them.
HERE = pathlib.Path(__file__).resolve().parent.parent / "src" / "engine" / "gpu"
QUANTS = ["f32", "f16", "q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q5_k", "q6_k"]
# Where a product's rows go (src/engine/gpu/matmul.rs, `Output`): the snippets before the kernel.
MATVEC_ENDS = {
    "out": ["linear_out.wgsl", "matvec_store.wgsl"],
    "qkv": ["linear_qkv.wgsl", "matvec_store.wgsl"],
    "gated-silu": ["silu.wgsl", "matvec_gated.wgsl"],
    "gated-gelu": ["gelu.wgsl", "matvec_gated.wgsl"],
}
MATMUL_OUTS = {"out": "linear_out.wgsl", "qkv": "linear_qkv.wgsl", "pairs": "linear_pairs.wgsl"}
COMPOSED = {
    "rope": ["rope_common.wgsl", "rope.wgsl"],
    "rope_store": ["rope_common.wgsl", "rope_store.wgsl"],
    "gated-silu": ["silu.wgsl", "gated.wgsl"],
    "gated-gelu": ["gelu.wgsl", "gated.wgsl"],
}
PLAIN_KERNELS = ["rms_norm", "attention", "scale", "add", "copy_rows", "argmax", "clamp_projection"]
DRIVER_PORT = 9515

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const srcs = %s;
(async () => {
  const out = document.getElementById('out');
  const lines = [];
  try {
    const adapter = navigator.gpu && await navigator.gpu.requestAdapter();
    if (!adapter) { out.textContent = 'NO ADAPTER\\nDONE'; return; }
    lines.push('adapter: ' + adapter.info.vendor + ' ' + adapter.info.architecture);
    const device = await adapter.requestDevice();
    for (const [name, code] of Object.entries(srcs)) {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({code});
      const info = await module.getCompilationInfo();
      const msgs = info.messages.filter(m => m.type !== 'info')
        .map(m => m.type + ' ' + m.lineNum + ':' + m.linePos + ' ' + m.message);
      try {
        await device.createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint: 'main'}});
      } catch (e) { msgs.push('pipeline: ' + (e.message || e)); }
      const err = await device.popErrorScope();
      if (err) msgs.push(err.message.split('\\n')[0]);
      lines.push((msgs.length ? 'FAIL ' : 'ok   ') + name + (msgs.length ? ': ' + msgs.join(' | ') : ''));
    }
  } catch (e) { lines.push('FAIL exception ' + e); }
  out.textContent = lines.join('\\n') + '\\nDONE';
})();
</script></body></html>"""


def sources():
    """Each pipeline's source, assembled as the Rust side assembles it."""
    read = lambda name: (HERE / name).read_text()
    join = lambda names: "\n".join(read(n) for n in names)
    srcs = {}
    for q in QUANTS:
        quant = ["quant_common.wgsl", f"quant_{q}.wgsl"]
        for kind, end in MATVEC_ENDS.items():
            srcs[f"matvec/{q}/{kind}"] = join(quant + end + ["matvec.wgsl"])
        for kind, out in MATMUL_OUTS.items():
            srcs[f"matmul/{q}/{kind}"] = join(quant + [out, "matmul.wgsl"])
        srcs[f"embedding/{q}"] = join(quant + ["embedding.wgsl"])
    for name, parts in COMPOSED.items():
        srcs[name] = join(parts)
    for k in PLAIN_KERNELS:
        srcs[k] = read(f"{k}.wgsl")
    return srcs


def webdriver(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{DRIVER_PORT}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=300).read())["value"]


def main():
    work = pathlib.Path(tempfile.mkdtemp(prefix="wgsl-check-"))
    (work / "index.html").write_text(PAGE % json.dumps(sources()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = subprocess.Popen(
        ["chromedriver", f"--port={DRIVER_PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(1.5)
        args = ["--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={work / 'profile'}", "--enable-unsafe-webgpu"]
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        session = webdriver("POST", "/session", caps)["sessionId"]
        webdriver("POST", f"/session/{session}/url", {"url": f"http://127.0.0.1:{server.server_port}/index.html"})
        text = ""
        for _ in range(600):
            script = {"script": "return document.getElementById('out').textContent", "args": []}
            text = webdriver("POST", f"/session/{session}/execute/sync", script)
            if "DONE" in text:
                break
            time.sleep(0.5)
        webdriver("DELETE", f"/session/{session}")
    finally:
        driver.terminate()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    ok = "DONE" in text and "FAIL" not in text and "NO ADAPTER" not in text
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
