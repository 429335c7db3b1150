"""A scripted OpenAI-compatible HTTP server for tests: the JSON replies, the port, the shutdown.

    class Prose(JsonHandler):
        def do_POST(self):
            self.send_json({"choices": [{"message": {"role": "assistant", "content": "..."}}]})

    with serving(Prose) as url:   # http://127.0.0.1:<free port>
        ...
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps pytest's output clean."""

    def log_message(self, *args):
        pass

    def read_json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
