"""Serve the in-browser demo (web/): the page, LiteRT.js from web/node_modules, and one exported model.

URL layout (the page needs nothing else, and nothing from the internet):
    /                       web/index.html; other web/ files by name (app.js, style.css, ...)
    /node_modules/@litertjs/...   the LiteRT.js runtime and its WebAssembly files (npm ci --prefix web)
    /model/model.tflite     the model being demoed (whatever its file name), /model/vocab.json beside it

Only those files are served: a path with `..`, an absolute or drive path, or a symlink leading out of
its root is refused (403); anything else is 404. SIGINT and SIGTERM stop the server at once
(stop_on_signals). Standard library only; loopback by default.

Example:
    server = make_server(resolve_model("saved_models/tiny_shakespeare"), port=8000)
    stop_on_signals()          # SIGINT and SIGTERM raise Stopped
    server.serve_forever()
"""

from __future__ import annotations

import signal
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tfchar.errors import CheckpointError, TfcharError

WEB = Path(__file__).resolve().parents[1] / "web"
RUNTIME = "node_modules/@litertjs"  # the only part of node_modules the page loads
DEFAULT_MODEL = Path("saved_models/tiny_shakespeare")
DEFAULT_MODELS = [DEFAULT_MODEL, WEB.parent / DEFAULT_MODEL]
PAGE_SUFFIXES = (".html", ".js", ".css", ".png", ".svg", ".ico")
MIME = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
        ".json": "application/json; charset=utf-8", ".map": "application/json; charset=utf-8",
        ".wasm": "application/wasm", ".tflite": "application/octet-stream", ".png": "image/png",
        ".svg": "image/svg+xml", ".ico": "image/x-icon", ".md": "text/plain; charset=utf-8"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Refused(Exception):
    """A request path that tries to leave what the server serves."""


class Stopped(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM (kill) arrived: raised in the main thread, once, to stop the server.

    A BaseException, like KeyboardInterrupt: socketserver catches Exception around each accepted request
    (`_handle_request_noblock`), which would swallow a signal that lands there and keep the server running.
    """


def check_runtime(web: Path = WEB) -> None:
    """Raise if LiteRT.js is not installed in web/node_modules."""
    if not (web / RUNTIME / "core" / "wasm").is_dir():
        raise TfcharError(f"{web / 'node_modules'} has no LiteRT.js: run npm ci --prefix web")


def resolve_model(path=None) -> Path | None:
    """The .tflite file to serve for MODEL (an export dir or a .tflite file); None if the default is absent."""
    if path is None:  # the default export, from the current dir or else from the repository's
        found = [p / "model.tflite" for p in DEFAULT_MODELS if (p / "model.tflite").is_file()]
        return found[0].resolve() if found else None
    p = Path(path)
    if p.is_dir():
        p = p / "model.tflite"
    if p.is_file() and p.suffix == ".tflite":
        return p.resolve()
    raise CheckpointError(f"{path} is not an export dir with model.tflite nor a .tflite file: "
                          f"export one with python -m tfchar.export RUN_DIR --out DIR")


def safe_join(root: Path, rel: str) -> Path:
    """root/rel, refusing a target that resolves outside root (a symlink pointing elsewhere)."""
    root = root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise Refused(rel)
    return target


def route(url_path: str, model: Path | None, web: Path = WEB) -> Path | None:
    """The file for a request path, or None (404). Raises Refused for paths that try to escape."""
    path = unquote(urlsplit(url_path).path)
    rel = path[1:]
    parts = rel.split("/")
    if not path.startswith("/") or rel.startswith("/") or "\\" in rel or "\x00" in rel \
            or any(p in ("..", ".") or ":" in p for p in parts):
        raise Refused(path)  # "..", "//etc/passwd", "C:\\...", "%2e%2e": never a file of the demo
    if rel in ("", "index.html"):
        return web / "index.html"
    if rel == "model/model.tflite":
        return model
    if rel == "model/vocab.json":
        return model.parent / "vocab.json" if model else None
    if rel.startswith(RUNTIME + "/"):
        return safe_join(web / RUNTIME, rel[len(RUNTIME) + 1:])
    if len(parts) > 1 or rel.startswith(".") or Path(rel).suffix not in PAGE_SUFFIXES:
        return None  # only the page's own top-level files: not package.json, the test driver, ...
    return safe_join(web, rel)


class Handler(SimpleHTTPRequestHandler):
    """GET/HEAD of the routed files only; quiet unless something goes wrong."""

    model: Path | None = None
    web: Path = WEB

    def send_head(self):
        try:
            path = route(self.path, self.model, self.web)
        except Refused:
            self.send_error(HTTPStatus.FORBIDDEN, "path outside the demo")
            return None
        if path is None or not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        f = open(path, "rb")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", MIME.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Cache-Control", "no-store")  # a re-exported model must not be served stale
        self.end_headers()
        return f

    def log_request(self, code="-", size="-"):
        pass  # quiet: errors still print through log_error


class DemoServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a closed tab mid-download is no error
            super().handle_error(request, client_address)


def make_server(model: Path | None, host: str = "127.0.0.1", port: int = 8000, web: Path = WEB) -> DemoServer:
    """A threaded HTTP server for the demo (port 0 = any free port; read server.server_address)."""
    check_runtime(web)
    handler = type("DemoHandler", (Handler,), {"model": model, "web": web})
    try:
        return DemoServer((host, port), handler)
    except OSError as e:
        raise TfcharError(f"cannot listen on {host}:{port} ({e.strerror or e}): "
                          f"choose another --port or --host") from None


def stop_on_signals() -> None:
    """Make SIGINT (Ctrl-C) and SIGTERM (kill, schedulers) raise Stopped in the main thread.

    Installed even if SIGINT was ignored at launch: a non-interactive shell starts a background job
    (`cmd &` in a script or CI runner) with SIGINT ignored, and Python then never raises KeyboardInterrupt,
    so the demo would not stop on the SIGINT its banner promises ("Ctrl-C to stop").
    """
    for s in STOP_SIGNALS:
        signal.signal(s, _raise_stopped)


def _raise_stopped(signum, frame):
    """Signal handler: raise Stopped once; a second signal during the clean-up acts as by default (ends the process)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    raise Stopped(signal.Signals(signum).name)
