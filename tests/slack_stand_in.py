"""A stand-in for Slack's incoming webhook (Slack cannot be reached from here): a local HTTP server that keeps
every message Alertmanager posts. Not Slack: it checks nothing Slack would (tokens, channels), it only records."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackStandIn:
    """Listens on `host` (loopback, or this machine's address on the lab bridge for the lab's pods)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.messages: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                stand_in.messages.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/services/T000/B000/XXXX"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, status: str, alertname: str) -> list[dict]:
        """The message attachments for `alertname` whose title says `status` (firing or resolved)."""
        return [a for m in self.messages for a in m.get("attachments", [])
                if a.get("title", "").startswith(f"[{status.upper()}") and alertname in a.get("title", "")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
