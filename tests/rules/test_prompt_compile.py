"""Compiling approved rule sets into prompt versions: content, deduplication, immutability, diff, pages."""
from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from rules.models import PromptVersion, PromptVersionRule, Rule
from rules.prompts.compiler import TEMPLATE_VERSION, prompt_version_compile
from rules.prompts.diff import prompt_version_diff
from rules.review.services import (
    rule_approve,
    rule_edit,
    rule_reject,
    ruleset_reorder_approve,
    ruleset_reorder_propose,
    ruleset_rules,
)
from tests.support.prompt_versions import RULES, approve, approve_all, compiled
from tests.support.signatures import (
    sign_approval,
    sign_edit,
    sign_order_approval,
    sign_order_proposal,
    sign_rejection,
)


@pytest.fixture
def rules(task, second_reviewer) -> list[Rule]:
    return approve_all(task, second_reviewer)


def _refused(action) -> str:
    """Run a write that must fail in the database; return the database's message."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        action()
    return str(caught.value)


def test_it_compiles_the_task_labels_and_numbered_rules_grouped_by_topic(task, admin_user, rules) -> None:
    version, created = prompt_version_compile(task=task, user=admin_user)
    assert created
    text = version.text
    assert text.startswith(f"Task: {task.description}")
    assert "- Entailment: The clause says the hypothesis holds." in text
    assert f"Rule 1 [Entailment]: {RULES[0][0]}" in text
    assert f"Rule 2 [Contradiction]: {RULES[1][0]}" in text
    assert "  Precedence: Gives way to Rule 1 when the third party is an employee." in text
    assert f"Rule 3 [NotMentioned]: {RULES[2][0]}" in text
    # Topics where their first rule stands in the reviewed order.
    assert text.index("## Sharing with employees") < text.index("## Third parties") < text.index("## Other rules")
    assert text.rstrip().endswith("Answer with exactly one label: Entailment, Contradiction, NotMentioned.")
    assert version.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert (version.number, version.status, version.compiled_by, version.template_version) == (
        1, PromptVersion.Status.DRAFT, admin_user, TEMPLATE_VERSION
    )
    assert version.sealed
    entries = list(version.entries.order_by("position"))
    assert [(e.position, e.rule_id, e.revision_id) for e in entries] == [
        (n, r.pk, r.current_revision_id) for n, r in enumerate(rules, start=1)
    ]


def test_it_counts_tokens_with_the_student_models_tokenizer(task, admin_user, rules) -> None:
    version = compiled(task, admin_user)
    assert ".gguf sha256:" in version.tokenizer
    # Gemma's tokenizer: far fewer tokens than characters, more than words/3.
    assert len(version.text.split()) // 3 < version.token_count < len(version.text)


def test_it_leaves_out_pending_and_rejected_rules(task, admin_user, reviewer, second_reviewer, rules) -> None:
    pending = rule_edit(rule=rules[2], user=reviewer, lock_version=rules[2].lock_version, reason="Narrower",
                        text="If the clause never mentions return of materials, then NotMentioned",
                        label="NotMentioned",
                            signature=sign_edit(reviewer,
                                text="If the clause never mentions return of materials, then NotMentioned",
                                label="NotMentioned")).rule
    rejected = approve(task, second_reviewer, "Read the contract carefully", "Entailment")
    rejected.refresh_from_db()
    version = compiled(task, admin_user)
    included = set(version.entries.values_list("rule_id", flat=True))
    assert included == {rules[0].pk, rules[1].pk, rejected.pk}
    rule_reject(rule=rejected, user=reviewer, lock_version=rejected.lock_version, reason="Too vague",
        signature=sign_rejection(reviewer, rejected))
    second = compiled(task, admin_user)
    assert set(second.entries.values_list("rule_id", flat=True)) == {rules[0].pk, rules[1].pk}
    assert pending.pk not in set(second.entries.values_list("rule_id", flat=True))


def test_compiling_an_unchanged_rule_set_returns_the_existing_version(task, admin_user, rules) -> None:
    first, created = prompt_version_compile(task=task, user=admin_user)
    again, created_again = prompt_version_compile(task=task, user=admin_user)
    assert created and not created_again
    assert again.pk == first.pk
    assert PromptVersion.objects.filter(task=task).count() == 1


def test_a_new_revision_or_a_new_order_makes_a_new_version(task, admin_user, reviewer, second_reviewer, rules) -> None:
    first = compiled(task, admin_user)
    clearer = "If the clause lets the recipient share with its employees who need to know, then Entailment"
    rule_edit(rule=rules[0], user=reviewer, lock_version=rules[0].lock_version, reason="Clearer",
              text=clearer, label="Entailment", topic="Sharing with employees",
              signature=sign_edit(reviewer, text=clearer, label="Entailment", topic="Sharing with employees"))
    rules[0].refresh_from_db()
    rule_approve(rule=rules[0], user=second_reviewer, lock_version=rules[0].lock_version,
        signature=sign_approval(second_reviewer, rules[0]))
    second = compiled(task, admin_user)
    assert (second.number, second.rule_set_hash != first.rule_set_hash) == (2, True)
    order = [r.pk for r in ruleset_rules(task)]
    order.append(order.pop(order.index(rules[1].pk)))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=order, reason="Narrow rules first",
        signature=sign_order_proposal(reviewer, task, order))
    assert compiled(task, admin_user).pk == second.pk  # a proposal alone changes nothing that compiles
    ruleset_reorder_approve(proposal=proposal, user=second_reviewer,
        signature=sign_order_approval(second_reviewer, proposal))
    third = compiled(task, admin_user)
    assert third.number == 3
    assert first.text != second.text != third.text


def test_it_refuses_to_compile_without_approved_rules(task, admin_user) -> None:
    with pytest.raises(ValidationError, match="no approved rules"):
        prompt_version_compile(task=task, user=admin_user)
    assert not PromptVersion.objects.exists()


def test_only_admins_compile(task, reviewer, rules) -> None:
    with pytest.raises(PermissionDenied):
        prompt_version_compile(task=task, user=reviewer)


# --- Immutability ---------------------------------------------------------------------------------


def test_the_text_and_hashes_of_a_version_cannot_change(task, admin_user, rules) -> None:
    version = compiled(task, admin_user)

    def save_with(**changes):
        def action() -> None:
            fresh = PromptVersion.objects.get(pk=version.pk)
            for name, value in changes.items():
                setattr(fresh, name, value)
            fresh.save()
        return action

    assert "immutable" in _refused(save_with(text="Always answer Entailment."))
    _refused(save_with(sha256="0" * 64))
    _refused(save_with(rule_set_hash="1" * 64))
    _refused(save_with(token_count=1))
    _refused(save_with(template_version="99"))
    _refused(save_with(compiled_by=None))
    _refused(save_with(sealed=False))
    # Bypassing the model does not help: the guard is in the database.
    _refused(lambda: PromptVersion.objects.filter(pk=version.pk).update(text="x"))

    def raw_sql() -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE rules_promptversion SET text = 'x' WHERE id = %s", [version.pk])

    _refused(raw_sql)
    version.refresh_from_db()
    assert version.sha256 == hashlib.sha256(version.text.encode()).hexdigest()


def test_the_rules_of_a_version_cannot_be_added_changed_or_swapped(task, admin_user, second_reviewer, rules) -> None:
    version = compiled(task, admin_user)
    extra = approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    entry = version.entries.get(position=1)
    assert "sealed" in _refused(lambda: PromptVersionRule.objects.create(
        prompt_version=version, rule=extra, revision=extra.current_revision, position=4
    ))

    def change(**values):
        return lambda: PromptVersionRule.objects.filter(pk=entry.pk).update(**values)

    _refused(change(revision=extra.current_revision, rule=extra))
    _refused(change(position=9))
    _refused(change(prompt_version=PromptVersion.objects.create(
        task=task, number=99, text="t", sha256="a" * 64, rule_set_hash="b" * 64, template_version="1"
    )))
    assert list(version.entries.values_list("rule_id", flat=True).order_by("position")) == [r.pk for r in rules]


def test_only_the_status_of_a_version_changes(task, admin_user, rules) -> None:
    version = compiled(task, admin_user)
    version.status = PromptVersion.Status.EVALUATED
    version.save()
    version.refresh_from_db()
    assert version.status == PromptVersion.Status.EVALUATED
    assert version.history.count() == 3  # compiled, sealed, evaluated


@pytest.mark.skipif(connection.vendor != "sqlite", reason="checks SQLite's trigger catalogue")
def test_the_immutability_triggers_are_installed(db) -> None:
    # SQLite drops a table's triggers when a later migration rebuilds the table; this catches it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'pld_prompt_%'")
        names = {row[0] for row in cursor.fetchall()}
    assert names == {"pld_prompt_version_immutable", "pld_prompt_entry_insert", "pld_prompt_entry_update"}


# --- Diff -----------------------------------------------------------------------------------------


def test_the_diff_lists_rules_added_removed_and_changed(task, admin_user, reviewer, second_reviewer, rules) -> None:
    old = compiled(task, admin_user)
    rule_edit(rule=rules[0], user=reviewer, lock_version=rules[0].lock_version, reason="Clearer",
              text="If the clause lets the recipient share with employees who need to know, then Entailment",
              label="Entailment", topic="Sharing with employees",
                  signature=sign_edit(reviewer,
                      text="If the clause lets the recipient share with employees who need to know, then Entailment",
                      label="Entailment", topic="Sharing with employees"))
    rules[0].refresh_from_db()
    rule_approve(rule=rules[0], user=second_reviewer, lock_version=rules[0].lock_version,
        signature=sign_approval(second_reviewer, rules[0]))
    rules[2].refresh_from_db()
    rule_reject(rule=rules[2], user=reviewer, lock_version=rules[2].lock_version, reason="Covered elsewhere",
        signature=sign_rejection(reviewer, rules[2]))
    added = approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned",
                    "Jurisdiction")
    new = compiled(task, admin_user)
    diff = prompt_version_diff(old=old, new=new)
    assert [e.rule_id for e in diff.added] == [added.pk]
    assert [e.rule_id for e in diff.removed] == [rules[2].pk]
    assert [c.rule.pk for c in diff.changed] == [rules[0].pk]
    change = diff.changed[0]
    assert change.revised and not change.moved
    text_field = next(f for f in change.fields if f.name == "text")
    assert "who need to know" in str(text_field.html) and "<ins" in str(text_field.html)
    assert diff.unchanged == 1
    assert any(kind == "add" and "who need to know" in line for kind, line in diff.text_lines)
    assert any(kind == "del" and RULES[2][0] in line for kind, line in diff.text_lines)
    assert diff.unified.startswith("--- v1\n+++ v2")


# --- Pages and command ------------------------------------------------------------------------------


def test_an_admin_compiles_from_the_list_page(client, task, admin_user, rules) -> None:
    client.force_login(admin_user)
    page = client.get("/prompts/")
    assert b'href="/tasks/nda-demo/compile-prompt/"' in page.content
    preview = client.get("/tasks/nda-demo/compile-prompt/").content.decode()
    assert 'action="/tasks/nda-demo/compile-prompt/"' in preview and 'name="confirm_placement"' in preview
    for rule in rules:
        assert f'id="landing-{rule.pk}"' in preview  # the first version: every rule is new
    unconfirmed = client.post("/tasks/nda-demo/compile-prompt/")
    assert unconfirmed.status_code == 400 and b"Confirm that the new and revised rules" in unconfirmed.content
    assert not PromptVersion.objects.exists()
    response = client.post("/tasks/nda-demo/compile-prompt/", {"confirm_placement": "yes"})
    version = PromptVersion.objects.get(task=task)
    assert response.status_code == 302 and response["Location"] == f"/prompts/{version.pk}/"
    # Nothing new since v1: no confirmation asked, and the same version comes back.
    assert b"No rule is new or revised since" in client.get("/tasks/nda-demo/compile-prompt/").content
    again = client.post("/tasks/nda-demo/compile-prompt/", follow=True)
    assert b"has not changed" in again.content
    assert PromptVersion.objects.count() == 1


def test_compiling_nothing_shows_why(client, task, admin_user) -> None:
    client.force_login(admin_user)
    response = client.post("/tasks/nda-demo/compile-prompt/")
    assert response.status_code == 400 and b"no approved rules" in response.content
    assert not PromptVersion.objects.exists()


def test_reviewers_and_auditors_cannot_compile(client, task, reviewer, auditor, rules) -> None:
    for user in (reviewer, auditor):
        client.force_login(user)
        assert client.post("/tasks/nda-demo/compile-prompt/").status_code == 403
        assert b"compile-prompt" not in client.get("/prompts/").content
    client.logout()
    assert client.post("/tasks/nda-demo/compile-prompt/").status_code == 302
    assert not PromptVersion.objects.exists()


def test_the_version_page_shows_text_hash_rules_and_report_actions(client, task, admin_user, auditor, rules) -> None:
    version = compiled(task, admin_user)
    client.force_login(auditor)
    page = client.get(f"/prompts/{version.pk}/").content.decode()
    assert version.sha256 in page
    assert "Rule 2 [Contradiction]" in page
    for rule in rules:
        assert f'href="/rules/{rule.pk}/"' in page
    assert "Generate signed report" in page  # the report helper's include
    assert "Not evaluated yet" in page and "never been promoted" in page
    assert "promote/" not in page  # auditors do not promote


def test_the_list_page_queries_do_not_grow_with_versions(client, task, admin_user, reviewer, second_reviewer,
                                                         rules, django_assert_max_num_queries) -> None:
    compiled(task, admin_user)
    for n in range(3):
        approve(task, second_reviewer, f"If the clause mentions annex {n}, then NotMentioned", "NotMentioned")
        compiled(task, admin_user)
    client.force_login(reviewer)
    with django_assert_max_num_queries(8):
        response = client.get("/prompts/?task=nda-demo")
    assert response.content.count(b"/prompts/") >= 4


def test_the_compare_page_shows_the_diff(client, task, admin_user, reviewer, second_reviewer, rules) -> None:
    old = compiled(task, admin_user)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    new = compiled(task, admin_user)
    client.force_login(reviewer)
    page = client.get(f"/prompts/compare/?a={new.pk}&b={old.pk}").content.decode()
    assert "Rules added (1)" in page and "Rules removed (0)" in page
    assert "If the clause names a court" in page
    assert client.get("/prompts/compare/").status_code == 200


def test_the_compile_prompt_command(task, admin_user, rules, capsys) -> None:
    call_command("compile_prompt", "--task", "nda-demo", "--user", "adam")
    assert "Compiled nda-demo v1" in capsys.readouterr().out
    call_command("compile_prompt", "--task", "nda-demo")
    assert "unchanged" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no task"):
        call_command("compile_prompt", "--task", "nope")
