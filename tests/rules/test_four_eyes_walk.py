"""docs/review.md's four-eyes examples, walked by a team of two reviewers (rita, ravi) and one Admin (adam).

Each step names the line of the docs it checks; the service, the rule page, "Waiting for me", the queue's count and
the Admins' overview must all say the same thing.
"""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from rules.models import Rule
from rules.review.queries import QueueFilters, queue_leftovers, waiting_for
from rules.review.services import rule_approve, rule_create, rule_edit, rule_reject, rule_review
from tests.support.signatures import sign_approval, sign_edit, sign_rejection, sign_writing

pytestmark = pytest.mark.django_db

TEXT = "If the clause allows oral disclosure, then Entailment"
EDITED = "If the clause allows oral disclosures, then Entailment"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _fresh(rule: Rule) -> Rule:
    return Rule.objects.get(pk=rule.pk)


def _ravi_writes_rita_edits(task, rita, ravi) -> Rule:
    rule = rule_create(task=task, user=ravi, text=TEXT, label="Entailment",
                       signature=sign_writing(ravi, text=TEXT, label="Entailment"))
    rule_edit(rule=rule, user=rita, lock_version=_fresh(rule).lock_version, reason="Plural", text=EDITED,
              label="Entailment", signature=sign_edit(rita, text=EDITED, label="Entailment"))
    return _fresh(rule)


def test_a_writes_b_edits_and_neither_may_approve_so_the_rule_says_nobody_is_left(
    task, reviewer, second_reviewer, admin_user
) -> None:
    rita, ravi, adam = reviewer, second_reviewer, admin_user
    rule = _ravi_writes_rita_edits(task, rita, ravi)

    # docs: 'So "A writes r1, B makes a trivial edit, A approves r2" is refused: A and B are both authors'.
    for author in (ravi, rita):
        with pytest.raises(ValidationError, match="so you never count toward its approval"):
            rule_approve(rule=rule, user=author, lock_version=rule.lock_version, signature=sign_approval(author, rule))
    # docs: '"Waiting for me" never lists a rule to anyone who ever authored a revision of it' — nor counts it.
    for author in (ravi, rita):
        assert rule not in waiting_for(author)
        assert queue_leftovers(QueueFilters(), author)["for_you"] == 0
        assert "0 revisions waiting for you" in _client(author).get("/").content.decode()
    # docs: 'When nobody is left … the rule page says so … and the Admins' overview lists it'.
    why = rule_review(rule).nobody_may_approve()
    assert "No reviewer can complete this rule's approval: it needs 1 more" in why
    assert "the reviewers who may give one are: none" in why
    page = _client(ravi).get(f"/rules/{rule.pk}/").content.decode()
    assert 'id="nobody-may-approve"' in page and "No reviewer can complete" in page
    overview = _client(adam).get("/").content.decode()
    assert 'id="nobody-may-approve"' in overview and f'href="/rules/{rule.pk}/"' in overview
    # Reviewers are not the ones who can fix it: their overview does not carry the Admins' list.
    assert 'id="nobody-may-approve"' not in _client(rita).get("/").content.decode()
    assert _fresh(rule).status == Rule.Status.PENDING


def test_a_third_reviewer_makes_the_rule_approvable_again(
    task, reviewer, second_reviewer, third_reviewer, admin_user
) -> None:
    rita, ravi, rhea = reviewer, second_reviewer, third_reviewer
    rule = _ravi_writes_rita_edits(task, rita, ravi)
    # With rhea in the team the rule waits for her, and only for her.
    assert rule_review(rule).nobody_may_approve() == ""
    assert rule in waiting_for(rhea) and rule not in waiting_for(rita) and rule not in waiting_for(ravi)
    assert 'id="nobody-may-approve"' not in _client(admin_user).get("/").content.decode()
    rule_approve(rule=rule, user=rhea, lock_version=rule.lock_version, signature=sign_approval(rhea, rule))
    assert _fresh(rule).status == Rule.Status.APPROVED


def test_ravi_writes_rita_approves_then_rejects_and_ravi_cannot_overturn(task, reviewer, second_reviewer) -> None:
    rita, ravi = reviewer, second_reviewer
    rule = rule_create(task=task, user=ravi, text=TEXT, label="Entailment",
                       signature=sign_writing(ravi, text=TEXT, label="Entailment"))
    rule_approve(rule=rule, user=rita, lock_version=_fresh(rule).lock_version, signature=sign_approval(rita, rule))
    rule_reject(rule=rule, user=rita, lock_version=_fresh(rule).lock_version, reason="Too broad after all",
                signature=sign_rejection(rita, rule))
    rule = _fresh(rule)
    # docs: '"ravi writes the rule, rita approves it, then rejects it, ravi approves to overturn the rejection"
    # (issue 22): ravi is still its author, so two *other* reviewers must overturn rita's "no"'.
    with pytest.raises(ValidationError, match="so you never count toward its approval"):
        rule_approve(rule=rule, user=ravi, lock_version=rule.lock_version, signature=sign_approval(ravi, rule))
    # docs: 'The reviewer who rejected it … does not count towards overturning it'.
    with pytest.raises(ValidationError, match="You rejected this rule"):
        rule_approve(rule=rule, user=rita, lock_version=rule.lock_version, signature=sign_approval(rita, rule))
    assert rule_review(rule).required == 2
    assert _fresh(rule).status == Rule.Status.REJECTED
