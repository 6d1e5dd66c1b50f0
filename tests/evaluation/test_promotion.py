"""The promotion gate, two-Admin overrides, promotion and rollback, one production version per task, the command."""
from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from evaluation.models import Promotion, PromotionOverride
from evaluation.release.promotion import (
    promotion_gate,
    promotion_override_confirm,
    promotion_override_request,
    promotion_override_withdraw,
    prompt_version_promote,
)
from pldreview.models import Job, Signature
from rules.models import PromptVersion
from tests.support.prompt_versions import (
    approve,
    approve_all,
    compiled,
    finished_run,
    gate_examples,
    gate_passing_run,
    scored_run,
)
from tests.support.signatures import sign_override_confirmation, sign_override_request, sign_promotion

REASON = "Better on the minority label"
JUSTIFICATION = "Legal asked for the court rule now; v1 misses every jurisdiction clause."


@pytest.fixture
def v1(task, admin_user, second_reviewer) -> PromptVersion:
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


@pytest.fixture
def v2(task, admin_user, second_reviewer, v1) -> PromptVersion:
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    return compiled(task, admin_user)


def _status(version: PromptVersion) -> str:
    version.refresh_from_db()
    return version.status


def _failing(version: PromptVersion) -> dict[str, str]:
    return {c.key: c.sentence for c in promotion_gate(prompt_version=version).conditions if not c.passed}


def _overridden(version: PromptVersion, first, second, reason: str = REASON) -> Promotion:
    override = promotion_override_request(prompt_version=version, user=first, reason=reason,
                                          justification=JUSTIFICATION,
        signature=sign_override_request(first, version))
    return promotion_override_confirm(override=override, user=second,
        signature=sign_override_confirmation(second, override.prompt_version))


def test_it_blocks_a_version_without_an_evaluation(v1, admin_user) -> None:
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed
    assert "no finished evaluation on the test split" in gate.problems[0]
    assert "has no test examples" in gate.problems[1]
    with pytest.raises(ValidationError, match="no finished evaluation"):
        prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v1))
    assert _status(v1) == PromptVersion.Status.DRAFT
    assert not Promotion.objects.exists()


@pytest.mark.parametrize("kind", ["dev split", "other model", "unfinished"])
def test_evaluations_that_do_not_count_leave_the_gate_closed(v1, admin_user, kind) -> None:
    if kind == "dev split":
        finished_run(v1, 0.9, split="dev")
    elif kind == "other model":
        finished_run(v1, 0.9, model_sha256="f" * 64)
    else:
        run = finished_run(v1, 0.9)
        run.status = run.Status.RUNNING
        run.save()
    assert not promotion_gate(prompt_version=v1).passed


def test_a_version_that_beats_both_baselines_and_follows_its_rules_passes(v1, admin_user) -> None:
    run = gate_passing_run(v1)
    gate = promotion_gate(prompt_version=v1)
    assert gate.passed, gate.problems
    assert [c.key for c in gate.conditions] == ["evaluated", "test_split", "baselines", "adherence", "production"]
    baselines = {c.key: c for c in gate.conditions}["baselines"]
    assert "macro-F1 1.000 vs 0.167" in baselines.figure
    low, _high = gate.figures["margin_over_baselines_ci95"]
    assert low > 0 and gate.figures["majority_label"] == "Entailment"
    assert gate.figures["adherence_ci95"][0] > 1 / 3
    promotion = prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    assert _status(v1) == PromptVersion.Status.PRODUCTION
    assert (promotion.prompt_version, promotion.from_version, promotion.evaluation_run) == (v1, None, run)
    assert (promotion.promoted_by, promotion.reason, promotion.is_rollback) == (admin_user, REASON, False)
    assert promotion.gate["passed"] and promotion.gate["candidate_macro_f1"] == 1.0
    assert promotion.override_justification == "" and promotion.override is None
    assert v1.history.first().history_change_reason.startswith("Promoted")


def test_the_bootstrap_is_paired_and_seeded(v1) -> None:
    gate_passing_run(v1, wrong=5)
    first = promotion_gate(prompt_version=v1).figures["margin_over_baselines_ci95"]
    assert promotion_gate(prompt_version=v1).figures["margin_over_baselines_ci95"] == first


def test_a_version_no_better_than_always_answering_the_majority_label_fails(task, v1) -> None:
    examples = gate_examples(task)
    scored_run(task, examples, wrong=len(examples))  # a zero-shot run wrong on every example: macro-F1 0
    scored_run(task, examples, version=v1, constant="Contradiction")
    failing = _failing(v1)
    assert list(failing) == ["baselines"]
    assert "does not beat the better baseline (always Entailment, 0.167)" in failing["baselines"]


