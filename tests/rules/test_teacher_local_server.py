"""The embedded local teacher: started when no endpoint is configured, reused when already running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings

from rules.teacher.client import TeacherConfig, TeacherError
from rules.teacher.local import LocalTeacher, free_port, is_answering, teacher_available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_it_starts_the_local_teacher_when_none_is_configured_and_stops_it_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    # A PORT meant for the web app (scripts/demo, PaaS hosts) must not move the teacher: llama_cpp.server reads it.
    monkeypatch.setenv("PORT", str(free_port()))
    with override_settings(PLD_LOCAL_TEACHER_PORT=port):
        with teacher_available(TeacherConfig(base_url="", model="gemma-3-270m-q4_k_m")) as config:
            assert config.base_url == f"http://127.0.0.1:{port}/v1"
            assert config.concurrency == 1
            assert is_answering(config.base_url)
        assert not is_answering(config.base_url)


@pytest.mark.slow
def test_it_reuses_a_local_teacher_that_already_answers(local_teacher: LocalTeacher) -> None:
    with override_settings(PLD_LOCAL_TEACHER_PORT=local_teacher.port):
        with teacher_available(TeacherConfig(base_url="", model="gemma-3-270m-q4_k_m")) as config:
            assert config.base_url == local_teacher.base_url
    assert is_answering(local_teacher.base_url)


@pytest.mark.slow
def test_it_refuses_to_start_a_second_server_on_a_busy_port(local_teacher: LocalTeacher) -> None:
    with pytest.raises(TeacherError, match="already answers"):
        LocalTeacher(port=local_teacher.port).start()


def test_a_configured_endpoint_is_used_as_it_is() -> None:
    config = TeacherConfig(base_url="http://127.0.0.1:9/v1", model="m")
    with teacher_available(config) as ready:
        assert ready is config


@pytest.mark.slow
def test_teacher_server_stops_its_server_on_sigterm() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    command = subprocess.Popen(
        [sys.executable, "manage.py", "teacher_server", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not is_answering(base_url) and time.monotonic() < deadline:
            assert command.poll() is None, "teacher_server exited before the teacher answered"
            time.sleep(0.5)
        assert is_answering(base_url)
        # What a supervisor sends; by default it would kill the command and orphan llama_cpp.server.
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=30) == 0
        assert not is_answering(base_url)
    finally:
        if command.poll() is None:
            command.kill()
        # Never leave a server behind, whatever failed above.
        subprocess.run(["pkill", "-f", f"llama_cpp.server.*--port {port}"], check=False)
