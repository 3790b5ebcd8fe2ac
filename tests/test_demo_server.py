"""`python -m tfchar.demo` as a real process on 127.0.0.1 under load and bad requests, and how it stops.

200 concurrent downloads are served byte for byte; every kind of bad request is a 4xx and one log line on
stderr; a silent client is disconnected; SIGINT and SIGTERM stop the server at once (exit 0, "stopped", no
traceback), even with clients in flight and when it was launched with SIGINT ignored, as a script's `cmd &`
(and so some CI runners) launch it.

The server runs from a staged copy of the package and the page (tfchar/ and web/ in a temporary dir, with
the real LiteRT.js), so symlinks leading out of web/ can be planted without touching the checkout. Both of
its pipes are read all along: a pipe nobody reads fills up and blocks the server's logging.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import pytest

from conftest import ROOT
from tfchar import webdemo

WEB = ROOT / "web"
START_TIMEOUT = 30  # s for the process to print its URL
STOP_TIMEOUT = 5  # s from the signal to the exit
CONCURRENT = 200
FIELD = r"(\S+?(?:\.\.\.\(\d+ chars\))?)"  # a method or path as logged: maybe cut, "...(65533 chars)"
LOG_LINE = re.compile(rf"^127\.0\.0\.1 \[[^\]]+\] {FIELD} {FIELD} (\d{{3}}|closed) (.+)$")
WASM = f"/{webdemo.RUNTIME}/core/wasm/litert_wasm_internal.wasm"


def _runtime_or_skip():
    if not (WEB / webdemo.RUNTIME / "core" / "wasm").is_dir():
        reason = "the demo server test needs web/node_modules (npm ci --prefix web)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must install it")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """tfchar/ and the page's files copied, the real LiteRT.js, two exports, a secret and symlinks out to it.

    export/ is a normal export (random model bytes, a vocab); leaky/vocab.json is a symlink to the secret.
    """
    _runtime_or_skip()
    root = tmp_path_factory.mktemp("demo-tree")
    shutil.copytree(ROOT / "tfchar", root / "tfchar", ignore=shutil.ignore_patterns("__pycache__"))
    web = root / "web"
    web.mkdir()
    for f in WEB.iterdir():
        if f.is_file() and f.suffix in webdemo.PAGE_SUFFIXES:
            shutil.copy(f, web / f.name)
    (web / "node_modules").symlink_to((WEB / "node_modules").resolve())
    (root / "secret.txt").write_text("secret")
    (web / "leak.js").symlink_to(root / "secret.txt")
    for name in ("export", "leaky"):
        (root / name).mkdir()
        (root / name / "model.tflite").write_bytes(random.Random(0).randbytes(300_000))
    (root / "export" / "vocab.json").write_text(json.dumps(list("abc \n")))
    (root / "leaky" / "vocab.json").symlink_to(root / "secret.txt")
    return root


@dataclass
class Demo:
    """A running `python -m tfchar.demo`; both pipes are read into `out` and `err` as it prints."""

    proc: subprocess.Popen
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)
    port: int = 0

    def stop(self, sig=signal.SIGINT) -> int:
        """Send `sig`; the exit status (TimeoutExpired if the process outlives STOP_TIMEOUT)."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=STOP_TIMEOUT)
        for t in self.readers:
            t.join(timeout=STOP_TIMEOUT)
        return code

    def wait_for_log(self, n: int, timeout: float = 10) -> list[str]:
        """stderr once it has at least n lines (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.err) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.err)


def _collect(stream, sink: list[str]):
    for line in stream:
        sink.append(line)


def start_demo(tree: Path, model: Path, ignore_sigint: bool = False) -> Demo:
    """`python -m tfchar.demo MODEL --port 0` from the staged tree, once its URL is printed.

    ignore_sigint: launch it with SIGINT ignored, as a non-interactive shell launches a background job.
    """
    cmd = [sys.executable, "-m", "tfchar.demo", str(model), "--port", "0"]
    if ignore_sigint:
        cmd = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    proc = subprocess.Popen(cmd, cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    demo = Demo(proc)
    for stream, sink in ((proc.stdout, demo.out), (proc.stderr, demo.err)):
        demo.readers.append(threading.Thread(target=_collect, args=(stream, sink), daemon=True))
        demo.readers[-1].start()
    deadline = time.monotonic() + START_TIMEOUT
    while not demo.port and time.monotonic() < deadline and proc.poll() is None:
        urls = [line.split()[1] for line in demo.out if line.startswith("demo: ")]
        if urls:
            demo.port = int(urls[0].rstrip("/").rsplit(":", 1)[1])
        time.sleep(0.05)
    if not demo.port:
        _kill(demo)
        raise AssertionError(f"demo did not start: {''.join(demo.err)[-2000:]}")
    return demo


def _kill(demo: Demo):
    if demo.proc.poll() is None:
        demo.proc.kill()
        demo.proc.wait(timeout=10)


@pytest.fixture
def demos():
    """Start demos with demos.append(start_demo(...)); any still running at the end is killed."""
    started = []
    yield started
    for demo in started:
        _kill(demo)


def fetch(port: int, path: str, barrier: threading.Barrier | None = None) -> tuple[int, str, str]:
    """GET path with http.client: (status, Content-Type, sha256 of the body); connected at the barrier."""
    conn = HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.connect()
        if barrier is not None:
            barrier.wait()  # all connections open at once before any request is sent
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), hashlib.sha256(r.read()).hexdigest()
    finally:
        conn.close()


def exchange(port: int, data: bytes) -> tuple[str, dict, bytes]:
    """Send raw bytes, read the reply until the server closes: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(1 << 16):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


