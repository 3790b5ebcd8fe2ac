"""Serve the in-browser demo (web/): the page, LiteRT.js from web/node_modules, and one exported model.

URL layout (the page needs nothing else, and nothing from the internet):
    /                       web/index.html; other web/ files by name (app.js, style.css, ...)
    /node_modules/@litertjs/...   the LiteRT.js runtime and its WebAssembly files (npm ci --prefix web)
    /model/model.tflite     the model being demoed (whatever its file name), /model/vocab.json beside it

Only those files are served, to GET and HEAD: a path with `..` (plain or percent-encoded), a NUL byte, an
absolute, absolute-form (http://host/...) or drive path, or a symlink leading out of its root is refused
(403); anything else is 404. Other methods get 405; a request line that is not `METHOD PATH HTTP/1.x`
(1.0 or 1.1) gets 400, a path over 8 KB 414, too many or too long headers 431; a client silent for
IDLE_TIMEOUT seconds is disconnected. Each refusal is one line on stderr (client, time, method, path,
status, reason); a served file logs nothing, and no traceback is ever printed. SIGINT and SIGTERM stop
the server at once (stop_on_signals). Standard library only; loopback by default.

Example:
    server = make_server(resolve_model("saved_models/tiny_shakespeare"), port=8000)
    stop_on_signals()          # SIGINT and SIGTERM raise Stopped
    server.serve_forever()
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tfchar.core.errors import CheckpointError, TfcharError
from tfchar.core.shipped import model_names, model_path, shipped

WEB = shipped("web")  # the checkout's web/, or the installed wheel's copy (tfchar/_shipped/web)
RUNTIME = "node_modules/@litertjs"  # the only part of node_modules the page loads
DEFAULT_MODEL = Path("saved_models/tiny_shakespeare")
DEFAULT_MODELS = [DEFAULT_MODEL, shipped(DEFAULT_MODEL)]
PAGE_SUFFIXES = (".html", ".js", ".css", ".png", ".svg", ".ico")
MIME = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
        ".json": "application/json; charset=utf-8", ".map": "application/json; charset=utf-8",
        ".wasm": "application/wasm", ".tflite": "application/octet-stream", ".png": "image/png",
        ".svg": "image/svg+xml", ".ico": "image/x-icon", ".md": "text/plain; charset=utf-8"}
METHODS = ("GET", "HEAD")
HTTP_VERSIONS = ("HTTP/1.0", "HTTP/1.1")
MAX_TARGET = 8192  # characters in a request path (the page's longest is ~70)
IDLE_TIMEOUT = 10.0  # seconds a client may stay silent (or stop reading) before it is disconnected
LINGER = 2.0  # seconds spent draining what a client still sends after its reply, so the reply is not reset
LOGGED = 120  # characters of a client-supplied string (path, method, reason) shown in a log line
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
        raise TfcharError(f"{web / 'node_modules'} has no LiteRT.js: run npm ci --prefix {npm_prefix(web)}")


def npm_prefix(web: Path) -> str:
    """How to name `web` in the npm command: `web` from the checkout's root, else its full path."""
    try:
        return str(Path(web).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(web)


def resolve_model(path=None) -> Path | None:
    """The .tflite file to serve for MODEL (an export dir or a .tflite file); None if the default is absent."""
    if path is None:  # the default export, from the current dir or else from the repository's
        found = [p / "model.tflite" for p in DEFAULT_MODELS if (p / "model.tflite").is_file()]
        return found[0].resolve() if found else None
    p = Path(path)
    if not p.exists() and str(path) in model_names():  # a shipped model's name
        p = model_path(path)
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
    if not url_path.startswith("/") or url_path.startswith("//"):
        raise Refused(url_path)  # "http://host/..." (absolute-form), "//etc/passwd": only the demo's own paths
    path = unquote(urlsplit(url_path).path)
    rel = path[1:]
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or "\x00" in rel or any(p in ("..", ".") or ":" in p for p in parts):
        raise Refused(path)  # "..", "/%2e%2e/", "C:\\...", a NUL byte: never a file of the demo
    if rel in ("", "index.html"):
        return web / "index.html"
    if rel == "model/model.tflite":
        return model
    if rel == "model/vocab.json":
        return safe_join(model.parent, "vocab.json") if model else None
    if rel.startswith(RUNTIME + "/"):
        return safe_join(web / RUNTIME, rel[len(RUNTIME) + 1:])
    if len(parts) > 1 or rel.startswith(".") or Path(rel).suffix not in PAGE_SUFFIXES:
        return None  # only the page's own top-level files: not package.json, the test driver, ...
    return safe_join(web, rel)


def shorten(text: str, limit: int = LOGGED) -> str:
    """Client-supplied text fit for one log line: all but printable ASCII escaped, cut to `limit` characters."""
    text = "".join(c if c.isascii() and c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def log_line(text: str) -> None:
    """Write one line on stderr (one write: concurrent handlers' lines do not interleave)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Handler(SimpleHTTPRequestHandler):
    """GET/HEAD of the routed files only; every refusal is one log line; quiet otherwise."""

    model: Path | None = None
    web: Path = WEB
    timeout = IDLE_TIMEOUT  # applied to the connection: a silent client cannot hold its thread forever
    default_request_version = "HTTP/1.0"  # so even a reply to an unparsable request line has a status line

    def request_words(self) -> list[str]:
        """The request line's words as the client sent them (empty if it sent none)."""
        return str(getattr(self, "raw_requestline", b""), "iso-8859-1").split()

    def parse_request(self) -> bool:
        """The base class's parsing (version, headers) within this server's rules; False once refused."""
        self.command, self.request_version = None, self.default_request_version  # as the base class starts
        words = self.request_words()
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, "request line is not METHOD PATH HTTP/1.x")
            return False
        if words[2] not in HTTP_VERSIONS:
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP version is not HTTP/1.0 or HTTP/1.1")
            return False
        if not super().parse_request():
            return False
        if self.command not in METHODS:
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD")
            return False
        if len(words[1]) > MAX_TARGET:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, f"path over {MAX_TARGET} characters")
            return False
        return True

    def send_head(self):
        """Send the headers of the routed file and return it open (do_GET copies it), or refuse and return None."""
        try:
            path = route(self.request_words()[1], self.model, self.web)
            f = open(path, "rb") if path is not None and path.is_file() else None
        except Refused:
            self.send_error(HTTPStatus.FORBIDDEN, "path outside the demo")
            return None
        except (OSError, RuntimeError):  # a name too long for the file system, a symlink loop, no permission
            f = None
        if f is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", MIME.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.send_header("Cache-Control", "no-store")  # a re-exported model must not be served stale
        self.end_headers()
        return f

    def send_error(self, code, message=None, explain=None):
        """Refuse the request: one log line, a short plain-text reply (none of the request echoed), close."""
        status = HTTPStatus(code)
        self.log_refusal(str(status.value), message or status.phrase)
        body = f"{status.value} {status.phrase}\n".encode("ascii")
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(METHODS))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_refusal(self, status: str, reason: str) -> None:
        """The one log line of a refused request: method, path (shortened), status, reason."""
        words = self.request_words() + ["-", "-"]
        log_line(f"{self.client_address[0]} [{self.log_date_time_string()}] "
                 f"{shorten(words[0], 20)} {shorten(words[1])} {status} {shorten(reason)}")

    def log_error(self, format, *args):
        """What the base class still reports (a client silent past the timeout): one line, connection closed."""
        self.log_refusal("closed", format % args)

    def log_request(self, code="-", size="-"):
        """A served file logs nothing."""


class DemoServer(ThreadingHTTPServer):
    """Threaded server: a burst of connections is queued, stopping never waits for a client, errors are one line."""

    request_queue_size = 256  # socketserver's default (5) drops connections in a burst of page loads
    daemon_threads = True
    block_on_close = False  # server_close() does not join handler threads: a stalled client cannot delay a stop

    def shutdown_request(self, request):
        """Close a connection without losing its reply: stop sending, drain what the client still sends, close.

        Closing with unread input (the body of a refused upload, the rest of a 100 KB line) makes the kernel
        reset the connection, which can destroy the reply before the client reads it.
        """
        try:
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while (left := deadline - time.monotonic()) > 0:
                request.settimeout(left)
                if not request.recv(65536):
                    break
        except OSError:
            pass  # reset by the client, or the linger time is up
        self.close_request(request)

    def handle_error(self, request, client_address):
        """An exception in a handler: one line on stderr, no traceback; the server carries on."""
        e = sys.exc_info()[1]
        if not isinstance(e, ConnectionError):  # a closed tab mid-download is no error
            log_line(f"{client_address[0]} error {type(e).__name__}: {shorten(str(e))}")


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
