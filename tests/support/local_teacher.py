"""The real local teacher (llama_cpp.server with the bundled model), started once per test session."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from rules.local_teacher import LocalTeacher, free_port


@pytest.fixture(scope="session")
def local_teacher() -> Iterator[LocalTeacher]:
    """Serve the bundled model on a free loopback port for the whole session; stop it at the end."""
    server = LocalTeacher(port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()
