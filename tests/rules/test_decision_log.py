from __future__ import annotations

import csv
import io
import json

import pytest

from rules.review.review_log import COLUMNS
from rules.review.services import decision_undo, rule_approve, rule_create, rule_edit, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection, sign_writing

pytestmark = pytest.mark.django_db


@pytest.fixture
def decided(task, reviewer, second_reviewer):
    kept = teacher_rule(task, text="If staff may see it, then Entailment")
    rule_approve(rule=kept, user=reviewer, lock_version=1, reason="Clear", signature=sign_approval(reviewer, kept))
    dropped = teacher_rule(task, text="If anything, then Entailment")
    rule_reject(rule=dropped, user=second_reviewer, lock_version=1, reason="=HYPERLINK(\"x\") too vague",
        signature=sign_rejection(second_reviewer, dropped))
    edited = teacher_rule(task, text="If sharing, then Entailment")
    edit = rule_edit(rule=edited, user=reviewer, lock_version=1, reason="Say with whom",
                     text="If sharing with employees, then Entailment", label="Entailment",
                         signature=sign_edit(reviewer, text="If sharing with employees, then Entailment",
                             label="Entailment"))
    decision_undo(decision=edit, user=reviewer)
    rule_create(task=task, user=second_reviewer, text="If oral is excluded, then Contradiction", label="Contradiction",
        signature=sign_writing(second_reviewer, text="If oral is excluded, then Contradiction", label="Contradiction"))
    return task


def test_an_auditor_exports_every_decision_as_csv(client, decided, auditor) -> None:
    client.force_login(auditor)
    response = client.get(f"/tasks/{decided.name}/decision-log.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="nda-demo-decision-log.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0].keys()) == COLUMNS
    assert [r["action"] for r in rows] == ["approve", "reject", "edit", "undo", "create"]
    assert rows[0]["reviewer"] == "rita" and rows[0]["reason"] == "Clear"
    assert rows[2]["revision"] == "2" and rows[2]["rule_text"] == "If sharing with employees, then Entailment"
    assert rows[3]["undoes"] == rows[2]["decision_id"]
    # A reason that looks like a spreadsheet formula is kept as text.
    assert rows[1]["reason"].startswith("'=HYPERLINK")


def test_an_auditor_exports_the_same_log_as_json(client, decided, auditor) -> None:
    client.force_login(auditor)
    response = client.get(f"/tasks/{decided.name}/decision-log.json")
    payload = json.loads(response.content)
    assert payload["task"] == "nda-demo"
    assert len(payload["decisions"]) == 5
    assert payload["decisions"][1]["reason"] == "=HYPERLINK(\"x\") too vague"
    assert payload["decisions"][1]["status_after"] == "rejected"


def test_admins_may_export_and_reviewers_may_not(client, decided, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    assert client.get(f"/tasks/{decided.name}/decision-log.json").status_code == 200
    client.force_login(reviewer)
    assert client.get(f"/tasks/{decided.name}/decision-log.json").status_code == 403


def test_an_unknown_format_is_not_found(client, decided, auditor) -> None:
    client.force_login(auditor)
    assert client.get(f"/tasks/{decided.name}/decision-log.xml").status_code == 404
