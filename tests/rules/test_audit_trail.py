"""Every write path leaves history records with the acting user and a reason; nothing bypasses them."""
from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import RequestFactory

from rules.models import Decision, Rule, RuleRevision, RuleSetReorderApproval, RuleSetReorderProposal
from rules.review.services import (
    decision_undo,
    rule_approve,
    rule_create,
    rule_edit,
    rule_reject,
    ruleset_reorder_approve,
    ruleset_reorder_propose,
    ruleset_reorder_reject,
)
from tests.support.factories import teacher_rule
from tests.support.signatures import (
    sign_approval,
    sign_edit,
    sign_order_approval,
    sign_order_proposal,
    sign_order_rejection,
    sign_rejection,
    sign_writing,
)

AUDITED = (Rule, RuleRevision, Decision, RuleSetReorderProposal, RuleSetReorderApproval)


def _new_records(write: Callable[[], object]) -> list:
    marks = {model: model.history.order_by("-history_id").values_list("history_id", flat=True).first() or 0
             for model in AUDITED}
    write()
    records = []
    for model, mark in marks.items():
        records += list(model.history.filter(history_id__gt=mark).select_related("history_user"))
    return records


def _assert_audited(records: list, user, *, expect: set[str]) -> None:
    assert records, "the write left no history"
    kinds = {type(r).__name__.removeprefix("Historical") for r in records}
    assert expect <= kinds, kinds
    for record in records:
        assert record.history_user == user, record
        assert record.history_change_reason, record


@pytest.mark.django_db
def test_a_teacher_proposal_is_recorded_with_its_reason(task) -> None:
    records = _new_records(lambda: teacher_rule(task))
    assert {r.history_change_reason for r in records} >= {"Proposed by gemma-3-270m-q4_k_m"}
    assert all(r.history_change_reason for r in records)


@pytest.mark.django_db
def test_writing_a_rule_by_hand_is_recorded(task, reviewer) -> None:
    records = _new_records(lambda: rule_create(task=task, user=reviewer, text="If x, then Entailment",
                                               label="Entailment", reason="Gap in coverage",
                                                   signature=sign_writing(reviewer, text="If x, then Entailment",
                                                       label="Entailment")))
    _assert_audited(records, reviewer, expect={"Rule", "RuleRevision", "Decision"})


@pytest.mark.django_db
def test_approving_is_recorded(task, reviewer) -> None:
    rule = teacher_rule(task)
    records = _new_records(lambda: rule_approve(rule=rule, user=reviewer, lock_version=1, reason="Precise",
        signature=sign_approval(reviewer, rule)))
    _assert_audited(records, reviewer, expect={"Rule", "Decision"})
    assert any("Precise" in r.history_change_reason for r in records)


@pytest.mark.django_db
def test_editing_is_recorded(task, reviewer) -> None:
    rule = teacher_rule(task)
    records = _new_records(lambda: rule_edit(rule=rule, user=reviewer, lock_version=1, reason="Name the people",
                                             text="If staff, then Entailment", label="Entailment",
                                                 signature=sign_edit(reviewer, text="If staff, then Entailment",
                                                     label="Entailment")))
    _assert_audited(records, reviewer, expect={"Rule", "RuleRevision", "Decision"})
    assert any("Name the people" in r.history_change_reason for r in records)


@pytest.mark.django_db
def test_rejecting_is_recorded(task, reviewer) -> None:
    rule = teacher_rule(task)
    records = _new_records(lambda: rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too vague",
        signature=sign_rejection(reviewer, rule)))
    _assert_audited(records, reviewer, expect={"Rule", "Decision"})


@pytest.mark.django_db
def test_undoing_is_recorded(task, reviewer) -> None:
    rule = teacher_rule(task)
    decision = rule_reject(rule=rule, user=reviewer, lock_version=1, reason="Too vague",
        signature=sign_rejection(reviewer, rule))
    records = _new_records(lambda: decision_undo(decision=decision, user=reviewer))
    _assert_audited(records, reviewer, expect={"Rule", "Decision"})