def test_a_version_no_better_than_zero_shot_fails(task, v1) -> None:
    examples = gate_examples(task)
    scored_run(task, examples)  # a zero-shot run that gets every example right
    scored_run(task, examples, version=v1, wrong=3)
    failing = _failing(v1)
    assert list(failing) == ["baselines"] and "the better baseline (zero-shot, 1.000)" in failing["baselines"]


def test_a_missing_zero_shot_run_fails_the_gate_instead_of_passing(task, v1) -> None:
    scored_run(task, gate_examples(task), version=v1)
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed and gate.needs_zero_shot
    assert list(_failing(v1)) == ["baselines"]
    assert "no finished zero-shot run of the current model on the same test examples" in _failing(v1)["baselines"]
    # A zero-shot run of other examples does not count either.
    scored_run(task, gate_examples(task)[:9], constant="Entailment")
    assert list(_failing(v1)) == ["baselines"]


@pytest.mark.parametrize("adherence, sentence", [
    ((6, 20), "Rule adherence 0.30 (6 of 20) is not above chance"),
    # Above chance as a point, but its 95% interval reaches below chance.
    ((9, 20), "Rule adherence 0.45 (9 of 20) is not above chance"),
    (None, "Rule adherence was not measured"),
])
def test_a_version_whose_rules_are_not_followed_better_than_chance_fails(task, v1, adherence, sentence) -> None:
    examples = gate_examples(task)
    scored_run(task, examples, constant="Entailment")
    scored_run(task, examples, version=v1, adherence=adherence)
    failing = _failing(v1)
    assert list(failing) == ["adherence"] and sentence in failing["adherence"]


def test_it_blocks_a_version_below_production_and_retires_the_old_one_otherwise(
    v1, v2, admin_user, second_reviewer
) -> None:
    gate_passing_run(v1)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    gate_passing_run(v2, wrong=3)
    assert list(_failing(v2)) == ["production"]
    with pytest.raises(ValidationError, match="below the production version's 1.000"):
        prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v2))
    assert (_status(v1), _status(v2)) == (PromptVersion.Status.PRODUCTION, PromptVersion.Status.DRAFT)
    gate_passing_run(v2)  # a later, better run of the same version: shown, never judged (issue 22)
    assert list(_failing(v2)) == ["production"]
    approve(v2.task, second_reviewer, "If the clause names a judge, then NotMentioned", "NotMentioned")
    v3 = compiled(v2.task, admin_user)
    gate_passing_run(v3)
    promotion = prompt_version_promote(prompt_version=v3, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v3))
    assert (_status(v1), _status(v3)) == (PromptVersion.Status.RETIRED, PromptVersion.Status.PRODUCTION)
    assert promotion.from_version == v1
    assert promotion.gate["production_macro_f1"] == 1.0 and promotion.gate["candidate_macro_f1"] == 1.0


def test_the_margin_lets_a_slightly_lower_version_through(v1, v2, admin_user, settings) -> None:
    gate_passing_run(v1)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    run = gate_passing_run(v2, wrong=1)
    shortfall = 1.0 - run.macro_f1
    settings.PLD_PROMOTION_MARGIN = shortfall + 0.01
    assert promotion_gate(prompt_version=v2).passed
    settings.PLD_PROMOTION_MARGIN = 0.0
    assert not promotion_gate(prompt_version=v2).passed


def test_an_override_needs_a_justification_and_a_second_admin(v1, v2, admin_user, second_admin) -> None:
    gate_passing_run(v1)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    gate_passing_run(v2, wrong=4)
    with pytest.raises(ValidationError, match="A failing gate is overridden by two Admins"):
        prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v2))
    with pytest.raises(ValidationError, match="against the failing gate"):
        promotion_override_request(prompt_version=v2, user=admin_user, reason=REASON, justification="  ",
            signature=sign_override_request(admin_user, v2))
    override = promotion_override_request(prompt_version=v2, user=admin_user, reason=REASON,
                                          justification=JUSTIFICATION,
        signature=sign_override_request(admin_user, v2))
    assert _status(v2) == PromptVersion.Status.DRAFT  # a request alone promotes nothing
    assert override.gate["passed"] is False and "below the production version's" in override.gate["problems"][0]
    with pytest.raises(ValidationError, match="a different Admin must confirm it"):
        promotion_override_confirm(override=override, user=admin_user,
            signature=sign_override_confirmation(admin_user, override.prompt_version))
    with pytest.raises(ValidationError, match="already asked to override"):
        promotion_override_request(prompt_version=v2, user=second_admin, reason=REASON, justification="Me too",
            signature=sign_override_request(second_admin, v2))
    assert _status(v2) == PromptVersion.Status.DRAFT
    promotion = promotion_override_confirm(override=override, user=second_admin,
        signature=sign_override_confirmation(second_admin, override.prompt_version))
    promotion.refresh_from_db()
    assert _status(v2) == PromptVersion.Status.PRODUCTION
    assert promotion.override_justification == JUSTIFICATION and promotion.override == override
    assert (promotion.override_requested_by, promotion.promoted_by) == (admin_user, second_admin)
    assert promotion.gate["passed"] is False and promotion.gate["overridden"] is True
    assert any(c["key"] == "production" and not c["passed"] for c in promotion.gate["conditions"])
    override.refresh_from_db()
    assert (override.status, override.confirmed_by) == (PromotionOverride.Status.CONFIRMED, second_admin)
    with pytest.raises(ValidationError, match="confirmed"):
        promotion_override_confirm(override=override, user=second_admin,
            signature=sign_override_confirmation(second_admin, override.prompt_version))


