"""The demo steps: compile nda-demo once, put it in production once (by gate or two-Admin override), token once.

A rerun after people decided more rules compiles, evaluates and promotes nothing.
"""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from evaluation.demo.prompts import OVERRIDE_JUSTIFICATION, seed_promotion, seed_prompt_versions
from evaluation.demo.users import demo_password
from evaluation.models import ApiToken, Promotion, PromotionOverride
from rules.models import FrozenTestSplit, PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, finished_run, gate_passing_run


@pytest.fixture(autouse=True)
def _demo_passwords(admin_user, second_admin) -> None:
    # The demo signs as adam and alex with their demo passwords.
    for user in (admin_user, second_admin):
        user.set_password(demo_password(user.username))
        user.save()


def _run(step) -> str:
    out = io.StringIO()
    step(out)
    return out.getvalue()


def test_without_approved_rules_the_steps_say_so(task, admin_user) -> None:
    assert "no approved rules" in _run(seed_prompt_versions)
    assert "no prompt version" in _run(seed_promotion)
    assert not PromptVersion.objects.exists()


def test_a_failing_gate_reaches_production_only_by_a_recorded_two_admin_override(
    task, admin_user, second_admin, second_reviewer
) -> None:
    approve_all(task, second_reviewer)
    assert "compiled nda-demo v1" in _run(seed_prompt_versions)
    assert "already compiled" in _run(seed_prompt_versions)
    version = PromptVersion.objects.get()
    blocked = _run(seed_promotion)
    assert "was not promoted: it has no evaluation yet" in blocked and "(shown this once): pld_" in blocked
    finished_run(version, 0.167)  # a demo model at chance: no predictions to beat any baseline with
    promoted = _run(seed_promotion)
    assert "the gate fails for nda-demo v1" in promoted
    assert "went to production by a recorded override: requested by adam, confirmed by alex" in promoted
    promotion = Promotion.objects.get()
    assert (promotion.override_requested_by, promotion.promoted_by) == (admin_user, second_admin)
    assert promotion.override_justification == OVERRIDE_JUSTIFICATION
    assert OVERRIDE_JUSTIFICATION.startswith("Demo model at chance")
    assert promotion.gate["passed"] is False and promotion.gate["problems"]
    override = PromotionOverride.objects.get()
    assert override.status == PromotionOverride.Status.CONFIRMED
    # Both steps are signed: adam's request, alex's confirmation (which the promotion carries too).
    assert (override.request_signature.user, override.request_signature.meaning) == (admin_user,
        "gate_override_requested")
    assert override.confirm_signature == promotion.signature
    assert (promotion.signature.user, promotion.signature.meaning) == (second_admin, "gate_override_confirmed")
    assert "already in production" in _run(seed_promotion)
    assert ApiToken.objects.filter(user=admin_user, name="demo").count() == 1


def test_a_passing_gate_promotes_the_demo_version_without_an_override(
    task, admin_user, second_admin, second_reviewer
) -> None:
    approve_all(task, second_reviewer)
    _run(seed_prompt_versions)
    gate_passing_run(PromptVersion.objects.get())
    assert "the gate passes: promoted nda-demo v1" in _run(seed_promotion)
    # adam's gating froze the test split, and the promotion keeps which run it judged.
    assert FrozenTestSplit.objects.get().frozen_by == admin_user
    assert [row["judged"] for row in Promotion.objects.get().gate["runs_on_test_split"]] == [True]
    assert Promotion.objects.get().override is None
    assert Promotion.objects.get().signature.meaning == "promoted"


def test_a_rerun_after_people_decided_rules_compiles_and_promotes_nothing(
    task, admin_user, second_admin, second_reviewer
) -> None:
    approve_all(task, second_reviewer)
    _run(seed_prompt_versions)
    v1 = PromptVersion.objects.get()
    finished_run(v1, 0.167)
    _run(seed_promotion)
    # People go on: a reviewer approves another rule, an Admin compiles and evaluates v2 (well).
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    out = io.StringIO()
    call_command("seed_demo", only="evaluation.demo.prompts", allow_production_demo=True, stdout=out)
    assert "already compiled" in out.getvalue() and "already in production" in out.getvalue()
    assert PromptVersion.objects.count() == 1
    v2 = compiled(task, admin_user)
    gate_passing_run(v2)
    again = _run(seed_promotion)
    assert "nda-demo v1 is already in production; the demo promotes nothing" in again
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (PromptVersion.Status.PRODUCTION, PromptVersion.Status.DRAFT)
    assert Promotion.objects.count() == 1 and PromotionOverride.objects.count() == 1