@pytest.mark.django_db
def test_reordering_is_recorded(task, reviewer, second_reviewer) -> None:
    first, second = teacher_rule(task), teacher_rule(task, text="If y, then Entailment")
    rule_approve(rule=first, user=reviewer, lock_version=1, signature=sign_approval(reviewer, first))
    rule_approve(rule=second, user=reviewer, lock_version=1, signature=sign_approval(reviewer, second))
    proposed: list = []
    records = _new_records(lambda: proposed.append(ruleset_reorder_propose(
        task=task, user=reviewer, order=[second.pk, first.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [second.pk, first.pk]))))
    _assert_audited(records, reviewer, expect={"RuleSetReorderProposal"})
    records = _new_records(lambda: ruleset_reorder_approve(proposal=proposed[0], user=second_reviewer,
        signature=sign_order_approval(second_reviewer, proposed[0])))
    _assert_audited(records, second_reviewer, expect={"Rule", "Decision", "RuleSetReorderProposal",
                                                      "RuleSetReorderApproval"})
    assert sum(1 for r in records if isinstance(r, Rule.history.model)) == 2


@pytest.mark.django_db
def test_rejecting_an_order_is_recorded(task, reviewer, second_reviewer) -> None:
    first, second = teacher_rule(task), teacher_rule(task, text="If y, then Entailment")
    rule_approve(rule=first, user=reviewer, lock_version=1, signature=sign_approval(reviewer, first))
    rule_approve(rule=second, user=reviewer, lock_version=1, signature=sign_approval(reviewer, second))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[second.pk, first.pk], reason="Narrow first",
        signature=sign_order_proposal(reviewer, task, [second.pk, first.pk]))
    records = _new_records(lambda: ruleset_reorder_reject(proposal=proposal, user=second_reviewer, reason="No",
        signature=sign_order_rejection(second_reviewer, proposal)))
    _assert_audited(records, second_reviewer, expect={"RuleSetReorderProposal"})


@pytest.mark.django_db
def test_the_admin_cannot_add_change_or_delete_anything(admin_user) -> None:
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    admin_user.is_staff = admin_user.is_superuser = True
    for model in (Rule, RuleRevision, Decision, RuleSetReorderProposal, RuleSetReorderApproval):
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)
        assert model_admin.revert_disabled(request)
        assert not model_admin.get_actions(request)


def test_no_code_bypasses_history_with_update_or_delete_on_audited_models() -> None:
    audited_names = {"Rule", "RuleRevision", "Decision", "PromptVersion", "Promotion", "Report",
                     "RuleSetReorderProposal", "RuleSetReorderApproval"}
    related = {"revisions", "decisions", "prompt_versions", "promotions", "reports", "rules", "refinements"}
    offenders = []
    for app in ("rules", "evaluation"):
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in {"update", "bulk_update", "delete"}:
                    continue
                receiver = ast.unparse(node.func.value)
                names = {n.id for n in ast.walk(node.func.value) if isinstance(n, ast.Name)}
                attrs = {n.attr for n in ast.walk(node.func.value) if isinstance(n, ast.Attribute)}
                on_audited_queryset = bool(names & audited_names) and "objects" in attrs
                on_related_manager = bool(attrs & related)
                if on_audited_queryset or on_related_manager:
                    offenders.append(f"{path.relative_to(settings.BASE_DIR)}:{node.lineno} {receiver}.{node.func.attr}")
    assert offenders == []


def test_no_module_but_the_services_builds_a_decision() -> None:
    # Decisions carry the four-eyes and signature semantics; one builder (review.services.decision_record) keeps them.
    offenders = []
    for app in ("rules", "evaluation", "pldreview"):
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py")):
            if "migrations" in path.parts or path == Path(settings.BASE_DIR) / "rules" / "review" / "services.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                creates = name == "create" and "Decision" in ast.unparse(node.func)
                if name == "Decision" or creates:
                    offenders.append(f"{path.relative_to(settings.BASE_DIR)}:{node.lineno}")
    assert offenders == []
