"""Run metrics: macro-F1 and its bootstrap interval, per-label scores, the confusion matrix, latency."""
from __future__ import annotations

import pytest

from evaluation.runs.adherence import counterfactual_rules, label_swap
from evaluation.runs.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_rows,
    correctness_flips,
    macro_f1,
    metric_deltas,
)

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
Y_TRUE = ["Entailment"] * 4 + ["Contradiction"] * 3 + ["NotMentioned"] * 3
Y_PRED = ["Entailment", "Entailment", "Entailment", "NotMentioned", "Contradiction", "Contradiction",
          "Entailment", "NotMentioned", "NotMentioned", "Contradiction"]


def test_macro_f1_is_the_unweighted_mean_of_the_label_f1s() -> None:
    # Entailment P 3/4 R 3/4; Contradiction P 2/3 R 2/3; NotMentioned P 2/3 R 2/3.
    expected = (0.75 + 2 / 3 + 2 / 3) / 3
    assert macro_f1(Y_TRUE, Y_PRED, LABELS) == pytest.approx(expected)


def test_the_confusion_matrix_has_gold_labels_as_rows() -> None:
    metrics = classification_metrics(y_true=Y_TRUE, y_pred=Y_PRED, labels=LABELS)
    assert metrics["confusion"] == [[3, 0, 1], [1, 2, 0], [0, 1, 2]]
    assert metrics["per_class"]["Entailment"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert metrics["accuracy"] == 0.7
    assert metrics["n"] == 10


def test_the_bootstrap_interval_is_seeded_and_contains_the_estimate() -> None:
    y_true, y_pred = Y_TRUE * 5, Y_PRED * 5
    low, high = bootstrap_ci(y_true, y_pred, LABELS, random_state=3)
    assert (low, high) == bootstrap_ci(y_true, y_pred, LABELS, random_state=3)
    assert low < macro_f1(y_true, y_pred, LABELS) < high
    assert 0.0 <= low < high <= 1.0


def test_a_refused_example_counts_as_wrong() -> None:
    metrics = classification_metrics(y_true=["Entailment", "Contradiction"], y_pred=["Entailment", ""], labels=LABELS)
    assert metrics["accuracy"] == 0.5
    assert metrics["n_refused"] == 1
    assert metrics["per_class"]["Contradiction"]["recall"] == 0.0
    low, high = bootstrap_ci(["Entailment", "Contradiction"], ["Entailment", ""], LABELS)
    assert high <= 1.0 / 3 + 1e-9  # only Entailment can ever be right


def test_latency_and_token_figures_are_reported() -> None:
    metrics = classification_metrics(
        y_true=Y_TRUE, y_pred=Y_PRED, labels=LABELS,
        latencies_ms=[10.0] * 9 + [100.0], prompt_tokens=[50] * 10, tokens_processed=[20] * 10,
    )
    assert metrics["latency_ms_p50"] == 10.0
    assert metrics["latency_ms_p95"] > 10.0
    assert metrics["latency_ms_mean"] == 19.0
    assert metrics["prompt_tokens_mean"] == 50.0
    assert metrics["tokens_processed_mean"] == 20.0
    assert metrics["effective_tok_s"] == pytest.approx(200 / 0.19, rel=1e-3)


def test_an_empty_run_has_zero_metrics_rather_than_an_error() -> None:
    metrics = classification_metrics(y_true=[], y_pred=[], labels=LABELS)
    assert metrics["n"] == 0 and metrics["macro_f1"] == 0.0 and metrics["confusion"] == []


def test_metric_deltas_subtract_before_from_after() -> None:
    deltas = metric_deltas({"macro_f1": 0.5, "accuracy": 0.6}, {"macro_f1": 0.7, "accuracy": 0.55})
    assert deltas["macro_f1"] == pytest.approx(0.2)
    assert deltas["accuracy"] == pytest.approx(-0.05)
    assert deltas["latency_ms_p50"] is None


# --- counterfactual rules for the adherence check ---------------------------------------------


def test_counterfactual_rules_swap_the_label_of_every_rule_line() -> None:
    text = (
        "Classify the ticket: escalate, refund or routine.\n"
        "1. If the ticket mentions a lawyer, the label is escalate.\n"
        "2. If the customer was charged twice, the label is refund.\n"
        "3. Otherwise the label is routine.\n"
    )
    swapped, changed = counterfactual_rules(text=text, labels=["escalate", "refund", "routine"])
    assert changed == 3
    lines = swapped.splitlines()
    assert lines[0] == "Classify the ticket: escalate, refund or routine."  # the label list stays
    assert lines[1].endswith("the label is refund.")
    assert lines[2].endswith("the label is routine.")
    assert lines[3].endswith("the label is escalate.")


def test_counterfactual_rules_respect_labels_that_contain_other_labels() -> None:
    labels = ["stereotype", "anti-stereotype", "unrelated"]
    text = "If it reverses a common belief, answer anti-stereotype."
    swapped, changed = counterfactual_rules(text=text, labels=labels)
    assert changed == 1
    assert swapped == f"If it reverses a common belief, answer {label_swap(labels)['anti-stereotype']}."


def test_counterfactual_rules_of_a_prompt_version_only_touch_its_rules() -> None:
    text = "Preamble says Entailment is common.\n1. A clause that grants the right entails it: Entailment.\n"
    swapped, changed = counterfactual_rules(
        text=text, labels=LABELS, rule_texts=["A clause that grants the right entails it"]
    )
    assert changed == 1
    assert swapped.splitlines()[0] == "Preamble says Entailment is common."
    assert swapped.splitlines()[1].endswith(": Contradiction.")


def test_confusion_rows_give_each_cell_its_share_of_the_gold_label() -> None:
    matrix = classification_metrics(y_true=Y_TRUE, y_pred=Y_PRED, labels=LABELS)["confusion"]
    rows = confusion_rows(LABELS, matrix)
    assert [row["gold"] for row in rows] == LABELS
    assert [row["total"] for row in rows] == [4, 3, 3]
    first = rows[0]["cells"]
    assert [(c["predicted"], c["count"], c["percent"], c["level"], c["correct"]) for c in first] == [
        ("Entailment", 3, 75, 8, True), ("Contradiction", 0, 0, 0, False), ("NotMentioned", 1, 25, 2, False),
    ]


def test_confusion_rows_count_a_missing_row_or_cell_as_zero() -> None:
    rows = confusion_rows(["a", "b"], [[2]])
    assert [[c["count"] for c in row["cells"]] for row in rows] == [[2, 0], [0, 0]]
    assert rows[1]["total"] == 0 and all(c["share"] == 0.0 for c in rows[1]["cells"])


def test_correctness_flips_keep_only_examples_both_sides_decided() -> None:
    before = {1: True, 2: False, 3: True, 4: False, 6: True}
    after = {4: False, 3: True, 2: True, 1: False, 5: True}
    flips = correctness_flips(before, after)
    assert flips.n_common == 4
    assert flips.right_to_wrong == [1]
    assert flips.wrong_to_right == [2]
