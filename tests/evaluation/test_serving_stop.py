"""Stopping and resuming a task's production serving: signed, on the ledger, append-only, refused to other roles."""
from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.test import Client

from evaluation.models import ClassifyCall, ServingStop
from evaluation.production.api_tokens import api_token_create
from evaluation.production.decision_log import classify_call_record
from evaluation.production.serving import Classification, ServingStopped
from evaluation.production.serving_stops import (
    serving_stop_current,
    stopped_serving,
    task_serving_resume,
    task_serving_stop,
    task_stops,
)
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerEntry, Signature
from tests.pldreview.ledgerkit import raw, side_door
from tests.support.prompt_versions import in_production
from tests.support.signatures import sign_serving

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {"premise": "The Recipient may disclose it to employees.", "hypothesis": "It may share with employees."}
WHY = "Drift alert on 3 days: misroutes governing-law clauses"


@pytest.fixture
def version(task, admin_user, second_reviewer):
    return in_production(task, admin=admin_user, reviewer=second_reviewer)


def _stop(task, user, reason: str = WHY) -> ServingStop:
    return task_serving_stop(task=task, user=user, reason=reason, signature=sign_serving(user, task, "stop"))


def _resume(task, user, reason: str = "Fixed v2 rolled back; checked 20 calls by hand") -> ServingStop:
    return task_serving_resume(task=task, user=user, reason=reason, signature=sign_serving(user, task, "resume"))


def _classify(token: str) -> tuple[int, dict]:
    response = Client().post(URL, data=json.dumps(BODY), content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})
    return response.status_code, {**response.json(), "_request_id": response["X-Request-ID"]}


def test_an_admin_stops_serving_with_a_signed_reason_on_the_ledger(task, version, admin_user) -> None:
    stop = _stop(task, admin_user)
    assert serving_stop_current(task) == stop and stopped_serving() == [stop]
    assert (stop.action, stop.reason, stop.by, stop.lifts) == ("stop", WHY, admin_user, None)
    assert stop.signature.meaning == "serving_stopped" and stop.signature.user == admin_user
    entry = LedgerEntry.objects.filter(event="servingstop.stopped").get()
    assert entry.object_id == str(stop.pk) and json.loads(entry.payload)["facts"]["reason"] == WHY
    with pytest.raises(ValidationError, match="already stopped"):
        _stop(task, admin_user, reason="Again")


def test_a_stopped_task_answers_503_naming_the_stop_and_the_request_id_and_logs_nothing(
    task, version, admin_user, reviewer
) -> None:
    token = api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]
    stop = _stop(task, admin_user)
    status, body = _classify(token)
    assert (status, body["code"]) == (503, "serving_stopped")
    assert body["request_id"] == body["_request_id"]
    assert body["stop"] == {"id": stop.pk, "task": "nda-demo", "since": stop.created_at.isoformat(),
                            "by": stop.signature.full_name, "username": "adam", "reason": WHY}
    assert WHY in body["error"] and stop.signature.full_name in body["error"]
    assert not ClassifyCall.objects.exists()
    # Refusals that come before the stop still come first: no token, no answer about the stop.
    anonymous = Client().post(URL, data=json.dumps(BODY), content_type="application/json")
    assert anonymous.status_code == 401 and "stop" not in anonymous.json()


def test_the_classify_command_refuses_a_stopped_task(task, version, admin_user) -> None:
    _stop(task, admin_user)
    with pytest.raises(CommandError, match="stopped since"):
        call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY), stdout=io.StringIO())
    assert not ClassifyCall.objects.exists()


def test_a_decision_made_before_the_stop_is_neither_logged_nor_given_after_it(task, version, admin_user) -> None:
    result = Classification(label="Entailment", probabilities={"Entailment": 0.9, "Contradiction": 0.05,
                            "NotMentioned": 0.05}, prompt_version_id=version.pk, prompt_version_number=1,
                            prompt_version_sha256=version.sha256, model_sha256="m" * 64, latency_ms=5.0)
    record = {"task": task, "result": result, "inputs": BODY, "source": "api", "latency_ms": 5.0}
    classify_call_record(request_id=uuid.uuid4(), **record)
    _stop(task, admin_user)
    with pytest.raises(ServingStopped) as refused:
        classify_call_record(request_id=uuid.uuid4(), **record)
    assert refused.value.status == 503 and refused.value.as_dict(request_id="r-1")["request_id"] == "r-1"
    assert ClassifyCall.objects.count() == 1


def test_resuming_is_a_separate_signed_action_naming_the_stop_it_lifts(task, version, admin_user) -> None:
    stop = _stop(task, admin_user)
    resume = _resume(task, admin_user)
    assert serving_stop_current(task) is None and stopped_serving() == []
    assert resume.lifts == stop and resume.signature.meaning == "serving_resumed"
    assert task_stops(task) == [stop, resume]
    with pytest.raises(ValidationError, match="not stopped"):
        _resume(task, admin_user)
    # A stop's signature cannot resume, nor serve twice.
    again = _stop(task, admin_user)
    with pytest.raises(ValidationError, match="not “Serving resumed”"):
        task_serving_resume(task=task, user=admin_user, reason="x", signature=stop.signature)
    assert serving_stop_current(task) == again


def test_a_resume_signed_for_an_earlier_stop_cannot_lift_the_current_one(task, version, admin_user) -> None:
    _stop(task, admin_user)
    stale = sign_serving(admin_user, task, "resume")
    task_serving_resume(task=task, user=admin_user, reason="First resume", signature=sign_serving(admin_user, task,
                                                                                                  "resume"))
    _stop(task, admin_user, reason="Second incident")
    with pytest.raises(ValidationError, match="other content"):
        task_serving_resume(task=task, user=admin_user, reason="Replayed", signature=stale)
    assert serving_stop_current(task).reason == "Second incident"