def served(tree: Path) -> dict[str, tuple[str, str]]:
    """What the page loads, by URL: (Content-Type, sha256 of the file)."""
    runtime = WEB / webdemo.RUNTIME / "core"
    files = {"/": tree / "web" / "index.html", "/model/model.tflite": tree / "export" / "model.tflite",
             "/model/vocab.json": tree / "export" / "vocab.json", WASM: WEB / WASM[1:],
             f"/{webdemo.RUNTIME}/core/dist/index.js": runtime / "dist" / "index.js",
             f"/{webdemo.RUNTIME}/core/wasm/litert_wasm_internal.js": runtime / "wasm" / "litert_wasm_internal.js"}
    page = [f for f in (tree / "web").iterdir() if f.suffix in (".js", ".css") and not f.is_symlink()]
    files.update({f"/{f.name}": f for f in page})
    return {url: (webdemo.MIME[f.suffix], hashlib.sha256(f.read_bytes()).hexdigest()) for url, f in files.items()}


def _get(target: str, method: str = "GET", extra: bytes = b"") -> bytes:
    """A raw HTTP/1.0 request for target, with extra header lines (or a body after a blank line)."""
    return f"{method} {target} HTTP/1.0\r\n".encode("latin-1") + b"Host: 127.0.0.1\r\n" + extra + b"\r\n"


# (name, raw request, status, method and start of the path in its log line)
BAD_REQUESTS = [
    ("encoded ..", _get("/%2e%2e/secret.txt"), 403, "GET /%2e%2e/secret.txt"),
    ("encoded ../", _get("/%2E%2E%2Fsecret.txt"), 403, "GET /%2E%2E%2Fsecret.txt"),
    ("encoded .. in the runtime", _get(f"/{webdemo.RUNTIME}/%2e%2e/%2e%2e/%2e%2e/secret.txt"), 403,
     "GET /node_modules"),
    ("double-encoded ..", _get("/%252e%252e/secret.txt"), 404, "GET /%252e%252e/secret.txt"),
    ("//absolute path", _get("//etc/passwd"), 403, "GET //etc/passwd"),
    ("absolute-form elsewhere", _get("http://example.com/etc/passwd"), 403, "GET http://example.com/etc/passwd"),
    ("absolute-form", _get("http://127.0.0.1/"), 403, "GET http://127.0.0.1/"),
    ("raw NUL", _get("/index.html\x00.js"), 403, "GET /index.html\\x00.js"),
    ("%00", _get("/index.html%00.js"), 403, "GET /index.html%00.js"),
    ("symlink out of web/", _get("/leak.js"), 403, "GET /leak.js"),
    ("refused HEAD", _get("/%2e%2e/secret.txt", "HEAD"), 403, "HEAD /%2e%2e/secret.txt"),
    ("not served", _get("/package.json"), 404, "GET /package.json"),
    ("name too long for the file system", _get("/" + "a" * 5000 + ".js"), 404, "GET /aaaa"),
    ("100 KB path", _get("/" + "a" * 100_000), 414, "GET /aaaa"),
    ("20 KB path", _get("/" + "a" * 20_000), 414, "GET /aaaa"),
    ("100 KB header", _get("/", extra=b"X-Long: " + b"b" * 100_000 + b"\r\n"), 431, "GET /"),
    ("200 headers", _get("/", extra=b"".join(b"X-%d: y\r\n" % i for i in range(200))), 431, "GET /"),
    ("POST with a 4 MB body", _get("/", "POST", b"Content-Length: 4000000\r\n\r\n" + b"x" * 4_000_000)[:-2], 405,
     "POST /"),
    *[(m, _get(t, m), 405, f"{m} {t}") for m, t in [("PUT", "/x"), ("DELETE", "/"), ("OPTIONS", "*"), ("TRACE", "/"),
                                                   ("PATCH", "/"), ("CONNECT", "example.com:443"), ("BREW", "/")]],
    ("control character in the method", _get("/", "G\x01T"), 405, "G\\x01T /"),
    ("one word", b"GARBAGE\r\n\r\n", 400, "GARBAGE -"),
    ("no version (HTTP/0.9)", b"GET /\r\n\r\n", 400, "GET /"),
    ("four words", b"GET / HTTP/1.0 x\r\n\r\n", 400, "GET /"),
    ("version HTTP/x.y", b"GET / HTTP/x.y\r\n\r\n", 400, "GET /"),
    ("version HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", 400, "GET /"),
    ("version FTP/1.0", b"GET / FTP/1.0\r\n\r\n", 400, "GET /"),
    ("empty line", b"\r\n\r\n", 400, "- -"),
    ("binary", bytes(range(1, 9)) + b"\r\n\r\n", 400, "\\x01\\x02"),
]


