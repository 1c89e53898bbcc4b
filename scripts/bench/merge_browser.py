"""Folds the browser benchmark (target/bench/browser.json, from browser.mjs) into
target/bench/results.json as its "browser" part, summarised with the native harness's rules
(stats.summarize: clean/busy selection, medians, ratios to the peer, overheads, and the
persona map rebuild's time under summary.map_build), and rewrites results.md and results.svg. Without a native results.json the browser part stands alone.

Usage: python3 scripts/bench/merge_browser.py [target/bench]"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import stats  # noqa: E402


def merge(out_dir):
    out_dir = Path(out_dir)
    try:
        browser = json.loads((out_dir / "browser.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"merge_browser: cannot read {out_dir}/browser.json: {e}")
    browser["summary"] = stats.summarize(browser)
    path = out_dir / "results.json"
    if path.exists():
        result = json.loads(path.read_text())
    else:
        result = {"schema": "axiscope-bench/1", "runners": [], "runs": []}
    result["browser"] = browser
    path.write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "results.md").write_text(report.markdown(result))
    (out_dir / "results.svg").write_text(report.svg(result))
    return result


if __name__ == "__main__":
    res = merge(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
    print("\n".join(report.browser_markdown(res["browser"])))
