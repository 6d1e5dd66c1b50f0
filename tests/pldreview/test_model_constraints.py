"""The database refuses a row the services never write: check constraints, tried through the side doors.

Each case writes past ``full_clean`` (a queryset ``update()`` or a plain ``create()``) and expects the
database itself to name the constraint it broke. Run on SQLite and PostgreSQL (``scripts/test-postgres``).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from evaluation.models import ApiToken, ClassifyCall, DecisionLogPolicy, EvaluationRun, PromotionOverride, Report
from evaluation.production.api_tokens import api_token_create
from evaluation.production.decision_log import decision_policy_set
from evaluation.release.promotion import promotion_override_request
from evaluation.runs.services import evaluation_run_create
from pldreview.jobs import job_create
from pldreview.models import Job, Signature
from rules.models import Decision, Example, PromptVersion, Rule, RuleSetReorderProposal
from tests.support.factories import ExampleFactory, make_examples, teacher_rule
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import sign_override_request, sign_revocation

JOB_HANDLER = "tests.pldreview.handlers.count_to"


def _refused(constraint: str, write: Callable[[], object]) -> None:
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        write()
    assert constraint in str(caught.value)


def test_a_rule_keeps_its_choices_and_an_approved_rule_has_a_position(task) -> None:
    rule = teacher_rule(task)
    rules = Rule.objects.filter(pk=rule.pk)
    _refused("rule_in_choices", lambda: rules.update(status="archived"))
    _refused("rule_in_choices", lambda: rules.update(origin="guess"))
    _refused("rule_in_choices", lambda: rules.update(diagnosis="MAYBE"))
    _refused("rule_approved_has_position", lambda: rules.update(status="approved"))
    rules.update(status="approved", position=1)  # what rule_approve writes
    assert Rule.objects.get(pk=rule.pk).status == "approved"


def test_a_decision_keeps_its_choices_and_an_undo_names_what_it_undoes(task, reviewer) -> None:
    rule = teacher_rule(task)
    noise = Decision.objects.create(rule=rule, action="promote_noise", reviewer=reviewer, status_after="pending")
    _refused("decision_in_choices", lambda: Decision.objects.create(rule=rule, action="shrug", reviewer=reviewer))
    _refused("decision_in_choices", lambda: Decision.objects.create(
        rule=rule, action="promote_noise", reviewer=reviewer, status_after="lost"))
    _refused("decision_undo_names_what_it_undoes",
             lambda: Decision.objects.create(rule=rule, action="undo", reviewer=reviewer, status_after="pending"))
    _refused("decision_undo_names_what_it_undoes", lambda: Decision.objects.create(
        rule=rule, action="promote_noise", reviewer=reviewer, status_after="pending", undoes=noise))
    undo = Decision.objects.create(rule=rule, action="undo", reviewer=reviewer, status_after="pending", undoes=noise)
    assert undo.undoes == noise


def test_examples_versions_and_order_proposals_keep_their_choices(task, reviewer, second_reviewer,
                                                                  admin_user) -> None:
    approve_all(task, reviewer)
    version = compiled(task, admin_user)
    example = ExampleFactory(task=task)
    _refused("example_in_choices", lambda: Example.objects.filter(pk=example.pk).update(split="holdout"))
    # The immutability trigger lets the status change; the constraint keeps it a status.
    _refused("prompt_version_in_choices", lambda: PromptVersion.objects.filter(pk=version.pk).update(status="beta"))
    _refused("reorder_proposal_in_choices", lambda: RuleSetReorderProposal.objects.create(
        task=task, proposed_by=reviewer, order=[], base_order=[], status="maybe", decided_by=second_reviewer))


def test_a_job_keeps_its_state_and_never_passes_its_total(db, tmp_path) -> None:
    job = job_create(kind=JOB_HANDLER, title="Count", params={"n": 4, "dir": str(tmp_path)})
    jobs = Job.objects.filter(pk=job.pk)
    _refused("job_in_choices", lambda: jobs.update(state="lost"))
    _refused("job_done_within_total", lambda: jobs.update(done=5, total=4))
    jobs.update(done=3, total=0)  # counted before the total is declared
    jobs.update(done=4, total=4)
    assert Job.objects.get(pk=job.pk).percent == 100


def test_a_signature_meaning_is_one_of_the_meanings(reviewer) -> None:
    _refused("signature_in_choices", lambda: Signature.objects.create(
        user=reviewer, username=reviewer.username, full_name="Rita Reyes", meaning="agreed", content_sha256="a" * 64,
        reauth_policy="password", password_checked=True))


def test_evaluation_runs_policies_calls_and_reports_keep_their_choices(task, reviewer, admin_user) -> None:
    make_examples(task, 3, split="test")
    run = evaluation_run_create(task=task, mode="zero-shot")
    runs = EvaluationRun.objects.filter(pk=run.pk)
    _refused("evaluation_run_in_choices", lambda: runs.update(mode="many-shot"))
    _refused("evaluation_run_in_choices", lambda: runs.update(status="paused"))
    _refused("evaluation_run_in_choices", lambda: runs.update(split="holdout"))
    policy = decision_policy_set(task=task, input_retention="hash", retention_days=30, user=admin_user, reason="7.2")
    _refused("decision_log_policy_in_choices",
             lambda: DecisionLogPolicy.objects.filter(pk=policy.pk).update(input_retention="forever"))
    approve_all(task, reviewer)
    version = compiled(task, admin_user)
    call = {"request_id": uuid.uuid4(), "task": task, "prompt_version": version, "prompt_sha256": version.sha256,
            "model_sha256": "m" * 64, "label": "Entailment", "top_probability": 0.9, "latency_ms": 5.0,
            "input_sha256": "i" * 64}
    _refused("classify_call_in_choices",
             lambda: ClassifyCall.objects.create(source="email", input_retention="hash", **call))
    _refused("classify_call_in_choices",
             lambda: ClassifyCall.objects.create(source="api", input_retention="forever", **call))
    _refused("classify_call_in_choices", lambda: ClassifyCall.objects.create(
        source="api", input_retention="hash", student_backend="cache", **call))
    _refused("report_in_choices",
             lambda: Report.objects.create(prompt_version=version, generated_by=admin_user, status="lost"))
    _refused("report_ready_has_file",
             lambda: Report.objects.create(prompt_version=version, generated_by=admin_user, status="ready"))


def test_an_override_is_withdrawn_by_someone_and_keeps_its_choices(task, reviewer, admin_user) -> None:
    approve_all(task, reviewer)
    version = compiled(task, admin_user)
    override = promotion_override_request(prompt_version=version, user=admin_user, reason="Pilot",
                                          justification="No evaluation yet",
                                          signature=sign_override_request(admin_user, version))
    overrides = PromotionOverride.objects.filter(pk=override.pk)
    _refused("promotion_override_in_choices", lambda: overrides.update(status="parked"))
    _refused("promotion_override_withdrawn_by_someone", lambda: overrides.update(status="withdrawn"))
    _refused("promotion_override_withdrawn_by_someone", lambda: overrides.update(withdrawn_by=admin_user))


def test_a_signed_revocation_belongs_to_a_revoked_token(reviewer, admin_user) -> None:
    token, _raw = api_token_create(user=reviewer, name="ci", created_by=admin_user)
    signature = sign_revocation(admin_user, token)
    tokens = ApiToken.objects.filter(pk=token.pk)
    _refused("api_token_signed_revocation_is_revoked", lambda: tokens.update(revoked_signature=signature))
    tokens.update(revoked_signature=signature, revoked_at=timezone.now())


def test_raw_sql_is_refused_too(task) -> None:
    rule = teacher_rule(task)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE rules_rule SET status = 'archived' WHERE id = %s", [rule.pk])


def _allowed_values(condition: models.Q) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for child in condition.children:
        if isinstance(child, models.Q):
            found.update(_allowed_values(child))
        elif child[0].endswith("__in"):
            found[child[0].removesuffix("__in")] = set(child[1])
    return found


def test_every_field_with_choices_is_kept_within_them_by_the_database() -> None:
    missing = []
    for model in apps.get_models():
        if model._meta.app_label not in {"rules", "evaluation", "pldreview"} or model.__name__.startswith("Historical"):
            continue
        allowed: dict[str, set[str]] = {}
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.CheckConstraint):
                allowed.update(_allowed_values(constraint.condition))
        for field in model._meta.concrete_fields:
            if field.choices:
                values = {value for value, _label in field.choices} | ({""} if field.blank else set())
                if allowed.get(field.name) != values:
                    missing.append(f"{model.__name__}.{field.name}")
    assert missing == []


# The triggers the migrations write by hand (the append-only ones: test_ledger_append_only.py). A migration
# that rebuilds a SQLite table must keep them (pldreview.db_triggers.keep_sqlite_triggers).
SQLITE_TRIGGERS = {
    "pld_account_change_settled",
    "pld_classifycall_no_update", "pld_decision_four_eyes", "pld_decision_four_eyes_update",
    "pld_decision_signature_kept", "pld_decision_signed", "pld_decisionfeedback_no_update",
    "pld_permit_close_only", "pld_permit_no_delete", "pld_promotion_append_only",
    "pld_promotion_override_append_only", "pld_prompt_entry_insert",
    "pld_prompt_entry_update", "pld_prompt_version_immutable", "pld_reorder_approval_four_eyes",
    "pld_reorder_approval_four_eyes_update", "pld_rulecomment_append_only", "pld_signature_append_only",
    "pld_username_immutable", "rules_search_decision_delete", "rules_search_decision_insert",
    "rules_search_example_delete", "rules_search_example_insert", "rules_search_rule_delete",
    "rules_search_rule_insert", "rules_search_rule_update",
    # Issue 23: rule impact runs once finished, their decisions and explanations never change.
    "pld_ruleimpactrun_finished", "pld_ruleimpactrun_finished_del", "pld_ruleimpactdecision_no_update",
    "pld_decisionexplanation_no_update",
    # Issue 25: a membership someone added names their signature; memberships are never edited.
    "pld_taskmembership_signed", "pld_taskmembership_frozen", "pld_taskmembership_removed",
}
POSTGRES_TRIGGERS = {
    "pld_account_change_settled",
    "pld_classifycall_no_update", "pld_decision_four_eyes", "pld_decision_signed", "pld_decisionfeedback_no_update",
    "pld_permit_guard", "pld_permit_guard_truncate", "pld_promotion_append_only",
    "pld_promotion_override_append_only", "pld_prompt_entry_immutable",
    "pld_prompt_version_immutable", "pld_reorder_approval_four_eyes", "pld_rulecomment_append_only",
    "pld_signature_append_only", "pld_user_identity_guard",
    "pld_ruleimpactrun_finished", "pld_ruleimpactdecision_no_update", "pld_decisionexplanation_no_update",
    "pld_taskmembership_signed", "pld_taskmembership_frozen", "pld_taskmembership_removed",
}


@pytest.mark.django_db
def test_the_migrated_database_keeps_every_hand_written_trigger() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name NOT LIKE 'pld_ao_%'")
            expected = SQLITE_TRIGGERS
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname NOT LIKE 'pld_ao_%'")
            expected = POSTGRES_TRIGGERS
        assert {name for (name,) in cursor.fetchall()} == expected
