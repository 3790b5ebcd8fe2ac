"""The web demo: an exported model writes text in real (headless) Chromium with LiteRT.js, the same text
`python -m tfchar.sample` prints; bad input is a readable error on the page; the server serves only its files.

The browser tests need Debian's Chromium (/usr/bin/chromium) and `npm ci --prefix web`; without them they
skip, except in CI (CI set), where they fail. No browser is ever downloaded.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from tfchar import webdemo
from tfchar.core.errors import CheckpointError, TfcharError

WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"
PRIME = "ROMEO:\n"
LENGTH = 200
SEED = 7


# ============================================================================================ fast: routing

@pytest.fixture
def web_dir(tmp_path):
    """A stand-in web/ with a runtime file, a secret outside it, and symlinks pointing out."""
    web = tmp_path / "web"
    (web / webdemo.RUNTIME / "core" / "wasm").mkdir(parents=True)
    (web / webdemo.RUNTIME / "core" / "wasm" / "x.wasm").write_bytes(b"\0asm")
    (web / "index.html").write_text("<html></html>")
    (web / "node_modules" / "other").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (web / "leak.js").symlink_to(tmp_path / "secret.txt")
    (web / webdemo.RUNTIME / "leak").symlink_to(tmp_path)
    return web


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/node_modules/@litertjs/../../x",
                                  "/model/../../secret.txt", "/C:/x", "/a\\..\\b"])
def test_route_refuses_escapes(web_dir, path):
    with pytest.raises(webdemo.Refused):
        webdemo.route(path, None, web_dir)


@pytest.mark.parametrize("path", ["/leak.js", "/node_modules/@litertjs/leak/secret.txt"])
def test_route_refuses_symlinks_leading_out(web_dir, path):
    with pytest.raises(webdemo.Refused):
        webdemo.route(path, None, web_dir)


def test_route_serves_only_the_page_runtime_and_model(web_dir, tmp_path):
    model = tmp_path / "m.tflite"
    assert webdemo.route("/", None, web_dir) == web_dir / "index.html"
    assert webdemo.route("/node_modules/@litertjs/core/wasm/x.wasm?v=1", None, web_dir).name == "x.wasm"
    assert webdemo.route("/model/model.tflite", model, web_dir) == model
    assert webdemo.route("/model/vocab.json", model, web_dir) == tmp_path / "vocab.json"
    for other in ("/node_modules/other/x.js", "/package.json", "/drive.mjs", "/model/config.toml", "/.git"):
        assert webdemo.route(other, model, web_dir) is None, other
    assert webdemo.route("/model/model.tflite", None, web_dir) is None  # no model: the page says so


def test_missing_runtime_is_one_line_with_the_fix(tmp_path):
    with pytest.raises(TfcharError, match=f"run npm ci --prefix {tmp_path}$"):
        webdemo.check_runtime(tmp_path)


def test_model_argument(tmp_path, monkeypatch):
    monkeypatch.setattr(webdemo, "DEFAULT_MODELS", [tmp_path / "default"])
    assert webdemo.resolve_model(None) is None  # default export absent: serve the page anyway
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "model.tflite").write_bytes(b"x")
    assert webdemo.resolve_model(tmp_path / "exp") == (tmp_path / "exp" / "model.tflite").resolve()
    with pytest.raises(CheckpointError, match="python -m tfchar.export"):
        webdemo.resolve_model(tmp_path / "nope")


# ============================================================================================ sampler.js

JS_DRAW = """
import {readFileSync} from 'node:fs';
import {draw, nextRng, seedRng, settings, uniform} from '%s';
const {cases, seeds} = JSON.parse(readFileSync(0, 'utf-8'));
const tokens = cases.map(([logits, u, t, k, p]) =>
  draw(Float32Array.from(logits), u, settings(t, k, p, logits.length)));
