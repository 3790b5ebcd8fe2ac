"""Characters per second of the web page (LiteRT.js in headless Chromium), and what one call costs.

For each model: the demo server serves it, web/drive.mjs drives Debian's Chromium, and the page's own
`CharModel` (web/model.js) is timed in the page:
  * page: the Generate button, text painted as it comes (what a user sees), temperature 0.8, after a first
    generation has warmed the runtime up (best of 3), with the frames per second the page painted meanwhile
  * loop: `CharModel.generate` alone (no painting), with and without top-k/top-p
  * per call: one chained `generate_chunk` call (`CharModel.stream`, as the page makes them) that samples
    nothing (length 0: the fixed cost of a call: passing the tensors, the graph's set-up, reading the
    outputs) and one that samples K characters; (K call - empty call) / K is one character in the graph.
Models: a 2x128 LSTM on the tiny-shakespeare alphabet (random weights: speed does not depend on them)
exported with each --chunk_sizes K, and every --model export dir given (e.g. the shipped model).

Example:
    python benchmarks/web_throughput.py --model saved_models/tiny_shakespeare
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
READY = "['ready', 'error'].includes(document.body.dataset.state)"
SETTLED = "['done', 'error'].includes(document.body.dataset.state)"
TIMING = """(async () => {
  const m = window.tfcharDemo.model(), K = m.chunkSize, L = %(length)d;
  const plain = {temperature: 0.8, topK: 0, topP: 1, seed: 7}, truncated = {...plain, topK: 20, topP: 0.95};
  const loop = async (knobs) => {
    const t0 = performance.now(); let n = 0;
    for await (const units of m.generate(m.units('ROMEO:'), L, knobs)) n += units.length;
    return n / ((performance.now() - t0) / 1000);
  };
  const calls = async (length, count) => {  // the page's own chained calls (CharModel.stream)
    const stream = m.stream({...plain, stop: -1});
    const t0 = performance.now();
    for (let i = 0; i < count; i++) await stream.next([], length);
    const ms = (performance.now() - t0) / count;
    stream.delete();
    return ms;
  };
  await loop(plain);  // warm-up
  const best = async (f) => Math.max(await f(), await f(), await f());
  const r = {K, loop: await best(() => loop(plain)), loop_truncated: await best(() => loop(truncated))};
  r.empty_call_ms = Math.min(await calls(0, 300), await calls(0, 300));
  r.full_call_ms = Math.min(await calls(K, 100), await calls(K, 100));
  r.char_us = 1000 * (r.full_call_ms - r.empty_call_ms) / K;
  return JSON.stringify(r);
})()"""


# Counts the frames the page paints from here on: the text must appear as it comes, not at the end.
FRAMES = """(() => {
  let n = 0, t0 = performance.now(), on = true;
  const tick = () => { if (on) { n++; requestAnimationFrame(tick); } };
  requestAnimationFrame(tick);
  window.tfcharFrames = () => { on = false; return n / ((performance.now() - t0) / 1000); };
})()"""


def machine() -> str:
    """The CPU model (lscpu), the date and the browser: the figures mean little without them."""
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    browser = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip() or "?"
    return f"{cpu}, {os.cpu_count()} logical CPUs; {browser}; {datetime.date.today()}"


def export_2x128(root: Path, chunk_size: int) -> Path:
    from sample_throughput import make_run

    from tfchar.exporting import exporter

    run = root / "run"
    if not run.exists():
        make_run(root, 128, 2, 0)
    out = root / f"export_k{chunk_size}"
    exporter.export_run(run, out, int8=False, splits={}, log=lambda s: None, chunk_size=chunk_size)
    return out


def measure(export: Path, length: int, tmp: Path) -> dict:
    """Serve `export`, drive the page, and return its figures."""
    from tfchar import webdemo

    server = webdemo.make_server(webdemo.resolve_model(export), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    def click(i):
        return [{"eval": FRAMES}, {"eval": "document.body.dataset.state = 'clicked'"}, {"click": "#generate"},
                {"wait": SETTLED}, {"eval": "document.getElementById('stats').dataset.charsPerSecond", "as": f"page{i}"},
                {"eval": "JSON.stringify(window.tfcharFrames())", "as": f"frames{i}"}]

    steps = [{"goto": url}, {"wait": READY}, {"text": "#error", "as": "error"},
             {"fill": "#length", "value": length}, {"fill": "#temperature", "value": 0.8},
             *click(0), {"eval": TIMING % {"length": length}, "as": "timing"},  # the page after warm-up, 3 times
             *click(1), *click(2), *click(3)]
    script = tmp / "steps.json"
    script.write_text(json.dumps(steps))
    try:
        r = subprocess.run(["node", str(ROOT / "web" / "drive.mjs"), str(script)], cwd=ROOT / "web",
                           capture_output=True, text=True, timeout=1800, env={**os.environ, "CHROMIUM": CHROMIUM})
    finally:
        server.shutdown()
        server.server_close()
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if "error" in result or result["reads"]["error"]:
        raise SystemExit(f"{export}: {result.get('error') or result['reads']['error']}")
    reads = result["reads"]
    best = max((1, 2, 3), key=lambda i: float(reads[f"page{i}"]))
    return {"page": float(reads[f"page{best}"]), "frames": float(reads[f"frames{best}"]), **json.loads(reads["timing"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="an export dir to time too (repeatable)")
    p.add_argument("--chunk_sizes", default="64,256", help="K of the 2x128 exports, comma-separated")
    p.add_argument("--length", type=int, default=20000, help="characters per timed generation")
    a = p.parse_args()
    print(machine())
    print(f"{a.length} characters per generation, temperature 0.8, best of 3; headless, CPU (WebAssembly)")
    print(f"  {'model':34s} {'K':>4s} {'page':>8s} {'frames/s':>8s} {'loop':>8s} {'top-k/p':>8s} {'empty call':>11s} "
          f"{'K-char call':>12s} {'per char':>9s}")
    with tempfile.TemporaryDirectory(prefix="tfchar-webbench-") as tmp:
        tmp = Path(tmp)
        models = [(f"2x128 LSTM (K={k})", export_2x128(tmp, int(k))) for k in a.chunk_sizes.split(",")]
        models += [(Path(m).name, Path(m)) for m in a.model]
        for name, export in models:
            r = measure(export, a.length, tmp)
            print(f"  {name:34s} {r['K']:>4d} {r['page']:>8,.0f} {r['frames']:>8.1f} {r['loop']:>8,.0f} {r['loop_truncated']:>8,.0f} "
                  f"{r['empty_call_ms']:>8.3f} ms {r['full_call_ms']:>9.3f} ms {r['char_us']:>6.1f} us", flush=True)
    print("page, loop, top-k/p: chars/s (top-k 20, top-p 0.95); frames/s: frames the page painted while it\n"
          "generated (the text appears as it comes); per char = (K-char call - empty call) / K")


if __name__ == "__main__":
    main()
