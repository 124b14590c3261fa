"""A real HTTP server on loopback for the pull tests, in a thread: the Hugging Face Hub's download layout
(`/{repo}/resolve/{revision}/{path}`: HEAD and GET with X-Repo-Commit, ETag, Content-Length, Range), which
huggingface_hub talks to when HF_ENDPOINT points here, plus plain files (`/files/{name}`) with Range and a
redirect (`/redirect/{name}`). Faults are scripted per path (served in order, one per GET); every request is
logged so tests count downloads."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"  # the one commit every test repo has; `main` resolves to it
ENDLESS_BYTES = 256 * 2**20


class Faults:
    """Per-path scripts: "404", "500", "truncate" (half the body, then the connection closes), "html",
    ("stall", n) (n bytes, then wait until `release()`), ("slow", s) (s seconds before the body), "endless" (no
    length; zeros until the client hangs up, at most ENDLESS_BYTES)."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque] = defaultdict(deque)
        self.released = threading.Event()

    def add(self, path: str, *faults) -> None:
        self.scripts[path].extend(faults)

    def next(self, path: str):
        script = self.scripts.get(path)
        return script.popleft() if script else None

    def release(self) -> None:
        self.released.set()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # clients killed or cut off on purpose
        pass


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.files: dict[str, bytes] = {}
        self.faults = Faults()
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.authorization: list[tuple[str, str | None]] = []  # (path, Authorization header) of every request
        self.sent: dict[str, int] = defaultdict(int)  # body bytes the server managed to send, per path
        self._lock = threading.Lock()
        self.httpd = _Quiet(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.faults.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> list[str | None]:
        """Range headers of every GET of `path` (None: the whole file)."""
        with self._lock:
            return [r for m, p, r in self.log if m == "GET" and p == path]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the test log stays readable
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = self.path.split("?")[0]
                with server._lock:
                    server.log.append((self.command, path, self.headers.get("Range")))
                    server.authorization.append((path, self.headers.get("Authorization")))
                if (m := re.fullmatch(r"/redirect/(.+)", path)) is not None:
                    return self._status(302, {"Location": f"/files/{m.group(1)}"})
                hub = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
                extra = {}
                if hub is not None:
                    repo = server.repos.get(hub["repo"])
                    if repo is None or hub["rev"] not in ("main", COMMIT):
                        return self._status(404, {"X-Error-Code": "RepoNotFound"})
                    extra["X-Repo-Commit"] = COMMIT
                    data = repo.get(hub["file"])
                    if data is None:
                        return self._status(404, {**extra, "X-Error-Code": "EntryNotFound"})
                else:
                    m = re.fullmatch(r"/files/(.+)", path)
                    data = server.files.get(m.group(1)) if m else None
                    if data is None:
                        return self._status(404, {})
                fault = server.faults.next(path) if body else None
                if fault in ("404", "500"):
                    return self._status(int(fault), extra)
                if fault == "endless":
                    return self._endless(path, extra)
                if fault == "html":
                    return self._send(200, {**extra, "Content-Type": "text/html"}, b"<html>quota exceeded</html>")
                extra["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                extra["Accept-Ranges"] = "bytes"
                start = 0
                if (rng := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")) is not None:
                    start = int(rng.group(1))
                    if start >= len(data):
                        return self._status(416, {**extra, "Content-Range": f"bytes */{len(data)}"})
                    extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                part = data[start:]
                status = 206 if start else 200
                headers = {**extra, "Content-Type": "application/octet-stream", "Content-Length": str(len(part))}
                if not body:
                    return self._send(status, headers, b"")
                if fault == "truncate":
                    self._send(status, headers, part[: len(part) // 2])
                    self.close_connection = True
                    return
                if isinstance(fault, tuple) and fault[0] == "stall":
                    self._send(status, headers, part[: fault[1]])
                    server.faults.released.wait(60)
                    self.close_connection = True
                    return
                if isinstance(fault, tuple) and fault[0] == "slow":
                    server.faults.released.wait(fault[1])
                self._send(status, headers, part)

            def _endless(self, path: str, headers: dict) -> None:
                self.send_response(200)
                for k, v in {**headers, "Content-Type": "application/octet-stream", "Connection": "close"}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = True
                block = bytes(1 << 16)
                try:
                    for _ in range(ENDLESS_BYTES // len(block)):
                        self.wfile.write(block)
                        with server._lock:
                            server.sent[path] += len(block)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _status(self, code: int, headers: dict) -> None:
                self._send(code, {**headers, "Content-Length": "0"}, b"")

            def _send(self, code: int, headers: dict, payload: bytes) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-body
                    self.close_connection = True

        return Handler
