"""What keeps one client from locking the door for the others: keys, slow headers, idle sockets, work limits.

- `read_api_key`: the key from `--api-key-file` or SPANQA_API_KEY ("" when neither is set).
- `Door` (ASGI): every request but the probes (/healthz, /readyz), the page and its docs (/, /docs, /openapi.json)
  and, unless asked, /metrics must carry `Authorization: Bearer KEY`, compared in constant time; and at most
  `limit_concurrency` requests are worked on at once (503 past it). Probes are never counted or refused.
- `guarded_protocol`: uvicorn's HTTP/1.1 protocol with a header deadline. uvicorn's own keep-alive timer
  stops at the first byte, so a client that sends half a request line and waits holds its socket forever;
  and its `limit_concurrency` counts such sockets, so 64 of them made every request, probes included, 503.
  Here a connection whose request line and headers are not all in within `header_timeout` seconds gets 408
  (in the error contract) and is closed; connections past `max_connections` are closed as they arrive.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path

from spanqa.errors import SpanqaError

log = logging.getLogger(__name__)
KEY_ENV = "SPANQA_API_KEY"
PROBES = frozenset({"/healthz", "/readyz"})
OPEN = PROBES | {"/", "/docs", "/openapi.json", "/favicon.ico"}  # no model data: the page asks for the key itself


def read_api_key(path: str) -> str:
    """The key clients must send: the first line of `path`, else $SPANQA_API_KEY, else "" (no key).

    Raises:
        SpanqaError: the file is missing or empty, or the key is shorter than 16 characters.
    """
    if path:
        file = Path(path)
        if not file.is_file():
            raise SpanqaError(f"--api-key-file {path}: no such file.")
        lines = file.read_text(encoding="utf-8").strip().splitlines()
        key = lines[0].strip() if lines else ""
        if not key:
            raise SpanqaError(f"--api-key-file {path}: the file is empty; put the key on its first line.")
        if file.stat().st_mode & 0o077:
            log.warning("%s can be read by other users of this machine (mode %o); chmod 600 it.", path,
                        file.stat().st_mode & 0o777)
    else:
        key = os.environ.get(KEY_ENV, "").strip()
    if key and len(key) < 16:
        raise SpanqaError(f"the API key has {len(key)} characters; use at least 16 (e.g. python -c \"import secrets; "
                          "print(secrets.token_urlsafe(32))\").")
    return key


class Door:
    """ASGI middleware: the key check and the work limit, both answering in the one error contract."""

    def __init__(self, app, key: str, limit: int, metrics_need_key: bool, error) -> None:
        self.app, self.key, self.limit, self.error = app, key.encode(), limit, error
        self.open = OPEN if metrics_need_key else OPEN | {"/metrics"}
        self.active = 0

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PROBES:
            return await self.app(scope, receive, send)
        if self.key and path not in self.open and not self._authorized(scope):
            response = self.error(401, "unauthorized", "this server needs its API key: send the header "
                                  "'Authorization: Bearer KEY'", headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        if self.active >= self.limit:
            response = self.error(503, "overloaded", f"the server is working on {self.active} requests (its limit); "
                                  "retry shortly", headers={"Retry-After": "1"}, limit="limit_concurrency",
                                  maximum=self.limit)
            return await response(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def _authorized(self, scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.key)


def guarded_protocol(header_timeout: float, max_connections: int):
    """uvicorn's h11 protocol class with the header deadline and the connection cap (see the module doc)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = json.dumps({"error": {"type": "timeout", "message": f"the request line and headers did not arrive within "
                                 f"{header_timeout:g} s", "limit": "header_timeout", "maximum": header_timeout}})
    late = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n{body}").encode()

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._deadline = None
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(late)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the request line and headers are in: the body has its own deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request on this connection gets the same deadline

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol
