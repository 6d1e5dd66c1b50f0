"""The embedded default teacher: ``python -m llama_cpp.server`` serving the bundled model on loopback.

Used for a teacher endpoint configured without a base URL (the default endpoint "local"). The server is a child
process; its output goes to a log file under PLD_VAR_DIR so a full pipe can never stall it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from django.conf import settings

from rules.student_model import bundled_model_path
from rules.teacher.client import TeacherConfig, TeacherError, teacher_config_from_params

logger = logging.getLogger(__name__)

# Loading the 270M GGUF takes about a second; the rest is Python start-up on a busy two-core machine.
START_TIMEOUT_SECONDS = 120.0
N_CTX = 4096


def local_base_url(port: int | None = None) -> str:
    """Return the OpenAI base URL of the local teacher on the given (or configured) port."""
    return f"http://{settings.PLD_LOCAL_TEACHER_HOST}:{port or settings.PLD_LOCAL_TEACHER_PORT}/v1"


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_answering(base_url: str, timeout: float = 2.0) -> bool:
    """Say whether an OpenAI-compatible server answers ``GET /models`` at the base URL."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalTeacher:
    """Start and stop one llama_cpp.server child process serving a GGUF on loopback."""

    def __init__(self, *, port: int | None = None, model_path: str = "", model_alias: str = "") -> None:
        self.port = port or settings.PLD_LOCAL_TEACHER_PORT
        self.model_path = model_path
        self.model_alias = model_alias or settings.PLD_TEACHER_MODEL
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(settings.VAR_DIR) / f"local-teacher-{self.port}.log"

    @property
    def base_url(self) -> str:
        return local_base_url(self.port)

    def command(self) -> list[str]:
        """Return the command line that runs the server."""
        return [
            # llama_cpp.server itself, with the model loaded without extra buffer types (rules/llama_loading.py).
            sys.executable, "-m", "rules.llama_server",
            "--model", self.model_path or str(bundled_model_path()),
            "--model_alias", self.model_alias,
            "--host", settings.PLD_LOCAL_TEACHER_HOST,
            "--port", str(self.port),
            "--n_ctx", str(N_CTX),
            # One generation thread: on two cores shared with the web app and the student, two threads
            # spin against each other (measured 93 s against 16 s for the same 51-token reply under load).
            "--n_threads", "1",
            "--verbose", "False",
            # A second request must queue behind the first, not cut it short.
            "--interrupt_requests", "False",
        ]

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> LocalTeacher:
        """Start the server and wait until it answers; raise TeacherError if it does not come up."""
        if is_answering(self.base_url):
            raise TeacherError(f"Something already answers on {self.base_url}; not starting a second server", True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # llama_cpp.server lets HOST, PORT and CONFIG_FILE from the environment override its command line
        # (a PORT meant for the web app put the teacher on the web app's port).
        env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "CONFIG_FILE")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-800:]
                raise TeacherError(f"The local teacher exited with code {self.process.returncode}: {tail}", True)
            if is_answering(self.base_url, timeout=1.0):
                logger.info("Local teacher answering on %s (pid %s)", self.base_url, self.process.pid)
                return self
            time.sleep(0.3)
        self.stop()
        raise TeacherError(f"The local teacher did not answer on {self.base_url} within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop the server: ask politely, then insist."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def wait(self) -> int:
        """Block until the server exits and return its exit code."""
        assert self.process is not None
        return self.process.wait()


@contextlib.contextmanager
def teacher_available(config: TeacherConfig) -> Iterator[TeacherConfig]:
    """Yield a config with a reachable endpoint, starting (and afterwards stopping) the local teacher if needed."""
    if config.base_url:
        yield config
        return
    url = local_base_url()
    if is_answering(url):
        yield config.on_local_teacher(url)
        return
    server = LocalTeacher(model_alias=config.model).start()
    try:
        yield config.on_local_teacher(server.base_url)
    finally:
        server.stop()


def teacher_for_params(
    params: dict[str, Any], *, all_answered: Callable[[TeacherConfig], bool]
) -> AbstractContextManager[TeacherConfig]:
    """Return the teacher a job's params name, as a context that starts the local teacher only if it is needed.

    ``all_answered(config)`` says whether the call log already answers everything the job would ask that
    teacher; then the local teacher is not started (its config is still pointed at it, for the log's keys).
    """
    base = teacher_config_from_params(params)
    if not base.base_url and all_answered(base):
        return nullcontext(base.on_local_teacher(local_base_url()))
    return teacher_available(base)
