"""A deadline for the whole request body, for gunicorn's threaded worker.

gunicorn's ``timeout`` is a heartbeat: under the gthread worker the main loop keeps beating while a thread waits
for a client that sends one byte a second, so nothing there ends a slow upload. This WSGI wrapper gives each read
of the body a socket timeout of what is left of ``PLD_REQUEST_BODY_SECONDS``; past it the read fails, Django turns
that into ``UnreadablePostError`` (a CSRF refusal on a form, a 408 on the API) and the thread is free again.
Outside gunicorn (no ``gunicorn.socket`` in the environ) it changes nothing: the server in front must bound it.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any


class _DeadlineInput:
    def __init__(self, stream: Any, sock: socket.socket, deadline: float) -> None:
        self._stream = stream
        self._sock = sock
        self._deadline = deadline

    def _call(self, method: Callable[..., bytes], *args: Any) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request body did not arrive in time")
        previous = self._sock.gettimeout()
        self._sock.settimeout(remaining)
        try:
            return method(*args)
        finally:
            # The response is written on the same socket: it must not inherit a nearly spent timeout.
            self._sock.settimeout(previous)

    def read(self, *args: Any) -> bytes:
        return self._call(self._stream.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._call(self._stream.readline, *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._stream.readlines(*args)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class BodyDeadline:
    """Wrap a WSGI application so a request body must arrive within ``seconds`` in all (under gunicorn)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if sock is not None and environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], sock, time.monotonic() + self.seconds)
        return self.app(environ, start_response)