def test_an_override_is_refused_while_the_gate_passes_and_can_be_withdrawn(v1, admin_user, second_admin) -> None:
    override = promotion_override_request(prompt_version=v1, user=admin_user, reason=REASON,
                                          justification=JUSTIFICATION,
        signature=sign_override_request(admin_user, v1))
    promotion_override_withdraw(override=override, user=second_admin)
    with pytest.raises(ValidationError, match="withdrawn"):
        promotion_override_confirm(override=override, user=second_admin,
            signature=sign_override_confirmation(second_admin, override.prompt_version))
    gate_passing_run(v1)
    with pytest.raises(ValidationError, match="The gate passes"):
        promotion_override_request(prompt_version=v1, user=admin_user, reason=REASON, justification=JUSTIFICATION,
            signature=sign_override_request(admin_user, v1))
    assert not Promotion.objects.exists()


def test_the_database_refuses_a_one_admin_override(v1, admin_user, second_admin) -> None:
    override = promotion_override_request(prompt_version=v1, user=admin_user, reason=REASON,
                                          justification=JUSTIFICATION,
        signature=sign_override_request(admin_user, v1))
    # Side door 1: confirming one's own request with a raw update.
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionOverride.objects.filter(pk=override.pk).update(
            status="confirmed", confirmed_by=admin_user, confirmed_at=timezone.now()
        )
    # Side door 2: a promotion row that names the same Admin twice, or an override without its request.
    base = {"task": v1.task, "prompt_version": v1, "reason": REASON, "promoted_by": admin_user}
    for extra in ({"override_justification": JUSTIFICATION, "override": override, "override_requested_by": admin_user},
                  {"override_justification": JUSTIFICATION}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Promotion.objects.bulk_create([Promotion(**base, **extra)])
    promotion = promotion_override_confirm(override=override, user=second_admin,
        signature=sign_override_confirmation(second_admin, override.prompt_version))
    # Side door 3: rewriting a settled request afterwards.
    with pytest.raises(DatabaseError), transaction.atomic():
        PromotionOverride.objects.filter(pk=override.pk).update(justification="Rewritten afterwards")
    override.refresh_from_db()
    assert override.justification == JUSTIFICATION and promotion.override_requested_by == admin_user


def test_a_rollback_is_a_promotion_of_an_earlier_version_with_its_own_reason(
    v1, v2, admin_user, second_admin
) -> None:
    gate_passing_run(v1)
    gate_passing_run(v2)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
        signature=sign_promotion(admin_user, v2))
    rollback = prompt_version_promote(
        prompt_version=v1, user=admin_user, reason="v2 misroutes governing-law clauses in production",
        signature=sign_promotion(admin_user, v1),
    )
    assert rollback.is_rollback and rollback.from_version == v2
    assert rollback.reason == "v2 misroutes governing-law clauses in production"
    assert (_status(v1), _status(v2)) == (PromptVersion.Status.PRODUCTION, PromptVersion.Status.RETIRED)
    # Every promotion is kept, newest first.
    assert [(p.prompt_version_id, p.is_rollback) for p in Promotion.objects.all()] == [
        (v1.pk, True), (v2.pk, False), (v1.pk, False)
    ]


def test_a_rollback_past_a_failing_gate_is_one_signature_because_the_version_was_in_production(
    v1, v2, admin_user, second_admin
) -> None:
    gate_passing_run(v1, wrong=4)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    gate_passing_run(v2)
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
        signature=sign_promotion(admin_user, v2))
    # v1 is now below production v2 by more than the margin: the gate fails today, and no override is needed.
    assert not promotion_gate(prompt_version=v1).passed
    rollback = prompt_version_promote(prompt_version=v1, user=admin_user, reason="Production incident: go back now",
        signature=sign_promotion(admin_user, v1, meaning="rolled_back"))
    assert rollback.is_rollback and rollback.override is None and rollback.promoted_by == admin_user
    assert rollback.gate["gate_required"] is False and not rollback.gate["passed"]
    first = Promotion.objects.filter(prompt_version=v1, is_rollback=False).get()
    assert rollback.gate["rollback_of_promotion"] == first.pk and first.gate["passed"]
    assert rollback.evaluation_run_id == first.evaluation_run_id


