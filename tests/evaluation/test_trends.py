"""Trends: each prompt version's test macro-F1 with its interval beside the baselines, as SVG, on the task page
and in the report."""
from __future__ import annotations

import re

import pytest

from evaluation.models import EvaluationRun
from evaluation.release.reports import report_data, report_render_html
from evaluation.release.trends import task_trend, trend_chart
from rules.models import Example
from tests.support.factories import example
from tests.support.prompt_versions import approve, approve_all, compiled, finished_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(task, reviewer, admin_user):
    approve_all(task, reviewer)
    first = compiled(task, admin_user)
    finished_run(first, 0.52)
    approve(task, reviewer, "If the clause names advisers, then NotMentioned", "NotMentioned")
    second = compiled(task, admin_user)
    finished_run(second, 0.48)
    finished_run(second, 0.66)  # the latest run of a version is the one shown
    zero = finished_run(first, 0.31)
    EvaluationRun.objects.filter(pk=zero.pk).update(mode=EvaluationRun.Mode.ZERO_SHOT, prompt_version=None)
    for n, gold in enumerate(["Entailment"] * 6 + ["Contradiction"] * 2):
        example(task, n, gold=gold)
    Example.objects.filter(task=task).update(split="test")
    return first, second


def test_the_trend_has_one_point_per_version_and_both_baselines(task, two_versions) -> None:
    trend = task_trend(task)
    assert [(p["label"], p["f1"]) for p in trend["points"]] == [("v1", 0.52), ("v2", 0.66)]
    assert trend["zero_shot"] == 0.31
    # Always "Entailment" on 6 Entailment and 2 Contradiction: F1 0.857 for one label of three, 0 for the others.
    assert trend["majority"] == pytest.approx(2 * 0.75 / 1.75 / 3)
    chart = trend_chart(trend)
    assert chart["dots"][0]["y"] > chart["dots"][1]["y"]  # higher score, higher on the page
    assert chart["dots"][1]["y_high"] < chart["dots"][1]["y"] < chart["dots"][1]["y_low"]


def test_baseline_labels_close_in_value_do_not_print_over_each_other(task, two_versions) -> None:
    chart = trend_chart(task_trend(task))
    zero, majority = chart["baselines"]  # 0.31 and 0.286: their lines lie 5 px apart
    assert abs(zero["y"] - majority["y"]) < 13
    assert abs(zero["label_y"] - majority["label_y"]) >= 13
    assert zero["label_y"] < majority["label_y"]  # the higher value's label stays above


def test_the_task_page_draws_an_accessible_svg_and_a_table(client, task, two_versions, reviewer, outsider) -> None:
    client.force_login(reviewer)
    body = client.get(f"/tasks/{task.name}/").content.decode()
    svg = re.search(r"<svg .*?</svg>", body, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "v2: 0.660 (95% range 0.610 to 0.710)" in svg
    assert svg.count("<circle") == 2 and "Zero-shot 0.31" in svg and "Always the commonest label" in svg
    assert "<script" not in body.split("<svg")[1].split("</svg>")[0]


def test_the_task_page_has_no_chart_before_a_test_run(client, task, reviewer) -> None:
    client.force_login(reviewer)
    assert "How the prompt versions did over time" not in client.get(f"/tasks/{task.name}/").content.decode()


def test_the_report_carries_the_same_chart(task, two_versions, admin_user) -> None:
    _first, second = two_versions
    data = report_data(prompt_version=second, generated_by=admin_user, generated_at=None, report_id=1, identity=None)
    html = report_render_html(data)
    assert "How the prompt versions did over time" in html and html.count("<circle") == 2


def test_the_pdf_draws_the_chart(task, two_versions, admin_user) -> None:
    from evaluation.release.reports import report_render_pdf
    from tests.support.reports import pdf_text

    _first, second = two_versions
    data = report_data(prompt_version=second, generated_by=admin_user, generated_at=None, report_id=1, identity=None)
    text = pdf_text(report_render_pdf(data))
    # The SVG's own text (axis labels, baseline names) is drawn into the PDF, not dropped.
    assert "How the prompt versions did over time" in text and "Always the commonest label" in text and "v2" in text
