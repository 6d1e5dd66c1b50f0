"""Compiling keeps the reviewers' order: new rules join their topic, "use last" stays last, contradictions refused."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rules.models import PromptVersion
from rules.prompts.compiler import prompt_version_compile, prompt_version_preview
from rules.review.precedence import precedence_anchor
from rules.review.services import ruleset_reorder_approve, ruleset_reorder_propose, ruleset_rules
from tests.support.prompt_versions import approve, compiled
from tests.support.signatures import sign_order_approval, sign_order_proposal

pytestmark = pytest.mark.django_db

SHARING, REVERSE = "Sharing with employees", "Reverse engineering"
FALLBACK = "Use last: only when no rule about the hypothesis's own subject applies."


@pytest.fixture
def first_version(task, second_reviewer, admin_user) -> list:
    """v1 as the demo had it: two topics, then a catch-all rule whose note says "Use last"."""
    rules = [
        approve(task, second_reviewer, "If staff who need to know may see it, then Entailment", "Entailment", SHARING),
        approve(task, second_reviewer, "If the clause forbids decompiling, then Contradiction", "Contradiction",
                REVERSE),
        approve(task, second_reviewer, "If no clause mentions the subject, then NotMentioned", "NotMentioned", "",
                FALLBACK),
    ]
    compiled(task, admin_user)
    return rules


def test_the_notes_it_reads_are_use_first_and_use_last_only() -> None:
    assert precedence_anchor("Use last: only when nothing else applies.") == "last"
    assert precedence_anchor("  apply this first, before the exceptions") == "first"
    assert precedence_anchor("Use it last") == "last"
    assert precedence_anchor("Gives way to Rule 1 when the third party is an employee.") == ""
    assert precedence_anchor("Do not use lastly-named clauses") == ""


def test_new_rules_join_their_topic_and_the_use_last_rule_stays_last(
    task, second_reviewer, admin_user, first_version
) -> None:
    sharing, reverse, fallback = first_version
    added = [
        approve(task, second_reviewer, "If contractors may see it, then Entailment", "Entailment", SHARING),
        approve(task, second_reviewer, "If reverse engineering is allowed, then Entailment", "Entailment", REVERSE),
        approve(task, second_reviewer, "If it names an unknown party, then NotMentioned", "NotMentioned", "New"),
    ]
    order = [r.pk for r in ruleset_rules(task)]
    assert order == [sharing.pk, added[0].pk, reverse.pk, added[1].pk, added[2].pk, fallback.pk]

    version, created = prompt_version_compile(task=task, user=admin_user)
    assert created and version.number == 2
    # Each topic heads one run, and the catch-all is the last rule the student reads.
    assert version.text.count(f"## {SHARING}") == 1 and version.text.count(f"## {REVERSE}") == 1
    last_rule = version.text.rstrip().splitlines()[-4]
    assert last_rule.startswith("Rule 6 [NotMentioned]: If no clause mentions the subject")


def test_a_use_first_rule_goes_before_the_others(task, second_reviewer, first_version) -> None:
    first = approve(task, second_reviewer, "If the clause is void, then NotMentioned", "NotMentioned", "Validity",
                    "Use first: a void clause decides nothing else.")
    assert ruleset_rules(task)[0].pk == first.pk


def test_the_compiler_refuses_an_order_that_breaks_a_use_last_note(
    task, reviewer, second_reviewer, admin_user, first_version
) -> None:
    sharing, reverse, fallback = first_version
    order = [fallback.pk, sharing.pk, reverse.pk]
    proposal = ruleset_reorder_propose(task=task, order=order, user=reviewer, reason="Catch-all first",
                                       signature=sign_order_proposal(reviewer, task, order))
    ruleset_reorder_approve(proposal=proposal, user=second_reviewer, reason="ok",
                            signature=sign_order_approval(second_reviewer, proposal))
    assert [r.pk for r in ruleset_rules(task)] == order

    with pytest.raises(ValidationError, match=r"Rule 1 \(id \d+\) says “use last”, but rule 2 comes after it"):
        prompt_version_compile(task=task, user=admin_user)
    assert PromptVersion.objects.filter(task=task).count() == 1
    assert prompt_version_preview(task=task).conflicts


def test_the_compile_page_shows_where_each_new_rule_lands_and_asks_to_confirm(
    client, task, second_reviewer, admin_user, first_version
) -> None:
    sharing, reverse, fallback = first_version
    new = approve(task, second_reviewer, "If contractors may see it, then Entailment", "Entailment", SHARING)
    client.force_login(admin_user)
    page = client.get(f"/tasks/{task.name}/compile-prompt/").content.decode()
    row = page[page.index(f'id="landing-{new.pk}"'):]
    row = row[: row.index("</tr>")]
    assert "(new," in row and f"Rule {sharing.pk} (topic “{SHARING}”)" in row and f"Rule {reverse.pk}" in row
    # Rules already in v1 at the same revision are not listed as landing.
    assert f'id="landing-{fallback.pk}"' not in page
    assert client.post(f"/tasks/{task.name}/compile-prompt/").status_code == 400
    assert client.post(f"/tasks/{task.name}/compile-prompt/", {"confirm_placement": "yes"}).status_code == 302
    assert PromptVersion.objects.filter(task=task).count() == 2
