"""A rule's discussion: reviewers add comments; nobody edits or deletes one, not even through SQL."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction

from pldreview.models import LedgerEntry
from rules.models import RuleComment
from rules.review.discussion import rule_comment_add
from tests.support.factories import teacher_rule

pytestmark = pytest.mark.django_db


def test_a_comment_records_who_when_and_what_and_reaches_the_ledger(task, reviewer) -> None:
    rule = teacher_rule(task)
    comment = rule_comment_add(rule=rule, user=reviewer, text="  Does 'staff' include contractors?  ")
    assert (comment.author, comment.text) == (reviewer, "Does 'staff' include contractors?")
    entry = LedgerEntry.objects.filter(event="rulecomment.created").get()
    assert entry.actor_name == reviewer.username


def test_an_auditor_reads_but_cannot_comment_and_an_empty_comment_is_refused(task, reviewer, auditor) -> None:
    rule = teacher_rule(task)
    with pytest.raises(PermissionDenied):
        rule_comment_add(rule=rule, user=auditor, text="Hello")
    with pytest.raises(ValidationError):
        rule_comment_add(rule=rule, user=reviewer, text="   ")
    assert not RuleComment.objects.exists()


def test_the_database_refuses_to_rewrite_a_comment(task, reviewer) -> None:
    comment = rule_comment_add(rule=teacher_rule(task), user=reviewer, text="Ask the client")
    with pytest.raises(DatabaseError), transaction.atomic():
        RuleComment.objects.filter(pk=comment.pk).update(text="Never mind")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE rules_rulecomment SET text = 'x' WHERE id = %s", [comment.pk])
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            RuleComment.objects.filter(pk=comment.pk).delete()
    comment.refresh_from_db()
    assert comment.text == "Ask the client"


def test_the_thread_is_on_the_rule_page_and_in_the_history(client, task, reviewer, auditor) -> None:
    rule = teacher_rule(task)
    client.force_login(reviewer)
    response = client.post(f"/rules/{rule.pk}/comments/", {"text": "Does it cover advisers?"})
    assert response.status_code == 302 and response["Location"].endswith("#discussion")
    htmx = client.post(f"/rules/{rule.pk}/comments/", {"text": "Yes, per clause 4"}, HTTP_HX_REQUEST="true")
    assert "Does it cover advisers?" in htmx.content.decode() and "Yes, per clause 4" in htmx.content.decode()
    client.force_login(auditor)
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "Does it cover advisers?" in page and 'id="comment-form"' not in page
    history = client.get(f"/rules/{rule.pk}/history/").content.decode()
    assert "Yes, per clause 4" in history and "rita" in history
    assert client.post(f"/rules/{rule.pk}/comments/", {"text": "x"}).status_code == 403