def test_with_two_required_approvals_a_different_admin_resumes(task, version, admin_user, second_admin,
                                                                settings) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    _stop(task, admin_user)
    with pytest.raises(ValidationError, match="a different Admin resumes it"):
        _resume(task, admin_user)
    assert serving_stop_current(task) is not None
    resume = _resume(task, second_admin)
    assert resume.by == second_admin and serving_stop_current(task) is None


def test_a_reviewer_or_auditor_can_neither_stop_nor_resume(task, version, admin_user, reviewer, auditor) -> None:
    for user in (reviewer, auditor):
        with pytest.raises(PermissionDenied):
            _stop(task, user)
        client = Client()
        client.force_login(user)
        data = {"reason": "Because", "password": f"pw-{user.username}"}
        assert client.post("/tasks/nda-demo/serving/stop/", data).status_code == 403
    _stop(task, admin_user)
    for user in (reviewer, auditor):
        with pytest.raises(PermissionDenied):
            _resume(task, user)
        client = Client()
        client.force_login(user)
        assert client.post("/tasks/nda-demo/serving/resume/", {"reason": "Go", "password": "x"}).status_code == 403
    assert serving_stop_current(task) is not None and ServingStop.objects.count() == 1


def test_raw_sql_cannot_change_or_delete_a_stop(task, version, admin_user) -> None:
    stop = _stop(task, admin_user)
    for sql in ("UPDATE evaluation_servingstop SET action = 'resume' WHERE id = %s",
                "DELETE FROM evaluation_servingstop WHERE id = %s",
                "UPDATE evaluation_historicalservingstop SET reason = 'x' WHERE id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic():
            raw(sql, [stop.pk])
    assert serving_stop_current(task) == stop


@pytest.mark.parametrize("tamper, found", [
    ("UPDATE evaluation_servingstop SET reason = 'Routine' WHERE id = %s", "reason"),
    ("DELETE FROM evaluation_servingstop WHERE id = %s", "is missing"),
])
def test_verify_ledger_finds_a_stop_changed_or_deleted_behind_its_back(task, version, admin_user, tamper,
                                                                        found) -> None:
    stop = _stop(task, admin_user)
    assert ledger_verify().ok
    with side_door("evaluation_servingstop"):
        raw(tamper, [stop.pk])
    verdict = ledger_verify()
    problems = [p for p in verdict.problems if p.object_type == "evaluation.servingstop"]
    assert not verdict.ok and problems and found in problems[0].detail


def test_verify_ledger_finds_a_resume_inserted_by_sql(task, version, admin_user) -> None:
    stop = _stop(task, admin_user)
    assert ledger_verify().ok
    # An insider signs nothing and writes a resume row by hand: serving resumes, and the ledger says so.
    cols = "task_id, action, lifts_id, reason, by_id, signature_id, created_at"
    raw(f"INSERT INTO evaluation_servingstop ({cols}) VALUES (%s, 'resume', %s, 'quiet', %s, %s, %s)",  # noqa: S608
        [task.pk, stop.pk, admin_user.pk, Signature.objects.exclude(pk=stop.signature_id).first().pk,
         stop.created_at])
    assert serving_stop_current(task) is None
    verdict = ledger_verify()
    assert any(p.object_type == "evaluation.servingstop" and "has no ledger entry" in p.detail
               for p in verdict.problems), verdict.message


def test_the_serving_page_stops_and_resumes_and_the_task_pages_show_the_red_banner(
    task, version, admin_user
) -> None:
    client = Client()
    client.force_login(admin_user)
    page = client.get("/tasks/nda-demo/serving/").content.decode()
    assert "Stop serving nda-demo now" in page and "has never been stopped" in page
    refused = client.post("/tasks/nda-demo/serving/stop/", {"reason": WHY, "password": "pw-wrong"})
    assert refused.status_code == 400 and "Wrong password" in refused.content.decode()
    assert serving_stop_current(task) is None
    assert client.post("/tasks/nda-demo/serving/stop/", {"reason": WHY, "password": "pw-adam"}).status_code == 302
    for path in ("/", "/tasks/nda-demo/", "/tasks/nda-demo/production/", "/tasks/nda-demo/serving/",
                 f"/prompts/{version.pk}/promote/", "/tasks/nda-demo/calls/"):
        body = client.get(path).content.decode()
        assert 'class="flash flash-error serving-stopped" role="alert"' in body and WHY in body, path
    assert "Resume serving" in client.get("/tasks/nda-demo/serving/").content.decode()
    assert client.post("/tasks/nda-demo/serving/resume/", {"reason": "Checked", "password": "pw-adam"}
                       ).status_code == 302
    assert serving_stop_current(task) is None
    assert "serving-stopped" not in client.get("/tasks/nda-demo/").content.decode()
    history = client.get("/tasks/nda-demo/serving/").content.decode()
    assert "Serving stopped by" in history and "Serving resumed by" in history


def test_the_command_stops_and_resumes_as_a_signing(task, version, admin_user, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-adam\n"))
    out = io.StringIO()
    call_command("serving", "stop", "nda-demo", "--user", "adam", "--reason", WHY, "--password-stdin", stdout=out)
    assert "stopped" in out.getvalue() and serving_stop_current(task).reason == WHY
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-wrong\n"))
    with pytest.raises(CommandError, match="Wrong password"):
        call_command("serving", "resume", "nda-demo", "--user", "adam", "--reason", "ok", "--password-stdin",
                     stdout=io.StringIO())
    assert serving_stop_current(task) is not None
