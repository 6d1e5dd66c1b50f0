"""The decision dossier (page, JSON export) and GET /api/v1/decisions/<request_id> for the token that made the call."""
from __future__ import annotations

import pytest
from django.test import Client

from evaluation.production.api_tokens import api_token_create, api_token_revoke
from evaluation.production.decision_log import decision_override, decision_policy_set
from pldreview.models import LedgerEntry
from rules.models import Rule
from tests.support.decisions import INPUTS, logged_call
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import sign, sign_decision_override


@pytest.fixture
def version(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


@pytest.fixture
def tokens(admin_user, reviewer, second_reviewer):
    mine = api_token_create(user=reviewer, name="integration", created_by=admin_user)
    other = api_token_create(user=second_reviewer, name="another", created_by=admin_user)
    return mine, other


def _get(url: str, raw: str | None = None):
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    return Client().get(url, headers=headers)


def test_the_dossier_names_each_rule_with_its_revision_and_who_signed_it_and_the_calls_ledger_entry(
    client: Client, version, auditor, tokens
) -> None:
    call = logged_call(version, token=tokens[0][0])
    client.force_login(auditor)
    page = client.get(f"/decisions/{call.request_id}/").content.decode()
    entry = LedgerEntry.objects.get(event="classify_call.logged", object_id=str(call.pk))
    assert f"entry #{entry.sequence}" in page and entry.hash in page
    assert version.sha256 in page and call.model_sha256 in page and INPUTS["premise"] in page
    rules = Rule.objects.filter(task=version.task)
    for rule in rules:
        assert rule.text in page
    # ravi approved each rule: his name and the meaning of his signature, once per rule.
    assert page.count("Approved by ravi") == rules.count()
    assert 'id="explanation"' in page  # the place left for "Why this label?"
    exported = client.get(f"/decisions/{call.request_id}/dossier.json")
    data = exported.json()
    assert exported["Content-Disposition"].startswith("attachment")
    assert data["ledger_entry"]["sequence"] == entry.sequence and data["input"]["fields"] == INPUTS
    assert [r["revision"] for r in data["rules"]] == [1] * rules.count()
    approvals = [d for r in data["rules"] for d in r["decisions"] if d["action"] == "Approved"]
    assert len(approvals) == rules.count()
    assert all(d["username"] == "ravi" and d["signature"]["meaning"] == "Approved" for d in approvals)
    assert data["explanation"] is None and all(r["rule_impact"] is None for r in data["rules"])


def test_a_reviewer_cannot_open_a_dossier(client: Client, version, reviewer) -> None:
    call = logged_call(version)
    client.force_login(reviewer)
    assert client.get(f"/decisions/{call.request_id}/").status_code == 403
    assert client.get(f"/decisions/{call.request_id}/dossier.json").status_code == 403


def test_a_hash_only_calls_dossier_holds_no_input(client: Client, version, admin_user) -> None:
    decision_policy_set(task=version.task, input_retention="hash", retention_days=None, user=admin_user,
                        reason="Personal data")
    call = logged_call(version)
    client.force_login(admin_user)
    data = client.get(f"/decisions/{call.request_id}/dossier.json").json()
    assert data["input"]["fields"] is None and data["input"]["retention"] == "hash"
    assert INPUTS["premise"] not in client.get(f"/decisions/{call.request_id}/").content.decode()


def test_the_token_that_made_a_call_reads_its_current_outcome_and_another_token_gets_404(
    version, tokens, reviewer, admin_user
) -> None:
    (mine, raw), (_other, other_raw) = tokens
    call = logged_call(version, token=mine)
    url = f"/api/v1/decisions/{call.request_id}"
    before = _get(url, raw)
    assert before.status_code == 200
    data = before.json()
    assert (data["label"], data["outcome_label"], data["overridden"], data["overridden_label"]) == (
        "Entailment", "Entailment", False, None)
    assert data["probabilities"] == call.probabilities and len(data["rules"]) == 3
    # Another token, an unknown id and a malformed id learn nothing.
    assert _get(url, other_raw).status_code == 404
    assert _get(url, other_raw).json()["code"] == "unknown_decision"
    assert _get("/api/v1/decisions/not-a-uuid", raw).status_code == 404
    assert _get(url).status_code == 401
    decision_override(call=call, overridden_label="Contradiction", reason="Copies must be destroyed.",
                      user=reviewer, signature=sign_decision_override(reviewer, call, "Contradiction"))
    after = _get(url, raw).json()
    assert (after["outcome_label"], after["overridden"], after["overridden_label"]) == (
        "Contradiction", True, "Contradiction")
    assert after["overridden_by"] == "rita" and after["override_reason"] == "Copies must be destroyed."
    assert after["overridden_at"]
    api_token_revoke(token=mine, user=admin_user, signature=sign(
        admin_user, "token_revoked", _revocation_content(mine)))
    assert _get(url, raw).status_code == 403


def _revocation_content(token) -> str:
    from evaluation.production.api_tokens import api_token_signed_content

    return api_token_signed_content(token)


def test_a_token_scoped_away_from_the_task_is_refused(version, tokens, task) -> None:
    from tests.support.factories import TaskFactory

    (mine, raw), _ = tokens
    call = logged_call(version, token=mine)
    mine.tasks.set([TaskFactory(name="elsewhere")])
    response = _get(f"/api/v1/decisions/{call.request_id}", raw)
    assert response.status_code == 403 and response.json()["code"] == "token_out_of_scope"
