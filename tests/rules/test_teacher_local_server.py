"""The embedded local teacher: started when no endpoint is configured, reused when already running."""
from __future__ import annotations

import pytest
from django.test import override_settings

from rules.local_teacher import LocalTeacher, free_port, is_answering, teacher_available
from rules.teacher import TeacherConfig, TeacherError


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
