"""The promotion gate, promotion and rollback, one production version per task, and the promote command."""
from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, transaction

from evaluation.models import Promotion
from evaluation.promotion import promotion_gate, prompt_version_promote
from pldreview.models import Signature
from rules.models import PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, finished_run
from tests.support.signatures import sign_promotion

REASON = "Better on the minority label"


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


def test_it_blocks_a_version_without_an_evaluation(v1, admin_user) -> None:
    gate = promotion_gate(prompt_version=v1)
    assert not gate.passed
    assert "no finished evaluation on the test split" in gate.problems[0]
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


def test_a_first_version_with_a_test_evaluation_goes_to_production(v1, admin_user) -> None:
    run = finished_run(v1, 0.6)
    promotion = prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    assert _status(v1) == PromptVersion.Status.PRODUCTION
    assert (promotion.prompt_version, promotion.from_version, promotion.evaluation_run) == (v1, None, run)
    assert (promotion.promoted_by, promotion.reason, promotion.is_rollback) == (admin_user, REASON, False)
    assert promotion.gate["passed"] and promotion.gate["candidate_macro_f1"] == 0.6
    assert promotion.override_justification == ""
    assert v1.history.first().history_change_reason.startswith("Promoted")


def test_it_blocks_a_version_below_production_and_retires_the_old_one_otherwise(v1, v2, admin_user) -> None:
    finished_run(v1, 0.70)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    finished_run(v2, 0.65)
    with pytest.raises(ValidationError, match="below the production version's 0.700"):
        prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON,
            signature=sign_promotion(admin_user, v2))
    assert (_status(v1), _status(v2)) == (PromptVersion.Status.PRODUCTION, PromptVersion.Status.DRAFT)
    finished_run(v2, 0.72)  # a later, better run of the same version
    promotion = prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v2))
    assert (_status(v1), _status(v2)) == (PromptVersion.Status.RETIRED, PromptVersion.Status.PRODUCTION)
    assert promotion.from_version == v1
    assert promotion.gate["production_macro_f1"] == 0.70 and promotion.gate["candidate_macro_f1"] == 0.72


def test_the_margin_lets_a_slightly_lower_version_through(v1, v2, admin_user, settings) -> None:
    finished_run(v1, 0.70)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    finished_run(v2, 0.69)
    settings.PLD_PROMOTION_MARGIN = 0.02
    assert promotion_gate(prompt_version=v2).passed
    settings.PLD_PROMOTION_MARGIN = 0.0
    assert not promotion_gate(prompt_version=v2).passed


def test_an_admin_overrides_the_gate_only_with_a_justification(v1, v2, admin_user) -> None:
    finished_run(v1, 0.70)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    finished_run(v2, 0.60)
    with pytest.raises(ValidationError, match="override the gate with a written justification"):
        prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON, override_justification="  ",
            signature=sign_promotion(admin_user, v2))
    justification = "Legal asked for the court rule now; v1 misses every jurisdiction clause."
    promotion = prompt_version_promote(
        prompt_version=v2, user=admin_user, reason=REASON, override_justification=justification,
            signature=sign_promotion(admin_user, v2)
    )
    promotion.refresh_from_db()
    assert promotion.override_justification == justification
    assert promotion.gate["passed"] is False and promotion.gate["overridden"] is True
    assert "below the production version's" in promotion.gate["problems"][0]
    assert _status(v2) == PromptVersion.Status.PRODUCTION


def test_a_rollback_is_a_promotion_of_an_earlier_version_with_its_own_reason(v1, v2, admin_user) -> None:
    finished_run(v1, 0.70)
    finished_run(v2, 0.75)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
        signature=sign_promotion(admin_user, v2))
    rollback = prompt_version_promote(
        prompt_version=v1, user=admin_user, reason="v2 misroutes governing-law clauses in production",
        override_justification="Production incident: go back now, fix v2 later.",
            signature=sign_promotion(admin_user, v1),
    )
    assert rollback.is_rollback and rollback.from_version == v2
    assert rollback.reason == "v2 misroutes governing-law clauses in production"
    assert (_status(v1), _status(v2)) == (PromptVersion.Status.PRODUCTION, PromptVersion.Status.RETIRED)
    # Every promotion is kept, newest first.
    assert [(p.prompt_version_id, p.is_rollback) for p in Promotion.objects.all()] == [
        (v1.pk, True), (v2.pk, False), (v1.pk, False)
    ]


def test_there_is_one_production_version_per_task(v1, v2, admin_user) -> None:
    finished_run(v1, 0.7)
    finished_run(v2, 0.7)
    prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v1))
    prompt_version_promote(prompt_version=v2, user=admin_user, reason=REASON, signature=sign_promotion(admin_user, v2))
    assert PromptVersion.objects.filter(status=PromptVersion.Status.PRODUCTION).count() == 1
    # The database refuses a second one even when the service is bypassed.
    v1.status = PromptVersion.Status.PRODUCTION
    with pytest.raises(IntegrityError), transaction.atomic():
        v1.save(update_fields=["status"])


def test_promoting_needs_an_admin_and_a_reason(v1, reviewer, admin_user) -> None:
    finished_run(v1, 0.7)
    with pytest.raises(PermissionDenied):
        prompt_version_promote(prompt_version=v1, user=reviewer, reason=REASON, signature=sign_promotion(reviewer, v1))
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


def test_the_promote_command_goes_through_the_same_gate(v1, v2, admin_user, reviewer, capsys, monkeypatch) -> None:
    signed = Signature.objects.filter(meaning__in=["promoted", "rolled_back"])
    with pytest.raises(CommandError, match="no finished evaluation"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam")
    finished_run(v1, 0.7)
    with pytest.raises(CommandError, match="Wrong password"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam", password="guess")
    assert not Promotion.objects.exists() and not signed.exists()
    _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "adam")
    out = capsys.readouterr().out
    assert "Promoted nda-demo v1" in out and "Promoted to production by adam on " in out
    finished_run(v2, 0.5)
    with pytest.raises(CommandError, match="below the production"):
        _promote(monkeypatch, str(v2.pk), "--reason", REASON, "--user", "adam")
    _promote(monkeypatch, str(v2.pk), "--reason", REASON, "--user", "adam", "--override-justification", "Urgent")
    assert "The gate was overridden: Urgent" in capsys.readouterr().out
    assert signed.count() == Promotion.objects.count() == 2
    with pytest.raises(CommandError, match="may not promote"):
        _promote(monkeypatch, str(v1.pk), "--reason", REASON, "--user", "rita", password="pw-rita")
    with pytest.raises(CommandError, match="no prompt version"):
        call_command("promote", "999", "--reason", REASON, "--user", "adam")


def test_a_promotion_record_cannot_be_changed(v1, admin_user) -> None:
    finished_run(v1, 0.7)
    promotion = prompt_version_promote(prompt_version=v1, user=admin_user, reason=REASON,
        signature=sign_promotion(admin_user, v1))
    promotion.reason = "Rewritten afterwards"
    with pytest.raises(DatabaseError, match="audit record"), transaction.atomic():
        promotion.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        Promotion.objects.filter(pk=promotion.pk).update(override_justification="added later")
    promotion.refresh_from_db()
    assert (promotion.reason, promotion.override_justification) == (REASON, "")
