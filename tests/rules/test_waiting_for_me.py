"""Waiting for me: the pending revisions a reviewer may decide, on a page, the dashboard and the nav badge."""
from __future__ import annotations

import pytest

from rules.review.queries import waiting_for
from rules.review.services import rule_approve, rule_edit, rule_reject
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection

pytestmark = pytest.mark.django_db


def test_it_lists_pending_revisions_that_are_not_mine_and_not_yet_approved_by_me(
    task, reviewer, second_reviewer, settings
) -> None:
    settings.PLD_REQUIRED_APPROVALS = 2
    teachers = teacher_rule(task, text="If teacher, then Entailment")
    mine = teacher_rule(task, text="If mine, then Entailment")
    rule_edit(rule=mine, user=reviewer, lock_version=mine.lock_version, reason="Clearer",
              text="If mine, clearer, then Entailment", label="Entailment", topic="", precedence_note="",
              signature=sign_edit(reviewer, text="If mine, clearer, then Entailment", label="Entailment"))
    approved_once = teacher_rule(task, text="If approved once, then Entailment")
    rule_approve(rule=approved_once, user=reviewer, lock_version=approved_once.lock_version,
                 signature=sign_approval(reviewer, approved_once))
    rejected = teacher_rule(task, text="If rejected, then Entailment")
    rule_reject(rule=rejected, user=second_reviewer, lock_version=rejected.lock_version, reason="Vague",
                signature=sign_rejection(second_reviewer, rejected))

    assert set(waiting_for(reviewer)) == {teachers}
    assert set(waiting_for(second_reviewer)) == {teachers, mine, approved_once}


def test_the_page_the_badge_and_the_dashboard_agree(client, task, reviewer, auditor) -> None:
    rule = teacher_rule(task, text="If teacher, then Entailment")
    client.force_login(reviewer)
    assert rule.text in client.get("/review/waiting/").content.decode()
    assert 'data-waiting="1"' in client.get("/review/waiting/badge/").content.decode()
    home = client.get("/").content.decode()
    assert '<a href="/review/">1 rule awaiting review</a>' in home
    assert '1 revision waiting for you' in home and 'hx-trigger="load delay:1s, every 30s"' in home
    client.force_login(auditor)
    assert client.get("/review/waiting/").status_code == 403
    assert "waiting for you" not in client.get("/").content.decode()


def test_the_badge_says_how_many_are_new_since_the_last_poll(client, task, reviewer) -> None:
    teacher_rule(task, text="If teacher, then Entailment")
    client.force_login(reviewer)
    first = client.get("/review/waiting/badge/").content.decode()
    assert 'name="known" value="1"' in first and "new" not in first
    teacher_rule(task, text="If another, then Entailment")
    teacher_rule(task, text="If a third, then Entailment")
    later = client.get("/review/waiting/badge/", {"known": "1"}).content.decode()
    assert 'data-waiting="3"' in later and "2 new" in later
    assert "new" not in client.get("/review/waiting/badge/", {"known": "3"}).content.decode()