def test_load_bad_requests_and_a_silent_client(tree, demos):
    """200 concurrent downloads, then every bad request (a 4xx, one log line each), while a client stays silent."""
    demo = start_demo(tree, tree / "export")
    demos.append(demo)
    silent = socket.create_connection(("127.0.0.1", demo.port), timeout=60)  # connects, never sends
    hung_up = []  # (what recv returned, seconds after connecting)
    start = time.monotonic()
    watcher = threading.Thread(target=lambda: hung_up.append((silent.recv(1), time.monotonic() - start)))
    watcher.start()

    expect = served(tree)
    small = [url for url in expect if url != WASM]
    urls = [WASM if i % 20 == 0 else small[i % len(small)] for i in range(CONCURRENT)]  # 10 x 9 MB, 190 small
    barrier = threading.Barrier(CONCURRENT, timeout=60)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        got = list(pool.map(lambda url: fetch(demo.port, url, barrier), urls))
    assert got == [(200, *expect[url]) for url in urls]
    assert demo.err == []  # a served file logs nothing

    for name, data, status, logged in BAD_REQUESTS:
        line, headers, body = exchange(demo.port, data)
        assert line.startswith(f"HTTP/1.0 {status} "), (name, line)
        reply = line[9:].encode() + b"\n"  # "403 Forbidden": nothing of the request is echoed
        assert body == (b"" if data.startswith(b"HEAD") else reply), name
        assert headers["Connection"] == "close" and headers["Content-Length"] == str(len(reply)), name
        assert headers.get("Allow") == ("GET, HEAD" if status == 405 else None), name
    assert fetch(demo.port, "/") == (200, *expect["/"])  # still serving

    watcher.join(timeout=webdemo.IDLE_TIMEOUT + webdemo.LINGER + 10)
    silent.close()
    (received, after), = hung_up  # the server hung up on the silent client, on time
    assert received == b"" and webdemo.IDLE_TIMEOUT - 1 < after < webdemo.IDLE_TIMEOUT + webdemo.LINGER + 5, after

    log = demo.wait_for_log(len(BAD_REQUESTS) + 1)
    assert len(log) == len(BAD_REQUESTS) + 1, "".join(log)
    parsed = [LOG_LINE.match(line.rstrip("\n")) for line in log]
    assert all(parsed) and all(len(line) < 400 and line.isascii() for line in log), "".join(log)
    closed = [m for m in parsed if m[3] == "closed"]
    assert [(m[1], m[2]) for m in closed] == [("-", "-")], "".join(log)  # the silent client: one line
    refusals = {name: m for (name, *_), m in zip(BAD_REQUESTS, [m for m in parsed if m[3] != "closed"])}
    for name, _, status, logged in BAD_REQUESTS:
        m = refusals[name]
        assert m[3] == str(status) and f"{m[1]} {m[2]}".startswith(logged), (name, m[0])
    assert refusals["20 KB path"][2].endswith("...(20001 chars)")  # long paths are cut short

    assert demo.stop(signal.SIGINT) == 0
    assert demo.out[-1] == "stopped\n" and not any("Traceback" in line for line in demo.err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_is_prompt_and_clean(tree, demos, sig):
    """Launched with SIGINT ignored (`cmd &` in a script), with clients mid-request, a signal stops it at once."""
    demo = start_demo(tree, tree / "leaky", ignore_sigint=True)
    demos.append(demo)
    vocab = fetch(demo.port, "/model/vocab.json")[0]  # a symlink beside the model, out of its dir: 403 (below)
    silent = socket.create_connection(("127.0.0.1", demo.port), timeout=10)
    half = socket.create_connection(("127.0.0.1", demo.port), timeout=10)
    half.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n")  # headers never finished
    stalled = socket.create_connection(("127.0.0.1", demo.port), timeout=10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(_get(WASM))
    assert stalled.recv(12) == b"HTTP/1.0 200"  # a 9 MB download its client stopped reading
    try:
        start = time.monotonic()
        assert demo.stop(sig) == 0
        assert time.monotonic() - start < STOP_TIMEOUT
    finally:
        for s in (silent, half, stalled):
            s.close()
    assert demo.out[-1] == "stopped\n"
    assert vocab == 403 and len(demo.err) == 1 and " 403 path outside the demo" in demo.err[0], demo.err