const streams = seeds.map((seed) => {
  let x = seedRng(seed);
  return Array.from({length: 5}, () => uniform(x = nextRng(x)));
});
process.stdout.write(JSON.stringify({tokens, streams}));
"""


def test_js_sampler_draws_what_the_exported_sampler_draws():
    """web/sampler.js against tfchar.sampler on random logits (ties too) and every knob, bit for bit."""
    import numpy as np
    import tensorflow as tf

    from tfchar.ops import draw
    from tfchar.ops import rng as prng

    if shutil.which("node") is None:
        _browser_or_skip()
    rng = np.random.default_rng(0)
    cases = []
    for i in range(300):
        logits = (rng.normal(size=40) * rng.choice([0.5, 3.0, 10.0])).astype(np.float32)
        if i % 5 == 0:
            logits[rng.integers(0, 40, 8)] = logits.max()  # ties at the top
        u = float(rng.integers(0, 1 << 24)) / (1 << 24)  # what sampler.uniform can return
        cases.append([logits.tolist(), u, float(rng.choice([0, 0.5, 0.8, 1.3])), int(rng.choice([0, 1, 5, 20, 60])),
                      float(np.float32(rng.choice([1.0, 0.95, 0.5, 0.1])))])
    expect = [int(draw.sample_ids([c[0]], [c[1]], *c[2:]).numpy()[0]) for c in cases]
    seeds = [0, 1, 7, 123, -1, -(2**31), 2**31 - 1]
    streams = []
    for seed in seeds:
        x = prng.seed_rng(tf.constant([seed]))
        streams.append([float(prng.uniform(x := prng.next_rng(x)).numpy()[0]) for _ in range(5)])
    r = subprocess.run(["node", "--input-type=module", "-e", JS_DRAW % (WEB / "sampler.js").as_uri()],
                       input=json.dumps({"cases": cases, "seeds": seeds}), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["streams"] == streams
    assert got["tokens"] == expect


# ============================================================================================ slow: browser

def _browser_or_skip():
    missing = [what for what, ok in ((f"{CHROMIUM} (apt-get install -y chromium)", CHROMIUM.exists()),
                                     ("web/node_modules (npm ci --prefix web)", (WEB / "node_modules").is_dir()),
                                     ("node (Node.js)", shutil.which("node") is not None)) if not ok]
    if missing:
        reason = "web demo test needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must install them")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, small_text_file):
    """A tiny model trained for 30 steps with the smoke pipeline, exported by fit."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("web")
    out = root / "export"
    cmd = [sys.executable, "-m", "tfchar.fit", str(ROOT / "pipelines" / "smoke.toml"),
           f"--data.source={small_text_file}", "--train.max_steps=30", "--train.learning_rate=0.01",
           f"--train.run_dir={root / 'run'}", "--export.on_finish=true", f"--export.out={out}"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and (out / "model.tflite").is_file(), r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def demo(export_dir):
    """`python -m tfchar.demo EXPORT --port 0` as a subprocess; yields its URL; stopped with Ctrl-C.

    Both pipes are read as the server writes: a full stderr pipe (~850 refusal lines) would block its handlers.
    """
    proc = subprocess.Popen([sys.executable, "-m", "tfchar.demo", str(export_dir), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, errors = queue.Queue(), []
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    stderr = threading.Thread(target=lambda: [errors.append(l) for l in proc.stderr], daemon=True)
    stderr.start()
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("demo: "):
                url = line.split()[1]
        if url is None:
            proc.kill()
            proc.wait(timeout=10)
            stderr.join(timeout=10)
            raise AssertionError(f"demo did not start: {''.join(errors)[-2000:]}")
        yield url
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=20) == 0
        stderr.join(timeout=10)
        assert "Traceback" not in "".join(errors)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def drive(steps, tmp_path) -> dict:
    """Run web/drive.mjs (Playwright + /usr/bin/chromium) on `steps`; return its named reads."""
    script = tmp_path / f"steps-{time.monotonic_ns()}.json"
    script.write_text(json.dumps(steps))
    # Own process group: on a timeout, Chromium goes too, not only node.
    proc = subprocess.Popen(["node", str(WEB / "drive.mjs"), str(script)], cwd=WEB, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "CHROMIUM": str(CHROMIUM)})
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"drive.mjs failed (exit {proc.returncode}): {err[-2000:]}") from None
    assert "error" not in result, f"{result['error']}\nconsole: {result['console'][-10:]}"
    return result["reads"]


SETTLED = "['done', 'error', 'ready'].includes(document.body.dataset.state)"


def run_steps(name, prime=PRIME, length=LENGTH, greedy=True, temperature=0.8, top_k=0, top_p=1.0, seed=SEED):
    """Steps that fill the form, click Generate, wait, and read #output, #error and chars/s as name.*"""
    return [{"fill": "#prime", "value": prime}, {"fill": "#length", "value": length},
            {"check": "#greedy", "on": greedy}, *([] if greedy else [{"fill": "#temperature", "value": temperature}]),
            {"fill": "#top-k", "value": top_k}, {"fill": "#top-p", "value": top_p}, {"fill": "#seed", "value": seed},
            {"eval": "document.body.dataset.state = 'clicked'"},
            {"click": "#generate"}, {"wait": SETTLED},
            {"text": "#output", "as": f"{name}.output"}, {"text": "#error", "as": f"{name}.error"},
            {"eval": "document.getElementById('stats').dataset.charsPerSecond || ''", "as": f"{name}.cps"}]


