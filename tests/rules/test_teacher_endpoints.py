"""Teacher endpoints are configuration: named by operators, chosen by name, each key sent only to its own endpoint.

Two real HTTP servers on loopback stand for two endpoints; each records the Authorization header it got.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from evaluation.models import EvaluationRun
from pldreview.env import teacher_endpoints_checked
from pldreview.jobs import job_create, job_execute
from pldreview.models import Job
from rules.models import MicroRule, Task, TeacherCall
from rules.teacher.client import Teacher, TeacherConfig, TeacherError, TeacherRequest, teacher_request_hash
from rules.teacher.extraction import micro_rules_extract
from tests.support.factories import make_examples
from tests.support.fake_teacher import FakeTeacher, fake_endpoints

FIRST_KEY = "sk-first-endpoint-secret"
SECOND_KEY = "sk-second-endpoint-secret"


@pytest.fixture
def two_teachers(monkeypatch):
    """Serve two fake endpoints, "first" (key in PLD_TEST_FIRST_KEY) and "second" (its own key)."""
    monkeypatch.setenv("PLD_TEST_FIRST_KEY", FIRST_KEY)
    monkeypatch.setenv("PLD_TEST_SECOND_KEY", SECOND_KEY)
    with FakeTeacher() as first, FakeTeacher() as second:
        keys = {"first": "PLD_TEST_FIRST_KEY", "second": "PLD_TEST_SECOND_KEY"}
        with override_settings(**fake_endpoints(("first", first), ("second", second), api_key_env=keys)):
            yield first, second


def _request() -> TeacherRequest:
    schema = {"type": "object", "properties": {"rule": {"type": "string", "minLength": 1}}, "required": ["rule"]}
    return TeacherRequest(purpose="extract", messages=[{"role": "user", "content": "one question"}], schema=schema)


@pytest.mark.django_db
def test_each_key_goes_to_its_own_endpoint_and_no_answer_crosses_endpoints(two_teachers) -> None:
    first, second = two_teachers
    Teacher(TeacherConfig.from_endpoint("first")).ask(_request())
    answer = Teacher(TeacherConfig.from_endpoint("second")).ask(_request())
    # The same question to the second endpoint is asked there, not answered from the first one's reply.
    assert (len(first.requests), len(second.requests)) == (1, 1)
    assert not answer.cached
    assert first.authorizations == [f"Bearer {FIRST_KEY}"]
    assert second.authorizations == [f"Bearer {SECOND_KEY}"]
    calls = {call.endpoint_name: call for call in TeacherCall.objects.all()}
    assert set(calls) == {"first", "second"}
    assert calls["second"].base_url == second.base_url and calls["first"].base_url == first.base_url
    assert calls["first"].request_hash != calls["second"].request_hash
    # Asking the first endpoint again is answered from its own stored call.
    again = Teacher(TeacherConfig.from_endpoint("first")).ask(_request())
    assert again.cached and again.call == calls["first"] and len(first.requests) == 1


@pytest.mark.django_db
def test_a_job_naming_an_endpoint_records_it_on_every_micro_rule(task: Task, two_teachers) -> None:
    first, second = two_teachers
    make_examples(task, 2)
    job = job_execute(job_create(kind="extract", title="x", params={"task": task.name,
                                                                              "endpoint": "second"}).pk)
    assert job.state == Job.State.SUCCEEDED, job.error
    assert not first.requests and len(second.requests) == 2
    assert set(second.authorizations) == {f"Bearer {SECOND_KEY}"}
    micro = list(MicroRule.objects.all())
    assert {(m.teacher_endpoint_name, m.teacher_endpoint, m.teacher_model) for m in micro} == {
        ("second", second.base_url, "fake-teacher")
    }
    assert {m.teacher_call.endpoint_name for m in micro} == {"second"}


@pytest.mark.django_db
def test_a_micro_rule_records_the_endpoint_whose_stored_answer_it_came_from(task: Task, two_teachers) -> None:
    first, _ = two_teachers
    make_examples(task, 1)
    config = TeacherConfig.from_endpoint("first")
    micro_rules_extract(task=task, config=config)
    MicroRule.objects.all().delete()  # the answer stays in the call log; the micro-rule is rebuilt from it
    summary = micro_rules_extract(task=task, config=config)
    assert (summary.cached_calls, len(first.requests)) == (1, 1)
    assert MicroRule.objects.get().teacher_endpoint_name == "first"


def test_run_settings_cannot_change_an_endpoint_or_its_key() -> None:
    config = TeacherConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key="k", endpoint_name="first")
    for field in ("base_url", "api_key", "model", "endpoint_name"):
        with pytest.raises(ValueError, match="belong to the teacher endpoint"):
            config.with_overrides(**{field: "http://attacker.example/v1"})
    with pytest.raises(ValueError, match="not the local teacher"):
        config.on_local_teacher("http://attacker.example/v1")
    local = TeacherConfig(base_url="", model="m", api_key="k", endpoint_name="local").on_local_teacher(
        "http://127.0.0.1:8077/v1")
    assert local.api_key != "k"  # the local teacher never receives a configured key


def test_an_unknown_endpoint_or_a_missing_key_is_a_clear_error(monkeypatch) -> None:
    endpoints = {"remote": {"base_url": "https://teacher.example/v1", "model": "m", "api_key_env": "PLD_TEST_NO_KEY"}}
    monkeypatch.delenv("PLD_TEST_NO_KEY", raising=False)
    with override_settings(PLD_TEACHER_ENDPOINTS=endpoints, PLD_TEACHER_DEFAULT_ENDPOINT="remote"):
        with pytest.raises(TeacherError, match="No teacher endpoint named 'http://evil'"):
            TeacherConfig.from_endpoint("http://evil")
        with pytest.raises(TeacherError, match=r"reads its key from \$PLD_TEST_NO_KEY, which is not set"):
            TeacherConfig.from_endpoint("remote")


# --- no form takes a URL ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/tasks/nda-demo/teacher/extract/", "/tasks/nda-demo/teacher/cluster/"])
def test_teacher_forms_offer_endpoint_names_and_refuse_a_url(task: Task, admin_user, url: str, two_teachers) -> None:
    client = Client()
    client.force_login(admin_user)
    make_examples(task, 2)
    page = client.get("/tasks/nda-demo/teacher/").content.decode()
    assert '<option value="first"' in page and '<option value="second"' in page
    assert 'name="base_url"' not in page and 'type="url"' not in page
    response = client.post(url, {"endpoint": "http://attacker.example/v1"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_typed_base_url_is_ignored_not_obeyed(task: Task, admin_user, two_teachers,
                                                django_capture_on_commit_callbacks) -> None:
    client = Client()
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/tasks/nda-demo/teacher/extract/", {"endpoint": "first", "base_url": "http://attacker.example/v1",
                                                         "model": "x"})
    assert Job.objects.get().params == {"task": "nda-demo", "split": "train", "endpoint": "first"}


@pytest.mark.django_db
def test_the_refine_form_offers_names_and_refuses_a_url(task: Task, admin_user, two_teachers) -> None:
    run = EvaluationRun.objects.create(task=task, mode="zero-shot", split="train", model_path="m.gguf",
                                       status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/evaluations/{run.pk}/refine/").content.decode()
    assert '<option value="second"' in page and 'name="base_url"' not in page
    response = client.post(f"/evaluations/{run.pk}/refine/start/",
                           {"max_groups": 2, "dev_limit": 5, "endpoint": "http://attacker.example/v1"})
    assert response.status_code == 400 and not Job.objects.exists()


@pytest.mark.django_db
def test_commands_take_an_endpoint_name_not_a_url(task: Task, two_teachers) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("extract_rules", "--task", task.name, "--endpoint", "http://attacker.example/v1")
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("extract_rules", "--task", task.name, "--base-url", "http://attacker.example/v1")


# --- settings fail loudly -----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ({"Bad Name": {"model": "m"}}, "a name is 1-50 lowercase"),
    ({"x": {"base_url": "ftp://h/v1", "model": "m"}}, "is not an http(s) URL"),
    ({"x": {"base_url": "https://user:pw@h/v1", "model": "m"}}, "no credentials"),
    ({"x": {"base_url": "https://h/v1"}}, "model is required"),
    ({"x": {"model": "m", "api_key": "sk-secret"}}, "unknown keys ['api_key']"),
    ({"x": {"model": "m", "api_key_env": "not a name"}}, "is not an environment variable name"),
    ([], "must be a JSON object"),
])
def test_bad_endpoint_settings_are_refused(spec, message) -> None:
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        teacher_endpoints_checked("PLD_TEACHER_ENDPOINTS", spec)


def _check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "LANG": "C.UTF-8",
            "DJANGO_DEBUG": "1", "PLD_VAR_DIR": str(tmp_path / "var")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=Path(settings.BASE_DIR), capture_output=True, text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "pldreview.settings", **env}, timeout=120,
    )


def test_the_process_refuses_to_start_with_bad_endpoint_settings(tmp_path) -> None:
    result = _check({"PLD_TEACHER_ENDPOINTS": "{not json"}, tmp_path)
    assert result.returncode != 0 and "PLD_TEACHER_ENDPOINTS is not valid JSON" in result.stderr
    result = _check({"PLD_TEACHER_ENDPOINTS": '{"a": {"model": "m"}}', "PLD_TEACHER_DEFAULT_ENDPOINT": "b"}, tmp_path)
    assert result.returncode != 0 and "PLD_TEACHER_DEFAULT_ENDPOINT='b' is not one of" in result.stderr
    result = _check({"PLD_TEACHER_ENDPOINTS": '{"a": {"model": "m"}}', "PLD_TEACHER_BASE_URL": "http://h/v1"},
                    tmp_path)
    assert result.returncode != 0 and "not both" in result.stderr


def test_the_single_endpoint_shorthand_still_works(tmp_path) -> None:
    code = "from django.conf import settings as s; print(s.PLD_TEACHER_ENDPOINTS, s.PLD_TEACHER_DEFAULT_ENDPOINT)"
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "DJANGO_DEBUG": "1",
            "PLD_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "pldreview.settings"}
    run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    local = subprocess.run(run, cwd=Path(settings.BASE_DIR), env=base, capture_output=True, text=True, timeout=120)
    assert "{'local': {'base_url': '', 'model': 'gemma-3-270m-q4_k_m', 'api_key_env': ''}} local" in local.stdout
    remote = subprocess.run(run, cwd=Path(settings.BASE_DIR), capture_output=True, text=True, timeout=120, env={
        **base, "PLD_TEACHER_BASE_URL": "https://teacher.example/v1", "PLD_TEACHER_MODEL": "big",
        "PLD_TEACHER_API_KEY": "sk-x"})
    assert ("{'default': {'base_url': 'https://teacher.example/v1', 'model': 'big', "
            "'api_key_env': 'PLD_TEACHER_API_KEY'}} default") in remote.stdout, remote.stderr


def test_the_local_teacher_keeps_one_identity_before_and_after_it_starts() -> None:
    configured = TeacherConfig(base_url="", model="gemma-3-270m-q4_k_m", endpoint_name="local")
    started = configured.on_local_teacher("http://127.0.0.1:8077/v1")
    moved = configured.on_local_teacher("http://127.0.0.1:9999/v1")
    request = _request()
    # A rerun can tell that every answer is stored without starting the server, whatever its port.
    assert teacher_request_hash(configured, request) == teacher_request_hash(started, request)
    assert teacher_request_hash(started, request) == teacher_request_hash(moved, request)
    remote = TeacherConfig(base_url="http://127.0.0.1:8077/v1", model="gemma-3-270m-q4_k_m", endpoint_name="local")
    assert teacher_request_hash(remote, request) != teacher_request_hash(started, request)


def test_a_config_never_shows_its_key(monkeypatch) -> None:
    monkeypatch.setenv("PLD_TEST_FIRST_KEY", FIRST_KEY)
    endpoints = {"first": {"base_url": "https://teacher.example/v1", "model": "m", "api_key_env": "PLD_TEST_FIRST_KEY"}}
    with override_settings(PLD_TEACHER_ENDPOINTS=endpoints, PLD_TEACHER_DEFAULT_ENDPOINT="first"):
        config = TeacherConfig.from_endpoint("first")
    assert config.api_key == FIRST_KEY
    assert FIRST_KEY not in repr(config) and FIRST_KEY not in str(config.public_settings())