def test_there_is_one_production_version_per_task(v1, v2, admin_user) -> None:
    gate_passing_run(v1)
    gate_passing_run(v2)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v2))
    assert PromptVersion.objects.filter(status=PromptVersion.Status.PRODUCTION).count() == 1
    # The database refuses a second one even when the service is bypassed.
    v1.status = PromptVersion.Status.PRODUCTION
    with pytest.raises(IntegrityError), transaction.atomic():
        v1.save(update_fields=["status"])


def test_promoting_needs_an_admin_and_a_reason(v1, reviewer, admin_user) -> None:
    gate_passing_run(v1)
    with pytest.raises(PermissionDenied):
        prompt_version_promote(prompt_version=v1, user=reviewer, reason=REASON,
            signature=sign_promotion(reviewer, v1))
    with pytest.raises(PermissionDenied):
        promotion_override_request(prompt_version=v1, user=reviewer, reason=REASON, justification=JUSTIFICATION,
            signature=sign_override_request(reviewer, v1))
    with pytest.raises(ValidationError, match="Say why"):
        prompt_version_promote(prompt_version=v1, user=admin_user, reason="   ",
            signature=sign_promotion(admin_user, v1))
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    with pytest.raises(ValidationError, match="already in production"):
        prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v1))


def _promote(monkeypatch, *args: str, password: str = "pw-adam") -> None:
    # The command signs: it reads the password from stdin with --password-stdin.
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    call_command("promote", *args, "--password-stdin")


def test_the_promote_command_goes_through_the_same_gate(
    v1, v2, admin_user, second_admin, reviewer, capsys, monkeypatch
) -> None:
    signed = Signature.objects.filter(meaning__in=["promoted", "rolled_back", "gate_override_confirmed"])
    with pytest.raises(CommandError, match="no finished evaluation on the test split"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam")
    gate_passing_run(v1)
    with pytest.raises(CommandError, match="Wrong password"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam", password="guess")
    assert not Promotion.objects.exists() and not signed.exists()
    _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam")
    out = capsys.readouterr().out
    assert "Promoted nda-demo v1" in out and "Promoted to production by adam on " in out
    gate_passing_run(v2, wrong=4)
    with pytest.raises(CommandError, match="below the production"):
        _promote(monkeypatch, str(v2.pk), "--reason", REASON, "--user", "adam")
    _promote(monkeypatch, str(v2.pk), "--reason", REASON, "--user", "adam", "--override-justification", "Urgent")
    out = capsys.readouterr().out
    assert "a different Admin confirms it with --confirm-override" in out
    assert "Gate override requested by adam on " in out
    with pytest.raises(CommandError, match="a different Admin must confirm it"):
        _promote(monkeypatch, str(v2.pk), "--user", "adam", "--confirm-override")
    _promote(monkeypatch, str(v2.pk), "--user", "alex", "--confirm-override", password="pw-alex")
    out = capsys.readouterr().out
    assert "The gate was overridden: Urgent (requested by adam, confirmed by alex)" in out
    assert "Gate override confirmed by alex on " in out
    assert signed.count() == Promotion.objects.count() == 2
    with pytest.raises(CommandError, match="may not promote"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "rita", password="pw-rita")
    with pytest.raises(CommandError, match="no prompt version"):
        _promote(monkeypatch, "999", "--reason", REASON, "--user", "adam")


def test_a_promotion_record_cannot_be_changed(v1, admin_user) -> None:
    gate_passing_run(v1)
    promotion = prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    promotion.reason = "Rewritten afterwards"
    with pytest.raises(DatabaseError, match="audit record"), transaction.atomic():
        promotion.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        Promotion.objects.filter(pk=promotion.pk).update(override_justification="added later")
    promotion.refresh_from_db()
    assert (promotion.reason, promotion.override_justification) == (REASON, "")


def test_a_promotion_queues_saving_the_versions_warm_start_state_once_committed(
    v1, admin_user, django_capture_on_commit_callbacks
) -> None:
    gate_passing_run(v1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v1))
        assert not Job.objects.filter(kind="student_state_save").exists()
    for callback in callbacks:
        callback()
    job = Job.objects.get(kind="student_state_save")
    assert job.params == {"prompt_version_id": v1.pk}
