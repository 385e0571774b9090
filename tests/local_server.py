"""A threaded HTTP server on 127.0.0.1 (an OS-chosen port) for the duration of a `with` block."""

from __future__ import annotations

import http.server
import threading


class LocalServer:
    """Serve `handler_class` on 127.0.0.1; `base_url` is where it listens."""

    def __init__(self, handler_class: type[http.server.BaseHTTPRequestHandler]):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
