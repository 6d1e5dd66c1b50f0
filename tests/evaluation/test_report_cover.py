"""The report's cover tells how the version reached production, its stops and the people's signatures."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.html import strip_tags

from evaluation.models import Promotion
from evaluation.production.serving_stops import task_serving_resume, task_serving_stop
from evaluation.release.reports import gate_sentences, report_data, report_render_html
from pldreview.signatures import printed_name
from rules.models import Task
from tests.support.reports import OVERRIDE, build_report_story
from tests.support.signatures import sign_serving

# What a dump of stored fields looks like: a snake_case key, or a Python literal standing for a value.
RAW_DUMP = re.compile(r"\b[a-z]+_[a-z_0-9]+\b|\b(True|False|None)\b|[{}\[\]]")


@pytest.fixture
def story(task: Task, reviewer: User, second_reviewer: User, admin_user: User):  # noqa: ANN201
    return build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)


def _html(story, admin_user: User) -> str:  # noqa: ANN001
    data = report_data(prompt_version=story.version, generated_by=admin_user, generated_at=timezone.now(),
                       report_id=1, identity=None)
    return report_render_html(data)


def _section(html: str, start: str, end: str) -> str:
    return " ".join(strip_tags(html.split(start, 1)[1].split(end, 1)[0]).split())


def test_the_cover_says_the_gate_failed_and_who_overrode_it_with_their_justification(story, admin_user) -> None:
    cover = _section(_html(story, admin_user), '<section class="cover"', "</section>")

    assert "gate failed, overridden by two Admins" in cover
    assert "requested by alex, confirmed by adam" in cover
    assert f"Justification: {OVERRIDE}" in cover
    assert "Failing conditions: Follows its rules better than chance: 0.20 (4 of 20" in cover
    assert "3 of 3 decisions on the rules carry an electronic signature" in cover


def test_the_cover_states_every_stop_of_the_tasks_serving_with_who_and_why(story, admin_user) -> None:
    task = story.version.task
    assert "No stops recorded." in _section(_html(story, admin_user), '<section class="cover"', "</section>")

    reason = "Wrong labels on clause 7"
    task_serving_stop(task=task, user=admin_user, reason=reason, signature=sign_serving(admin_user, task, "stop"))
    cover = _section(_html(story, admin_user), '<section class="cover"', "</section>")
    name = printed_name(admin_user)
    assert f"by {name}: {reason}; still stopped" in cover and "No stops recorded" not in cover

    task_serving_resume(task=task, user=admin_user, reason="Labels fixed",
                        signature=sign_serving(admin_user, task, "resume"))
    cover = _section(_html(story, admin_user), '<section class="cover"', "</section>")
    assert f"by {name}: {reason}; resumed" in cover and "still stopped" not in cover


def test_the_promotion_history_reads_as_sentences_not_stored_fields(story, admin_user) -> None:
    history = _section(_html(story, admin_user), '<section id="promotions"', "</section>")

    assert "Gate failed. Candidate macro-F1 0.812." in history
    assert "✗ failed: Follows its rules better than chance — 0.20 (4 of 20" in history
    assert not RAW_DUMP.search(history), RAW_DUMP.search(history)


def test_a_passed_gate_reads_as_passed_on_the_cover(task, admin_user, second_admin, reviewer, second_reviewer) -> None:
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    gate = {"passed": True, "candidate_macro_f1": 0.8123, "candidate_macro_f1_ci95": [0.74, 0.87],
            "conditions": [{"key": "beats_zero_shot", "title": "Beats zero-shot", "passed": True,
                            "figure": "0.81 vs 0.41", "sentence": "It does."}],
            "production_prompt_version": None, "test_split_changed": False}
    later = Promotion(task=task, prompt_version=story.version, reason="Re-promoted after review", gate=gate,
                      promoted_by=admin_user)
    later.full_clean()
    later.save()

    html = _html(story, admin_user)
    cover = _section(html, '<section class="cover"', "</section>")
    assert "· gate passed" in cover and "The promotion gate passed (every condition held)" in cover
    assert "✓ held: Beats zero-shot — 0.81 vs 0.41" in _section(html, '<section id="promotions"', "</section>")


def test_gate_sentences_leave_out_fields_they_do_not_know() -> None:
    said = gate_sentences({"passed": False, "production_prompt_version": None, "overridden": True, "margin": 0.0})
    assert said == {"verdict": "failed", "figures": [], "conditions": []}
    assert gate_sentences({})["verdict"] == "not recorded"
