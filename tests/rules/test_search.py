"""Search: one box finds rules by text, topic, label, cited example, reviewer and reason; ranked; one query.

Runs on SQLite (FTS5 index kept by triggers) and on PostgreSQL (scripts/test-postgres tests/rules/test_search.py).
"""
from __future__ import annotations

import pytest
from django.db import connection

from rules.models import Rule
from rules.review.search import search_rules
from rules.review.services import rule_create, rule_edit, rule_reject
from tests.support.factories import example, teacher_rule
from tests.support.signatures import sign_approval, sign_edit, sign_rejection, sign_writing

pytestmark = pytest.mark.django_db


def _found(task, query):
    return list(search_rules(task, query))


def test_it_finds_a_rule_by_each_kind_of_word(task, reviewer, second_reviewer) -> None:
    cited = example(task, 1, premise="Staff of the recipient may see the marketing plan.")
    hand = rule_create(task=task, user=reviewer, text="If staff may see it, then Entailment", label="Entailment",
                       topic="Employees", examples=[cited],
                       signature=sign_writing(reviewer, text="If staff may see it, then Entailment",
                                              label="Entailment", topic="Employees"))
    other = teacher_rule(task, text="If oral disclosures are excluded, then Contradiction", label="Contradiction")
    rule_reject(rule=other, user=second_reviewer, lock_version=other.lock_version, reason="Duplicates rule nine",
                signature=sign_rejection(second_reviewer, other))
    assert _found(task, "staff") == [hand]
    assert _found(task, "employees") == [hand]  # topic
    assert _found(task, "contradiction") == [other]  # label
    assert _found(task, "marketing") == [hand]  # cited example text
    assert _found(task, "ravi") == [other]  # reviewer
    assert _found(task, "duplicates") == [other]  # reason
    assert _found(task, "dupl") == [other]  # a prefix
    assert _found(task, "oral duplicates") == [other]  # words from the rule and from a reason together
    assert _found(task, "oral staff") == []


def test_results_are_ranked_best_match_first(task) -> None:
    weak = teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned", support=9,
                        examples=[example(task, 1, premise="Nothing about sharing here, only length.")])
    strong = teacher_rule(task, text="If sharing with employees is allowed, sharing is permitted, then Entailment",
                          topic="Sharing", support=1)
    assert _found(task, "sharing") == [strong, weak]


def test_the_index_follows_every_write(task, reviewer) -> None:
    rule = teacher_rule(task, text="If oral disclosures are excluded, then Contradiction", label="Contradiction")
    rule_edit(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Say written",
              text="If written disclosures only, then Contradiction", label="Contradiction", topic="",
              precedence_note="",
              signature=sign_edit(reviewer, text="If written disclosures only, then Contradiction",
                                  label="Contradiction"))
    assert _found(task, "written") == [rule] and _found(task, "oral") == []
    Rule.objects.filter(pk=rule.pk).update(text="If faxes count, then Contradiction")  # no service, no signal
    assert _found(task, "faxes") == [rule] and _found(task, "disclosures") == []


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "text:staff", "*", "'; DROP TABLE rules_rule; --", "(", ""])
def test_query_syntax_is_never_interpreted(task, query) -> None:
    teacher_rule(task, text="If staff may see it, then Entailment")
    assert _found(task, query) == []


def test_one_query_whatever_the_number_of_results(task, django_assert_num_queries) -> None:
    for n in range(2):
        teacher_rule(task, text=f"If sharing case {n}, then Entailment", support=n)
    with django_assert_num_queries(1):
        assert len(_found(task, "sharing")) == 2
    for n in range(2, 20):
        teacher_rule(task, text=f"If sharing case {n}, then Entailment", support=n)
    with django_assert_num_queries(1):
        assert len(_found(task, "sharing")) == 20


def test_the_right_backend_runs() -> None:
    assert connection.vendor in {"sqlite", "postgresql"}


def test_the_queue_the_rule_set_and_the_review_log_search(client, task, reviewer, second_reviewer) -> None:
    from rules.review.services import rule_approve

    kept = teacher_rule(task, text="If staff may see it, then Entailment")
    rule_approve(rule=kept, user=second_reviewer, lock_version=kept.lock_version,
                 reason="Matches the marketing clause", signature=sign_approval(second_reviewer, kept))
    pending = teacher_rule(task, text="If oral disclosures are excluded, then Contradiction", label="Contradiction")
    client.force_login(reviewer)
    queue = client.get("/review/", {"q": "oral", "task": task.name}).content.decode()
    assert pending.text in queue and kept.text not in queue
    assert 'name="q"' in queue and 'value="oral"' in queue
    ruleset = client.get(f"/tasks/{task.name}/ruleset/", {"q": "marketing"}).content.decode()
    assert "1 rule matches “marketing”" in ruleset and f"/rules/{kept.pk}/" in ruleset
    log = client.get(f"/tasks/{task.name}/review-log/", {"q": "marketing"}).content.decode()
    assert "Matches the marketing clause" in log and "1 decision on rules matching" in log
    empty = client.get(f"/tasks/{task.name}/review-log/", {"q": "zebra"}).content.decode()
    assert "No decision on a rule matching" in empty


def test_the_searched_queue_costs_the_same_queries_for_2_and_20_matches(client, task, reviewer) -> None:
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    client.force_login(reviewer)
    for n in range(2):
        teacher_rule(task, text=f"If sharing case {n}, then Entailment", support=n)
    client.get("/review/", {"q": "sharing"})  # warm the session and permission caches
    with CaptureQueriesContext(conn) as small:
        client.get("/review/", {"q": "sharing"})
    for n in range(2, 20):
        teacher_rule(task, text=f"If sharing case {n}, then Entailment", support=n)
    with CaptureQueriesContext(conn) as large:
        body = client.get("/review/", {"q": "sharing"}).content.decode()
    assert body.count("data-queue-row") == 20
    assert len(small) == len(large)


@pytest.mark.parametrize("query", ["-", "..", "/", "*", '"', "- -", "&|!"])
def test_a_query_of_punctuation_alone_answers_every_page_with_no_match(
    client, task, reviewer, auditor, admin_user, query
) -> None:
    teacher_rule(task, text="If staff may see it, then Entailment")
    for user in (reviewer, auditor, admin_user):
        client.force_login(user)
        for url in ("/review/", f"/tasks/{task.name}/ruleset/", f"/tasks/{task.name}/review-log/"):
            response = client.get(url, {"q": query})
            if response.status_code == 403:  # a role without this page; the 500 was the point
                continue
            assert response.status_code == 200, (user.username, url, response.status_code)
            assert "If staff may see it" not in response.content.decode() or url.endswith("/ruleset/")
