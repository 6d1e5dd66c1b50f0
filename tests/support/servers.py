"""Real HTTP servers on loopback for tests: a handler class served from a daemon thread."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve_in_thread(
    handler_class: type[BaseHTTPRequestHandler], *, port: int = 0
) -> Iterator[ThreadingHTTPServer]:
    """Serve the handler on 127.0.0.1 (a free port unless given) from a daemon thread; stop and close it after."""
    # A given port restarts a server where it was, as an operator restarts an endpoint at its address
    # (HTTPServer sets SO_REUSEADDR, so the old socket's TIME_WAIT does not block it).
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_class)
    # A request still hanging on purpose (a test's slow server) must not keep the test process alive.
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        # shutdown() returns at once when serve_forever has already stopped (a server told to die mid-test).
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def server_url(server: ThreadingHTTPServer, path: str = "/") -> str:
    """Return the URL of a path on a loopback server."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"
