"""A test double of an OpenAI-compatible chat endpoint: a real HTTP server on 127.0.0.1 in a thread.

It records every request and answers from a script of (status, body) pairs, then with a default fused caption
built from the view captions it was sent (so tests can see which captions reached it).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatEndpointDouble:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple[int, object]] = []
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with double.lock:
                    double.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, answer = double.script.pop(0) if double.script else (200, None)
                if answer is None:
                    user = body["messages"][-1]["content"]
                    answer = {"choices": [{"message": {"role": "assistant", "content": f'"fused: {user}"'}}]}
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> ChatEndpointDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
