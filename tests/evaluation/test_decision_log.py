"""The decision log: one record per classify call, input kept per the task's rule, purged on schedule."""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from evaluation.models import ClassifyCall, DecisionLogPolicy, InputRetention
from evaluation.production.api_tokens import api_token_create
from evaluation.production.decision_log import decisions_purge, inputs_sha256, redact
from pldreview.models import LedgerEntry
from tests.support.factories import ClassifyCallFactory
from tests.support.prompt_versions import approve_all, compiled, finished_run, promote_by_override

URL = "/api/v1/tasks/nda-demo/classify"
SECRET = "Zanzibar Holdings owes 4,000,000 to the Recipient."
BODY = {"premise": f"The Recipient may disclose Confidential Information to its employees. {SECRET}",
        "hypothesis": "The receiving party may share confidential information with its employees."}


@pytest.fixture
def production(task, admin_user, second_admin, second_reviewer):
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    finished_run(version, 0.7)
    promote_by_override(version, admin=admin_user, second_admin=second_admin)
    return version


@pytest.fixture
def token(admin_user, reviewer):
    return api_token_create(user=reviewer, name="integration", created_by=admin_user)


def _post(token_raw: str, body: dict = BODY):
    return Client().post(URL, data=json.dumps(body), content_type="application/json",
                         headers={"Authorization": f"Bearer {token_raw}"})


