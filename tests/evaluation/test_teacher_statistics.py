"""Rule statistics: the Wilson lower bound and accuracy on the examples a rule covers."""
from __future__ import annotations

import pytest
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction
from evaluation.runs.rule_stats import rule_statistics
from rules.models import Rule, Task
from rules.review.services import rule_propose
from rules.review.statistics import wilson_lower_bound
from tests.support.factories import make_examples


def test_three_of_three_right_does_not_look_perfect() -> None:
    assert wilson_lower_bound(3, 3) == pytest.approx(0.438, abs=0.001)
    assert wilson_lower_bound(300, 300) > 0.98
    assert wilson_lower_bound(0, 10) == 0.0
    assert wilson_lower_bound(0, 0) is None


def test_it_refuses_more_successes_than_trials() -> None:
    with pytest.raises(ValueError):
        wilson_lower_bound(4, 3)


def test_rule_statistics_count_the_latest_prediction_on_covered_examples(task: Task) -> None:
    examples = make_examples(task, 4)
    rule = rule_propose(task=task, text="If x, then Contradiction.", label="Contradiction", origin=Rule.Origin.TEACHER,
                        proposed_by_model="fake-teacher", support=3, examples=examples[:3])
    run = EvaluationRun.objects.create(task=task, mode="pld", split="train", model_path="m.gguf",
                                       status=EvaluationRun.Status.FINISHED, finished_at=timezone.now())
    for example, correct in zip(examples, [True, True, False, True], strict=True):
        Prediction.objects.create(run=run, example=example, label=example.gold_label, correct=correct, latency_ms=1)
    stats = rule_statistics(rule)
    assert stats["support"] == 3 and stats["n_examples"] == 3
    assert (stats["n"], stats["correct"]) == (3, 2)
    assert stats["accuracy"] == pytest.approx(2 / 3)
    assert stats["wilson_lower"] < stats["accuracy"]


def test_an_unevaluated_rule_has_support_but_no_accuracy(task: Task) -> None:
    rule = rule_propose(task=task, text="If y, then Entailment.", label="Entailment", origin=Rule.Origin.TEACHER)
    stats = rule_statistics(rule)
    assert stats["n"] == 0 and stats["accuracy"] is None and stats["wilson_lower"] is None
