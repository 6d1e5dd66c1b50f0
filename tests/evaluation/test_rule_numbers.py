"""One order, one number: the rule-set page, the prompt, the report and the version diff agree on rule numbers."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from evaluation.release.reports import report_data, report_render_html
from rules.models import PromptVersionRule
from rules.prompts.compiler import topic_runs
from rules.prompts.diff import moved_rules, prompt_version_diff
from rules.review.services import rule_reject, ruleset_reorder_approve, ruleset_reorder_propose, ruleset_rules
from tests.support.prompt_versions import approve, compiled
from tests.support.signatures import sign_order_approval, sign_order_proposal, sign_rejection

# Topics scattered through the reviewed order: grouping them would move rules 3 and 5.
SCATTERED = [
    ("If the clause lets employees see it, then Entailment", "Entailment", "Employees"),
    ("If the clause forbids third parties, then Contradiction", "Contradiction", "Third parties"),
    ("If the clause limits employees to one person, then Contradiction", "Contradiction", "Employees"),
    ("If the clause is about notices only, then NotMentioned", "NotMentioned", ""),
    ("If the clause allows affiliates as third parties, then Entailment", "Entailment", "Third parties"),
]


def _scattered(task, reviewer, proposer):
    """Approve the rules (each joins its topic's group), then have reviewers order them scattered, as SCATTERED."""
    rules = [approve(task, reviewer, text, label, topic) for text, label, topic in SCATTERED]
    order = [r.pk for r in rules]
    proposal = ruleset_reorder_propose(task=task, user=proposer, order=order, reason="Scattered on purpose",
                                       signature=sign_order_proposal(proposer, task, order))
    ruleset_reorder_approve(proposal=proposal, user=reviewer, signature=sign_order_approval(reviewer, proposal))
    return rules


def test_rule_set_prompt_report_and_entries_number_every_rule_alike(
    client, task, admin_user, auditor, reviewer, second_reviewer
) -> None:
    rules = _scattered(task, second_reviewer, reviewer)
    assert [r.pk for r in ruleset_rules(task)] == [r.pk for r in rules]
    version = compiled(task, admin_user)
    expected = {rule.pk: n for n, rule in enumerate(rules, start=1)}

    entries = {e.rule_id: e.position for e in PromptVersionRule.objects.filter(prompt_version=version)}
    assert entries == expected

    # The prompt: numbers in reviewed order, topics only label runs of consecutive rules.
    numbered = re.findall(r"^Rule (\d+) \[\w+\]: (.+)$", version.text, flags=re.MULTILINE)
    by_text = {text: rule.pk for rule, (text, _label, _topic) in zip(rules, SCATTERED, strict=True)}
    assert {by_text[text]: int(n) for n, text in numbered} == expected
    positions = [version.text.index(text) for text, _label, _topic in SCATTERED]
    assert positions == sorted(positions)
    assert [line for line in version.text.splitlines() if line.startswith("## ")] == [
        "## Employees", "## Third parties", "## Employees", "## Other rules", "## Third parties"
    ]
    assert [(topic, len(run)) for topic, run in topic_runs(rules)] == [
        ("Employees", 1), ("Third parties", 1), ("Employees", 1), ("Other rules", 1), ("Third parties", 1)
    ]

    # The rule-set page.
    client.force_login(auditor)
    page = client.get(f"/tasks/{task.name}/ruleset/").content.decode()
    shown = re.findall(r'>Rule (\d+)</a> <span class="muted">\(id (\d+)\)</span>', page)
    assert {int(pk): int(n) for n, pk in shown} == expected

    # The report, as data and as rendered.
    data = report_data(prompt_version=version, generated_by=auditor, generated_at=datetime.now(UTC), report_id=None,
                       identity=None)
    assert {r["rule_id"]: r["position"] for r in data["rules"]} == expected
    html = report_render_html(data)
    for rule in rules:
        assert f"Rule {expected[rule.pk]} → {rule.current_revision.label}" in html


def test_renumbering_alone_is_not_a_rule_change_in_the_version_diff(
    client, task, admin_user, reviewer, second_reviewer
) -> None:
    rules = _scattered(task, second_reviewer, reviewer)
    old = compiled(task, admin_user)
    first = rules[0]
    first.refresh_from_db()
    rule_reject(rule=first, user=reviewer, lock_version=first.lock_version, reason="Covered by the next rules",
        signature=sign_rejection(reviewer, first))
    new = compiled(task, admin_user)
    diff = prompt_version_diff(old=old, new=new)
    assert [e.rule_id for e in diff.removed] == [first.pk]
    assert diff.changed == [] and diff.unchanged == 4 and diff.renumbered == 4
    client.force_login(reviewer)
    page = client.get(f"/prompts/compare/?a={old.pk}&b={new.pk}").content.decode()
    assert "Rules changed (0; 4 unchanged, of which 4 only renumbered" in page


def test_a_rule_moved_against_the_others_is_a_change() -> None:
    assert moved_rules([1, 2, 3, 4], [1, 2, 3, 4]) == set()
    assert moved_rules([2, 3, 4], [2, 3, 4]) == set()
    assert moved_rules([1, 2, 3, 4], [1, 4, 2, 3]) == {4}
    assert len(moved_rules([1, 2, 3], [3, 2, 1])) == 2  # one rule keeps its place, two moved around it