def pick_steps(name, path):
    return [{"eval": "document.body.dataset.state = 'picking'"}, {"files": "#model-file", "path": str(path)},
            {"wait": SETTLED}, {"text": "#error", "as": f"{name}.error"}]


def printed(model, **kwargs) -> str:
    """What `python -m tfchar.sample MODEL ...` prints, less its final newline (same function, in process)."""
    from tfchar.sampling.sample import sample

    buf = io.StringIO()
    sample(str(model), length=LENGTH, out=buf, **{"seed": SEED, **kwargs})
    return buf.getvalue()[:-1]


def not_tfchar_tflite(path: Path) -> Path:
    """A valid .tflite whose only signature doubles a vector: loads, but is no tfchar export."""
    import tensorflow as tf

    module = tf.Module()
    module.double = tf.function(lambda x: {"y": 2.0 * x}, input_signature=[tf.TensorSpec([4], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.double.get_concrete_function()], module)
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def page(demo, export_dir, tmp_path_factory):
    """One browser session through the demo: two generations, a screenshot, then every kind of bad input."""
    tmp = tmp_path_factory.mktemp("drive")
    ARTIFACTS.mkdir(exist_ok=True)
    garbage = tmp / "notes.tflite"
    garbage.write_bytes(b"these are notes, not a model\n" * 20)
    steps = [{"goto": demo}, {"wait": SETTLED}, {"text": "#error", "as": "load.error"},
             *run_steps("greedy"), *run_steps("nucleus", greedy=False, top_k=10, top_p=0.9, seed=-5),
             *run_steps("sampled", greedy=False), {"screenshot": str(ARTIFACTS / "web-demo.png")},
             *run_steps("unknown", prime="ROMEO: caf\u00e9 \u20ac"), *run_steps("zero", length=0),
             *pick_steps("foreign", not_tfchar_tflite(tmp / "double.tflite")), *pick_steps("garbage", garbage),
             {"goto": demo + "?model=model/missing.tflite"}, {"wait": SETTLED},
             {"text": "#error", "as": "missing.error"}]
    return drive(steps, tmp)


@pytest.mark.slow
def test_greedy_text_equals_python_sample(page, export_dir):
    assert page["load.error"] == ""
    assert page["greedy.error"] == ""
    assert page["greedy.output"] == printed(export_dir / "model.tflite", prime=PRIME, greedy=True)
    assert len(page["greedy.output"]) == len(PRIME) + LENGTH


@pytest.mark.slow
def test_seeded_sampling_equals_python_sample(page, export_dir):
    assert page["sampled.error"] == ""
    assert page["sampled.output"] == printed(export_dir / "model.tflite", prime=PRIME, temperature=0.8)
    assert float(page["sampled.cps"]) > 0
    assert page["nucleus.output"] == printed(export_dir / "model.tflite", prime=PRIME, temperature=0.8, top_k=10,
                                             top_p=0.9, seed=-5)
    assert (ARTIFACTS / "web-demo.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("case, expect", [
    ("unknown", "2 character(s) this model never saw"),
    ("zero", "Length 0 must be a positive whole number"),
    ("foreign", "double.tflite has no step/vocabulary signature, so it is not a tfchar export"),
    ("garbage", "notes.tflite is not a readable TFLite model"),
    ("missing", "cannot load model/missing.tflite (HTTP 404)"),
])
def test_bad_input_is_a_readable_error_on_the_page(page, case, expect):
    error = page[f"{case}.error"]
    assert expect in error and "\n" not in error, error


@pytest.mark.slow
def test_server_mime_types_and_refusals(demo, export_dir):
    def get(path):
        try:
            with urllib.request.urlopen(demo.rstrip("/") + path, timeout=10) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], b""

    assert get("/")[:2] == (200, "text/html; charset=utf-8")
    assert get("/app.js")[1].startswith("text/javascript")
    assert get("/node_modules/@litertjs/core/wasm/litert_wasm_internal.wasm")[1] == "application/wasm"
    assert get("/node_modules/@litertjs/core/dist/index.js")[1].startswith("text/javascript")
    assert get("/model/model.tflite")[2] == (export_dir / "model.tflite").read_bytes()
    assert json.loads(get("/model/vocab.json")[2]) == json.loads((export_dir / "vocab.json").read_text())
    for path in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/node_modules/@litertjs/../../../pyproject.toml",
                 "/model/../../pyproject.toml", "/package.json", "/node_modules/playwright-core/package.json"):
        assert get(path)[0] in (403, 404), path
