"""A loopback HTTP proxy in front of a real S3 server that fails every n-th read of a prefix: the transient
faults (503 Slow Down, connection reset) that object storage gives at archive scale."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlparse

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class Faults:
    """What the proxy did: requests forwarded and failed, by kind."""

    reads: int = 0
    failed: dict[str, int] = field(default_factory=lambda: {"503": 0, "reset": 0})


class FlakyProxy:
    """Forwards everything to `target`; every `every`-th GET under `/{prefix}` starts a run of `burst` failed
    GETs, alternately a 503 and a connection reset (`kinds`). A context manager; `endpoint` is its URL."""

    def __init__(self, target: str, prefix: str, every: int, burst: int = 1,
                 kinds: tuple[str, ...] = ("503", "reset")) -> None:
        self.faults = Faults()
        self._burst, self._left = burst, 0
        self._target = urlparse(target)
        self._prefix, self._every, self._kinds = "/" + prefix.strip("/"), every, kinds
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _fault(self, method: str, path: str) -> str | None:
        if method != "GET" or not path.startswith(self._prefix):
            return None
        with self._lock:
            self.faults.reads += 1
            if self._left:
                self._left -= 1
            elif self.faults.reads % self._every == 0:
                self._left = self._burst - 1
            else:
                return None
            kind = self._kinds[sum(self.faults.failed.values()) % len(self._kinds)]
            self.faults.failed[kind] += 1
            return kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = proxy._fault(self.command, self.path)
                if kind == "reset":  # RST instead of a response, as a dropped connection gives
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if kind == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(proxy._target.hostname, proxy._target.port, timeout=60)
                upstream.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status, reply.reason)
                head = self.command == "HEAD"  # its Content-Length is the object's, with no body
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection") and (head or k.lower() != "content-length"):
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        return Handler

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