def _every_stored_text() -> str:
    """Return every row of every table as text: what a hash-only task must not leave its input in."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            parts.append(repr(cursor.fetchall()))
    return "\n".join(parts)


@pytest.mark.slow
def test_a_call_writes_exactly_one_record_with_its_version_and_hashes(production, token, student_settings) -> None:
    record, raw = token
    response = _post(raw)
    assert response.status_code == 200, response.content
    call = ClassifyCall.objects.get()
    data = response.json()
    assert str(call.request_id) == response["X-Request-ID"]
    assert (call.task.name, call.api_token, call.source) == ("nda-demo", record, "api")
    assert (call.prompt_version, call.prompt_sha256) == (production, production.sha256)
    assert call.model_sha256 == data["model_sha256"] == student_settings.info.sha256
    assert call.label == data["label"] and call.probabilities == data["probabilities"]
    assert call.top_probability == max(data["probabilities"].values())
    assert call.latency_ms > 0 and "log;dur=" in response["Server-Timing"]
    timing = dict(item.strip().split(";dur=") for item in response["Server-Timing"].split(","))
    assert 0 <= float(timing["wait"]) <= float(timing["decide"])  # alone: no call admitted before it
    # The checks before the queue are a part of the decision's time, and not all of it: the model decided after.
    assert 0 < float(timing["admit"]) < float(timing["decide"]) - float(timing["wait"])
    assert call.input_retention == "full" and call.inputs == BODY
    assert call.input_sha256 == inputs_sha256(BODY)
    # An error writes nothing.
    assert _post(raw, {"premise": "x"}).status_code == 400
    assert ClassifyCall.objects.count() == 1
    # The benchmark's switch does nothing on a server not started for the benchmark.
    response = Client().post(URL, data=json.dumps(BODY), content_type="application/json",
                             headers={"Authorization": f"Bearer {raw}", "X-PLD-Unlogged": "1"})
    assert response.status_code == 200 and ClassifyCall.objects.count() == 2


@pytest.mark.slow
def test_a_hash_only_task_keeps_no_input_text_anywhere(production, token, student_settings, caplog, capfd) -> None:
    DecisionLogPolicy.objects.create(task=production.task, input_retention=InputRetention.HASH)
    caplog.set_level(logging.DEBUG)
    response = _post(token[1])
    assert response.status_code == 200
    call = ClassifyCall.objects.get()
    assert call.inputs == {} and call.input_sha256 == inputs_sha256(BODY)
    assert "Zanzibar" not in _every_stored_text()
    assert "Zanzibar" not in caplog.text
    out, err = capfd.readouterr()
    assert "Zanzibar" not in out + err


@pytest.mark.slow
def test_a_redacting_task_keeps_the_text_without_the_patterns(production, token, student_settings, settings) -> None:
    DecisionLogPolicy.objects.create(task=production.task, input_retention=InputRetention.REDACT)
    body = {**BODY, "premise": "Write to legal@acme.example or call +44 20 7946 0958 about disclosure."}
    assert _post(token[1], body).status_code == 200
    kept = ClassifyCall.objects.get().inputs["premise"]
    assert kept == "Write to [REDACTED] or call [REDACTED] about disclosure."


def test_redaction_follows_the_configured_patterns(settings) -> None:
    settings.PLD_DECISION_REDACT_PATTERNS = [r"Project \w+"]
    assert redact("Project Falcon starts, mail a@b.org") == "[REDACTED] starts, mail a@b.org"


@pytest.mark.slow
def test_the_classify_command_logs_its_call_too(production, student_settings, capsys) -> None:
    call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY))
    printed = json.loads(capsys.readouterr().out)
    call = ClassifyCall.objects.get()
    assert (call.source, call.api_token, str(call.request_id)) == ("command", None, printed["request_id"])
    assert call.prompt_version == production and call.label == printed["label"]


def _logged(version, *, days_ago: float, label: str = "Entailment") -> ClassifyCall:
    return ClassifyCallFactory(prompt_version=version, created_at=timezone.now() - timedelta(days=days_ago),
                               label=label, top_probability=0.9, latency_ms=10, inputs=BODY)


def test_the_purge_removes_only_what_is_older_and_is_recorded(task, admin_user, second_reviewer) -> None:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    old, recent = _logged(version, days_ago=31), _logged(version, days_ago=29)
    call_command("purge_decisions", "--older-than", "30", "--actor", admin_user.username)
    assert list(ClassifyCall.objects.all()) == [recent]
    assert not ClassifyCall.objects.filter(pk=old.pk).exists()
    entry = LedgerEntry.objects.filter(event="classify_call.purged").get()
    facts = json.loads(entry.payload)["facts"]
    assert facts["calls_deleted"] == 1 and facts["older_than_days"] == 30 and entry.actor == admin_user


def test_a_purge_with_nothing_to_remove_is_still_recorded(db) -> None:
    assert decisions_purge(older_than_days=1, actor=None)["calls_deleted"] == 0
    assert LedgerEntry.objects.filter(event="classify_call.purged").count() == 1


def test_purge_by_policy_uses_each_tasks_own_retention(task, admin_user, second_reviewer, settings) -> None:
    settings.PLD_DECISION_RETENTION_DAYS = 100
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    kept, purged = _logged(version, days_ago=50), _logged(version, days_ago=150)
    call_command("purge_decisions", "--by-policy")
    assert list(ClassifyCall.objects.all()) == [kept]
    DecisionLogPolicy.objects.create(task=task, input_retention="full", retention_days=30)
    call_command("purge_decisions", "--by-policy")
    assert not ClassifyCall.objects.exists() and not ClassifyCall.objects.filter(pk=purged.pk).exists()
    assert LedgerEntry.objects.filter(event="classify_call.purged").count() == 2


def test_the_purge_yields_the_write_lock_in_proportion_to_each_batch(task, admin_user, second_reviewer,
                                                                     monkeypatch) -> None:
    """Between batches the purge pauses the least pause or yield_ratio × the batch's own time, whichever is
    longer; by default that ratio is PURGE_SQLITE_YIELD on SQLite and 0 on PostgreSQL."""
    from evaluation.production import decision_log

    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    for days in (40, 39, 38, 37, 36):
        _logged(version, days_ago=days)
    clock = iter(range(0, 1000, 2))  # each batch "takes" 2 s of this clock
    pauses: list[float] = []
    # Only the purge's own view of time is replaced, not the time module everyone else reads.
    monkeypatch.setattr(decision_log, "time", SimpleNamespace(perf_counter=lambda: next(clock), sleep=pauses.append))
    assert decisions_purge(older_than_days=30, actor=None, batch_size=2, yield_ratio=3)["calls_deleted"] == 2 + 2 + 1
    assert pauses == [6, 6]  # after the two full batches; the last, short one ends the purge
    for days in (40, 39, 38):
        _logged(version, days_ago=days)
    pauses.clear()
    decisions_purge(older_than_days=30, actor=None, batch_size=2, pause_seconds=0.05)
    default = decision_log.PURGE_SQLITE_YIELD * 2 if connection.vendor == "sqlite" else 0.05
    assert pauses == [default]
