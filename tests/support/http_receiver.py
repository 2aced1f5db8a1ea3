"""A real HTTP receiver on 127.0.0.1 for the http_sink tests: it accepts JSON envelopes and, on command, fails
(503 or any status, with a ``Retry-After``), answers slowly, refuses chosen messages with a 400, and recovers.

    with HttpReceiver() as receiver:
        receiver.fail(503, retry_after=1)   # every request answered 503 until recover()
        receiver.reject(lambda e: e["value"]["seq"] == 7)   # a request holding that message: 400
        receiver.recover()
        receiver.accepted()                 # the envelopes of every request answered 200, in arrival order
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up (the slow mode) is expected here, not a failure


class HttpReceiver:
    def __init__(self, path: str = "/ingest"):
        self.path = path
        self._lock = threading.Lock()
        self._failing: tuple[int, str | None] | None = None
        self._delay = 0.0
        self._reject = None
        self._accepted: list[dict] = []
        self._rejected: dict[tuple, dict] = {}  # (topic, partition, offset) -> the envelope answered 400 alone
        self.requests: list[dict] = []  # every request: time, method, path, status, messages, headers
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    # ------------------------------------------------------------------ commands
    def fail(self, status: int = 503, *, retry_after: str | int | None = None) -> None:
        with self._lock:
            self._failing = (status, None if retry_after is None else str(retry_after))

    def slow(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def reject(self, predicate) -> None:
        """Answer 400 to every request holding a message for which ``predicate(envelope)`` is true."""
        with self._lock:
            self._reject = predicate

    def recover(self) -> None:
        """Stop failing and answering slowly (rejections stay: they are about the data)."""
        with self._lock:
            self._failing, self._delay = None, 0.0

    # ------------------------------------------------------------------ observations
    def accepted(self) -> list[dict]:
        with self._lock:
            return list(self._accepted)

    def rejected(self) -> list[dict]:
        """Each message a request held alone when it was answered 400 (what a sink ends up isolating)."""
        with self._lock:
            return list(self._rejected.values())

    def answered(self, status: int) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["status"] == status]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the server
    def _answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._lock:
            failing, delay, reject = self._failing, self._delay, self._reject
        if delay:
            time.sleep(delay)  # the receiver's behaviour under test (slow), not a test waiting for a state
        messages: list[dict] = []
        status, extra, text = 200, {}, b"ok"
        if failing is not None:
            status, text = failing[0], b"unavailable"
            if failing[1] is not None:
                extra["Retry-After"] = failing[1]
        elif method in ("POST", "PUT"):
            try:
                parsed = json.loads(body)
                messages = parsed if isinstance(parsed, list) else [parsed]
            except ValueError:
                status, text = 400, b"not JSON"
            if status == 200 and reject is not None:
                refused = [m for m in messages if reject(m)]
                if refused:
                    status = 400
                    # echoes a request header: the sink must keep it out of its error text
                    text = (f"refused offsets {[m['offset'] for m in refused]}; "
                            f"auth={headers.get('Authorization', '')}").encode()
        with self._lock:
            self.requests.append({"time": time.monotonic(), "method": method, "path": path, "status": status,
                                  "messages": len(messages), "headers": headers})
            if status == 200:
                self._accepted.extend(messages)
            elif status == 400 and len(messages) == 1:
                m = messages[0]
                self._rejected[(m["topic"], m["partition"], m["offset"])] = m
        return status, extra, text

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the sink's Session expects

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, extra, text = receiver._answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(text)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(text)

            do_POST = do_PUT = do_HEAD = _serve

            def log_message(self, *args):
                pass

        return Handler
