"""The real local teacher (llama_cpp.server with the bundled model), started once per test session."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rules.teacher.local import LocalTeacher, free_port


@pytest.fixture(scope="session")
def local_teacher() -> Iterator[LocalTeacher]:
    """Serve the bundled model on a free loopback port for the whole session; stop it at the end."""
    server = LocalTeacher(port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def local_endpoint_settings(server: LocalTeacher) -> dict[str, Any]:
    """Return the settings of the default endpoint "local" (the app's local teacher) on the session's server port."""
    endpoints = {"local": {"base_url": "", "model": "gemma-3-270m-q4_k_m", "api_key_env": ""}}
    return {"PLD_TEACHER_ENDPOINTS": endpoints, "PLD_TEACHER_DEFAULT_ENDPOINT": "local",
            "PLD_LOCAL_TEACHER_PORT": server.port}
