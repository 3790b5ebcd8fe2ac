"""`python -m tfchar.demo [MODEL] [--port N]`: generate text in a web page with the exported TFLite model.

The page runs the model in the browser with LiteRT.js (WebAssembly, XNNPack): no Python or TensorFlow
is involved once it is loaded. This command only serves files, on the loopback interface by default.

Example:
    npm ci --prefix web                                  # once: LiteRT.js into web/node_modules
    python -m tfchar.demo saved_models/tiny_shakespeare  # then open the printed URL

Ctrl-C (SIGINT) or SIGTERM stops it: it prints "stopped" and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from tfchar.cli import Parser, guard


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("demo", __doc__)
    p.add_argument("model", nargs="?", default=argparse.SUPPRESS,  # absent: the default export, if it exists
                   help="export dir (its model.tflite) or a .tflite file (default: saved_models/tiny_shakespeare)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    return p.parse_args(argv)


@guard(tensorflow=False)
def main(argv=None) -> int:
    a = parse_args(argv)
    from tfchar import webdemo

    model = webdemo.resolve_model(getattr(a, "model", None))
    server = webdemo.make_server(model, a.host, a.port)
    host, port = server.server_address[:2]
    if model is None:
        print(f"no model at {webdemo.DEFAULT_MODEL}: pick a .tflite file on the page, "
              f"or pass MODEL (python -m tfchar.demo EXPORT_DIR)", flush=True)
    else:
        print(f"model: {model}", flush=True)
    host = f"[{host}]" if ":" in host else host  # IPv6 literal in a URL
    try:
        webdemo.stop_on_signals()  # before the URL is printed: whoever reads it can stop the demo (SIGINT, SIGTERM)
        print(f"demo: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
        server.serve_forever()
    except webdemo.Stopped:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
