"""Fake HTTP peers: tiny real HTTP servers on loopback that speak a provider's wire format."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A handler may add response headers as a fourth item (a redirect's Location).
Handler = Callable[[str, dict[str, Any]], tuple[Any, ...]]


@contextmanager
def fake_peer(
    handler: Handler, *, keep_alive: bool = False
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve `handler(path, json_body) -> (status, chunks, content_type[, headers])` for POST and
    GET (body {}); yield (base URL, requests seen). `keep_alive` speaks HTTP/1.1 and keeps the
    connection open after each response (its body sent whole, with its length), as real model
    servers do; otherwise HTTP/1.0, one connection per request, each chunk as it comes."""
    seen: list[dict[str, Any]] = []

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:  # e.g. OTLP's protobuf: the handler reads `raw` from `seen`
                body = {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append(
                {"method": method, "path": self.path, "body": body, "raw": raw, "headers": headers}
            )
            status, chunks, content_type, *extra = handler(self.path, body)
            if keep_alive:
                chunks = [b"".join(chunks)]
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if keep_alive:
                self.send_header("Content-Length", str(len(chunks[0])))
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.end_headers()
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # a client may stop reading early
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class _Server(ThreadingHTTPServer):
        # Tests ask many answers at once: a backlog of 5 (the default) made the kernel drop
        # connection attempts and the client wait a second to retry.
        request_queue_size = 128
        daemon_threads = True

    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> list[bytes]:
    out = []
    for event, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        prefix = f"event: {event}\n" if event else ""
        out.append(f"{prefix}data: {payload}\n\n".encode())
    return out
