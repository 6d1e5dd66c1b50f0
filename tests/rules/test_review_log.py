from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

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
    response = client.get(f"/tasks/{decided.name}/review-log.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="nda-demo-review-log.csv"' in response["Content-Disposition"]
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
    response = client.get(f"/tasks/{decided.name}/review-log.json")
    payload = json.loads(response.content)
    assert payload["task"] == "nda-demo"
    assert len(payload["decisions"]) == 5
    assert payload["decisions"][1]["reason"] == "=HYPERLINK(\"x\") too vague"
    assert payload["decisions"][1]["status_after"] == "rejected"


def test_admins_may_export_and_reviewers_may_not(client, decided, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    assert client.get(f"/tasks/{decided.name}/review-log.json").status_code == 200
    client.force_login(reviewer)
    assert client.get(f"/tasks/{decided.name}/review-log.json").status_code == 403


def test_an_unknown_format_is_not_found(client, decided, auditor) -> None:
    client.force_login(auditor)
    assert client.get(f"/tasks/{decided.name}/review-log.xml").status_code == 404


# --- its addresses before issue 26, when it was called the decision log ---------------------------------------------

def test_the_old_export_address_redirects_permanently_to_the_review_log(client, decided, auditor) -> None:
    client.force_login(auditor)
    for fmt in ("csv", "json"):
        response = client.get(f"/tasks/{decided.name}/decision-log.{fmt}")
        assert response.status_code == 301
        assert response["Location"] == f"/tasks/{decided.name}/review-log.{fmt}"
    followed = client.get(f"/tasks/{decided.name}/decision-log.csv", follow=True)
    assert followed.status_code == 200 and followed.content.decode().startswith("decision_id,")


def test_the_old_page_address_redirects_permanently_and_keeps_the_search(client, decided, reviewer) -> None:
    client.force_login(reviewer)
    response = client.get(f"/tasks/{decided.name}/decisions/", {"q": "staff"})
    assert response.status_code == 301
    assert response["Location"] == f"/tasks/{decided.name}/review-log/?q=staff"


def test_the_old_addresses_refuse_what_the_new_ones_refuse(client, decided, reviewer, non_member_reviewer) -> None:
    client.force_login(reviewer)  # reviewers may not export, so they are not told where the export went
    assert client.get(f"/tasks/{decided.name}/decision-log.csv").status_code == 403
    client.force_login(non_member_reviewer)  # nor is a non-member told that the task exists
    assert client.get(f"/tasks/{decided.name}/decisions/").status_code == 404


def test_the_old_url_names_still_resolve() -> None:
    assert reverse("pld-decision-log", args=["nda-demo", "csv"]) == "/tasks/nda-demo/decision-log.csv"
    assert reverse("pld-decision-log-page", args=["nda-demo"]) == "/tasks/nda-demo/decisions/"
    assert reverse("pld-review-log-export", args=["nda-demo", "csv"]) == "/tasks/nda-demo/review-log.csv"
    assert reverse("pld-review-log", args=["nda-demo"]) == "/tasks/nda-demo/review-log/"
