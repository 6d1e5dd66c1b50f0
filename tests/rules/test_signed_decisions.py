"""Every decision on a rule is a signing: the pages ask for the password, and refuse without it."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.exceptions import ValidationError

from pldreview.models import LedgerEntry, Signature
from pldreview.signatures import Meaning, rule_content_sha256, ruleset_order_content_sha256
from rules.models import Decision, Rule, RuleSetReorderApproval, RuleSetReorderProposal
from rules.review.review_log import review_log_csv
from rules.review.services import rule_approve, rule_signed_content, ruleset_reorder_propose
from tests.support.factories import teacher_rule
from tests.support.signatures import sign, sign_approval, sign_order_proposal

HTMX = {"HTTP_HX_REQUEST": "true"}
REASON = "Checked against clause 4.2 — typed with care"
EDITED = "If the clause lets the recipient share with named employees, then Entailment"
WRITTEN = "If the clause excludes oral disclosures, then Contradiction"
MANIFEST = re.compile(r"Approved by Rita Reyes on \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC — meaning: Approved")


@pytest.fixture
def named(reviewer, second_reviewer):
    reviewer.first_name, reviewer.last_name = "Rita", "Reyes"
    reviewer.save()
    return reviewer


def _approved(task, user, text: str) -> Rule:
    rule = teacher_rule(task, text=text)
    rule_approve(rule=rule, user=user, lock_version=rule.lock_version, signature=sign_approval(user, rule))
    return Rule.objects.get(pk=rule.pk)


def _signing(kind: str, task, second_reviewer) -> tuple[str, dict, str, str, object]:
    """Return (url, form data, meaning, signed hash, the rule or None) for one kind of signing."""
    if kind in ("approve", "reject", "edit"):
        rule = teacher_rule(task)
        data = {"lock_version": rule.lock_version, "reason": REASON}
        sha = rule_signed_content(rule)
        if kind == "edit":
            data |= {"text": EDITED, "label": "Entailment", "topic": "Sharing", "precedence_note": ""}
            sha = rule_content_sha256(text=EDITED, label="Entailment", topic="Sharing", precedence_note="")
        meaning = {"approve": "approved", "reject": "rejected", "edit": "edited"}[kind]
        return f"/rules/{rule.pk}/{kind}/", data, meaning, sha, rule
    if kind == "create":
        data = {"task": task.name, "text": WRITTEN, "label": "Contradiction", "topic": "", "precedence_note": "",
                "reason": REASON}
        return "/rules/new/", data, "written", rule_content_sha256(
            text=WRITTEN, label="Contradiction", topic="", precedence_note=""), None
    first = _approved(task, second_reviewer, "If first, then Entailment")
    second = _approved(task, second_reviewer, "If second, then Entailment")
    order = [second.pk, first.pk]
    sha = ruleset_order_content_sha256(task_id=task.pk, order=order)
    if kind == "propose_order":
        data = {f"number_{second.pk}": 1, f"number_{first.pk}": 2, "reason": REASON}
        return f"/tasks/{task.name}/ruleset/reorder/", data, "reorder_proposed", sha, None
    # ravi proposed the order; rita approves or rejects it.
    proposal = ruleset_reorder_propose(task=task, user=second_reviewer, order=order, reason="Narrow first",
                                       signature=sign_order_proposal(second_reviewer, task, order))
    if kind == "approve_order":
        return f"/ruleset-proposals/{proposal.pk}/approve/", {"reason": REASON}, "reordered", sha, None
    return f"/ruleset-proposals/{proposal.pk}/reject/", {"reason": REASON}, "reorder_rejected", sha, None


def _signed(kind: str, user) -> Signature:
    """Return the signature the kind of signing stored on its record."""
    if kind == "propose_order":
        return RuleSetReorderProposal.objects.get(proposed_by=user).signature
    if kind == "approve_order":
        signature = RuleSetReorderApproval.objects.get(reviewer=user).signature
        # The approval applied the order: every reorder decision it recorded carries the same signature.
        moved = Decision.objects.filter(action="reorder")
        assert moved.count() == 2 and {d.signature_id for d in moved} == {signature.pk}
        return signature
    if kind == "reject_order":
        return RuleSetReorderProposal.objects.get(decided_by=user).decision_signature
    decision = Decision.objects.filter(reviewer=user).latest("id")
    assert decision.action == {v: k for k, v in Decision.SIGNED_ACTIONS.items()}[decision.signature.meaning]
    return decision.signature


def _state() -> tuple:
    return (
        Decision.objects.count(), Signature.objects.count(), Rule.objects.count(),
        sorted(Rule.objects.values_list("id", "status", "lock_version", "position", "text")),
        sorted(RuleSetReorderProposal.objects.values_list("id", "status")), RuleSetReorderApproval.objects.count(),
    )


KINDS = ["approve", "reject", "edit", "create", "propose_order", "approve_order", "reject_order"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_signing_without_the_password_is_refused_and_changes_nothing(client, task, named, second_reviewer,
                                                                        kind: str) -> None:
    url, data, _meaning, _sha, _rule = _signing(kind, task, second_reviewer)
    before = _state()
    client.force_login(named)
    response = client.post(url, data)
    assert response.status_code == 400
    assert "Enter your password to sign" in response.content.decode()
    assert _state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_password_is_refused_keeps_the_typed_text_and_is_recorded(client, task, named, second_reviewer,
                                                                          kind: str) -> None:
    url, data, meaning, sha, _rule = _signing(kind, task, second_reviewer)
    before = _state()
    client.force_login(named)
    response = client.post(url, data | {"password": "pw-ravi"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Wrong password: nothing was signed" in body
    if "reason" in data:
        assert REASON in body  # what the reviewer typed is still there
    assert "pw-ravi" not in body  # the password is never sent back
    assert _state() == before
    failed = LedgerEntry.objects.get(event="security.signature_failed")
    assert failed.actor == named and meaning in failed.payload and sha in failed.payload


@pytest.mark.parametrize("kind", KINDS)
def test_the_right_password_signs_with_name_meaning_and_hash(client, task, named, second_reviewer, kind: str) -> None:
    url, data, meaning, sha, _rule = _signing(kind, task, second_reviewer)
    client.force_login(named)
    response = client.post(url, data | {"password": "pw-rita"})
    assert response.status_code == 302
    signature = _signed(kind, named)
    assert (signature.user, signature.full_name, signature.meaning) == (named, "Rita Reyes", meaning)
    assert signature.content_sha256 == sha and signature.reauth_policy == "each" and signature.password_checked
    assert LedgerEntry.objects.filter(event="signature.created", object_id=str(signature.pk)).exists()


def test_an_htmx_wrong_password_returns_the_form_with_the_reason_and_focus_on_the_password(
    client, task, named
) -> None:
    rule = teacher_rule(task)
    client.force_login(named)
    response = client.post(f"/rules/{rule.pk}/approve/",
                           {"lock_version": 1, "reason": REASON, "password": "nope"}, **HTMX)
    body = response.content.decode()
    assert "<html" not in body and REASON in body and "Wrong password" in body
    assert re.search(r'id="approve-password"[^>]*aria-invalid="true" data-focus-after-swap', body)
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.PENDING


def test_the_rule_page_history_and_review_log_show_the_manifestation(client, task, named, auditor) -> None:
    rule = teacher_rule(task)
    client.force_login(named)
    client.post(f"/rules/{rule.pk}/approve/", {"lock_version": 1, "reason": "Fine", "password": "pw-rita"})
    signature = Signature.objects.get()
    when = signature.signed_at.astimezone(dt.UTC)
    expected = f"Approved by Rita Reyes on {when:%Y-%m-%d %H:%M:%S} UTC — meaning: Approved"
    client.force_login(auditor)
    assert expected in client.get(f"/rules/{rule.pk}/").content.decode()
    assert expected in client.get(f"/rules/{rule.pk}/history/").content.decode()
    csv_text = review_log_csv(task=task)
    assert expected in csv_text and signature.content_sha256 in csv_text and when.isoformat() in csv_text
    json_text = client.get(f"/tasks/{task.name}/review-log.json").content.decode()
    assert MANIFEST.search(json_text)


def test_the_service_refuses_a_signature_over_the_wording_before_an_edit(task, reviewer, second_reviewer) -> None:
    from rules.review.services import rule_edit

    rule = teacher_rule(task)
    old = sign(reviewer, Meaning.APPROVED, rule_signed_content(rule))
    rule_edit(rule=rule, user=second_reviewer, lock_version=None, reason="Clearer", text=EDITED, label="Entailment",
              signature=sign(second_reviewer, Meaning.EDITED,
                             rule_content_sha256(text=EDITED, label="Entailment", topic="", precedence_note="")))
    with pytest.raises(ValidationError, match="other content"):
        rule_approve(rule=rule, user=reviewer, lock_version=None, signature=old)
    with pytest.raises(ValidationError, match="not “Approved”"):
        rule_approve(rule=rule, user=reviewer, lock_version=None,
                     signature=sign(reviewer, Meaning.REJECTED, rule_signed_content(Rule.objects.get(pk=rule.pk))))
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.PENDING


# --- The topic is signed too: the compiler writes it into the prompt ----------------------------------------


def test_a_topic_changed_after_signing_is_refused_like_a_changed_text(task, reviewer, second_reviewer) -> None:
    from rules.review.services import rule_edit

    rule = teacher_rule(task, topic="Sharing with employees")
    signed = sign(reviewer, Meaning.APPROVED, rule_signed_content(rule))
    rule_edit(rule=rule, user=second_reviewer, lock_version=None, reason="Broader heading", text=rule.text,
              label=rule.label, topic="Any disclosure",
              signature=sign(second_reviewer, Meaning.EDITED, rule_content_sha256(
                  text=rule.text, label=rule.label, topic="Any disclosure", precedence_note="")))
    with pytest.raises(ValidationError, match="other content"):
        rule_approve(rule=rule, user=reviewer, lock_version=None, signature=signed)
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.PENDING


def test_a_topic_changed_in_the_database_after_signing_is_refused(task, reviewer) -> None:
    rule = teacher_rule(task, topic="Sharing with employees")
    signed = sign(reviewer, Meaning.APPROVED, rule_signed_content(rule))
    Rule.objects.filter(pk=rule.pk).update(topic="Any disclosure")  # no service: a side door
    with pytest.raises(ValidationError, match="other content"):
        rule_approve(rule=rule, user=reviewer, lock_version=None, signature=signed)


def test_an_edit_or_a_written_rule_signed_without_its_topic_is_refused(task, reviewer) -> None:
    from rules.review.services import rule_create, rule_edit

    rule = teacher_rule(task)
    without_topic = sign(reviewer, Meaning.EDITED, rule_content_sha256(
        text=EDITED, label="Entailment", topic="", precedence_note=""))
    with pytest.raises(ValidationError, match="other content"):
        rule_edit(rule=rule, user=reviewer, lock_version=None, reason="Clearer", text=EDITED, label="Entailment",
                  topic="Sharing", signature=without_topic)
    written = sign(reviewer, Meaning.WRITTEN, rule_content_sha256(
        text=WRITTEN, label="Contradiction", topic="", precedence_note=""))
    with pytest.raises(ValidationError, match="other content"):
        rule_create(task=task, user=reviewer, text=WRITTEN, label="Contradiction", topic="Oral",
                    signature=written)


def test_a_signature_stored_before_the_topic_was_hashed_still_verifies_as_version_1(task, reviewer) -> None:
    from pldreview.signatures import rule_content_sha256_v1, rule_signature_content_version

    rule = teacher_rule(task, topic="Sharing with employees")
    content = {"text": rule.text, "label": rule.label, "precedence_note": rule.precedence_note}
    stored = sign(reviewer, Meaning.APPROVED, rule_content_sha256_v1(**content))  # as signed before version 2
    assert rule_signature_content_version(stored.content_sha256, topic=rule.topic, **content) == 1
    assert rule_signature_content_version(rule_signed_content(rule), topic=rule.topic, **content) == 2
    assert rule_signature_content_version(rule_signed_content(rule), topic="Other", **content) is None
    assert rule_signed_content(rule) != stored.content_sha256
    # New signings are checked against version 2 only.
    with pytest.raises(ValidationError, match="other content"):
        rule_approve(rule=rule, user=reviewer, lock_version=None, signature=stored)
