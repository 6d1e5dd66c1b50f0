"""gunicorn's threaded worker, closing a finished connection in its own thread instead of on the main loop.

gunicorn (27) closes a connection "gracefully" from its main loop: it half-closes and waits up to 2 s for the
client to close too. A client that never closes (the slow clients of docs/security.md) thus stalls the loop
that accepts every other connection for 2 s each; five of them kept /login/ from answering for over 10 s.
Here the same graceful close runs in the worker thread that served the request, so the main loop never waits.
"""
from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker


class ThreadWorker(_ThreadWorker):
    """The gthread worker, with the closing wait moved off the main loop."""

    def handle(self, conn: Any) -> Any:
        result = super().handle(conn)
        if result is False:
            # The main loop's own close then finds the socket closed and returns at once.
            conn.close(graceful=True)
        return result
