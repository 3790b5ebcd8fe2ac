"""The web demo: an exported model writes text in real (headless) Chromium with LiteRT.js through its
generate_chunk signature, the same text `python -m tfchar.sample` prints (no sampler in JavaScript); Stop
stops within one chunk; bad input is a readable error on the page; the server serves only its files.

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


def run_steps(name, prime=PRIME, length=LENGTH, greedy=True, temperature=0.8, top_k=0, top_p=1.0, seed=SEED,
              stop=""):
    """Steps that fill the form, click Generate, wait, and read #output, #error and chars/s as name.*"""
    return [{"fill": "#prime", "value": prime}, {"fill": "#length", "value": length},
            {"check": "#greedy", "on": greedy}, *([] if greedy else [{"fill": "#temperature", "value": temperature}]),
            {"fill": "#top-k", "value": top_k}, {"fill": "#top-p", "value": top_p}, {"fill": "#seed", "value": seed},
            {"fill": "#stop-at", "value": stop}, {"eval": "document.body.dataset.state = 'clicked'"},
            {"click": "#generate"}, {"wait": SETTLED},
            {"text": "#output", "as": f"{name}.output"}, {"text": "#error", "as": f"{name}.error"},
            {"eval": "document.getElementById('stats').dataset.charsPerSecond || ''", "as": f"{name}.cps"}]


# Stop while a long generation runs: record how many characters were out at the click, then what came after.
STOP_STEPS = [{"fill": "#length", "value": 200000}, {"check": "#greedy", "on": False}, {"fill": "#stop-at", "value": ""},
              {"eval": "document.body.dataset.state = 'clicked'"}, {"click": "#generate"},
              {"wait": "document.getElementById('out-text').textContent.length > 1000"},
              {"eval": "(() => { const n = Number(document.body.dataset.written); "
                       "document.getElementById('stop').click(); return n; })()", "as": "stop.at_click"},
              {"wait": SETTLED}, {"eval": "document.getElementById('stats').textContent", "as": "stop.stats"},
              {"eval": "window.tfcharDemo.model().chunkSize", "as": "stop.chunk"}]

# A chunk call with a wrong-size state and one with a stop unit outside the vocabulary, through the page's model.
BAD_CHUNK = ("(async () => {{ const m = window.tfcharDemo.model(); const s = m.start(); "
             "try {{ await m.chunk({{length: 4, temperature: 1, topK: 0, topP: 1, seed: 1, {}}}); return 'no error'; }} "
             "catch (e) {{ return e.constructor.name + ': ' + e.message; }} }})()")


def pick_steps(name, path):
    return [{"eval": "document.body.dataset.state = 'picking'"}, {"files": "#model-file", "path": str(path)},
            {"wait": SETTLED}, {"text": "#error", "as": f"{name}.error"}]


def printed(model, **kwargs) -> str:
    """What `python -m tfchar.sample MODEL ...` prints, less its final newline (same function, in process)."""
    from tfchar.sampling.sample import sample

    buf = io.StringIO()
    sample(str(model), out=buf, **{"seed": SEED, "length": LENGTH, **kwargs})
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
             *run_steps("line", greedy=False, stop="\\n"), *run_steps("phrase", greedy=False, length=2000, stop="e t"),
             *STOP_STEPS,
             {"eval": BAD_CHUNK.format("state: new Float32Array(3), carry: s.carry"), "as": "state.error"},
             {"eval": BAD_CHUNK.format("state: s.state, carry: s.carry, stop: 9731"), "as": "stopunit.error"},
             *run_steps("unknown", prime="ROMEO: caf\u00e9 \u20ac"), *run_steps("zero", length=0),
             *run_steps("neverstops", stop="\u20ac"),
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
def test_stop_text_ends_the_text_as_python_sample_does(page, export_dir):
    line = printed(export_dir / "model.tflite", prime=PRIME, temperature=0.8, stop="\n")
    assert page["line.error"] == "" and page["line.output"] == line
    assert line.endswith("\n") and line[len(PRIME):].count("\n") == 1
    phrase = printed(export_dir / "model.tflite", prime=PRIME, temperature=0.8, stop="e t", length=2000)
    assert page["phrase.output"] == phrase and phrase.endswith("e t")


@pytest.mark.slow
def test_stop_button_stops_within_one_chunk(page):
    at_click, chunk = page["stop.at_click"], page["stop.chunk"]
    written = int(page["stop.stats"].split()[0])
    assert at_click <= written <= at_click + chunk, (at_click, written, chunk)
    assert written < 200000


@pytest.mark.slow
@pytest.mark.parametrize("case, expect", [
    ("unknown", "2 character(s) this model never saw"),
    ("zero", "Length 0 must be a positive whole number"),
    ("neverstops", "Stop at has 1 character(s) this model never writes"),
    ("state", "DemoError: generate_chunk state must be 64 floats for this model, got 3"),
    ("stopunit", "DemoError: stop unit 9731 is not in the model's vocabulary"),
    ("foreign", "double.tflite has no generate_chunk/vocabulary signature, so it cannot stream text here"),
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
