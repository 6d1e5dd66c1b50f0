"""Classification metrics for an evaluation run, computed with scikit-learn.

Macro-F1 is the headline (the paper's measure); its 95% confidence interval comes from a seeded
bootstrap over examples. A refused example (too long for the context) has an empty predicted
label: it counts as wrong and lowers the recall of its gold label.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

N_BOOTSTRAP = 1000
# Shades of a confusion-matrix cell: its share of the gold label's examples in tenths (0 to 10).
HEAT_LEVELS = 10

K = TypeVar("K", bound=Hashable)


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> float:
    """Return the unweighted mean of the per-label F1 scores."""
    if not y_true:
        return 0.0
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def bootstrap_ci(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: list[str],
    *,
    n_resamples: int = N_BOOTSTRAP,
    random_state: int = 0,
) -> tuple[float, float]:
    """Return the 95% percentile bootstrap interval of macro-F1 over resampled examples.

    Parameters
    ----------
    y_true, y_pred : sequences of labels, one per example.
    labels : the task's labels, in display order.
    n_resamples : number of bootstrap resamples.
    random_state : seed of the resampling, so the same run gives the same interval.
    """
    n_samples = len(y_true)
    if n_samples == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(random_state)
    index = {label: i for i, label in enumerate(labels)}
    # Encode once; unknown predictions (refusals) get their own code so they are always wrong.
    true_codes = np.array([index.get(y, len(labels)) for y in y_true])
    pred_codes = np.array([index.get(y, len(labels) + 1) for y in y_pred])
    scores = np.empty(n_resamples)
    n_labels = len(labels)
    for i in range(n_resamples):
        sample = rng.integers(0, n_samples, n_samples)
        t, p = true_codes[sample], pred_codes[sample]
        f1s = []
        for code in range(n_labels):
            tp = np.sum((t == code) & (p == code))
            fp = np.sum((t != code) & (p == code))
            fn = np.sum((t == code) & (p != code))
            denom = 2 * tp + fp + fn
            f1s.append(0.0 if denom == 0 else 2 * tp / denom)
        scores[i] = float(np.mean(f1s))
    low, high = np.percentile(scores, [2.5, 97.5])
    return (round(float(low), 4), round(float(high), 4))


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if len(values) else 0.0


def classification_metrics(
    *,
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: list[str],
    latencies_ms: Sequence[float] = (),
    prompt_tokens: Sequence[int] = (),
    tokens_processed: Sequence[int] = (),
    random_state: int = 0,
) -> dict[str, Any]:
    """Return every figure a run reports: F1, accuracy, per-class scores, confusion, latency, tokens."""
    y_true, y_pred = list(y_true), list(y_pred)
    n = len(y_true)
    result: dict[str, Any] = {"n": n, "labels": list(labels)}
    if n:
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
        matrix = confusion_matrix(y_true, y_pred, labels=labels)
        result.update(
            macro_f1=round(macro_f1(y_true, y_pred, labels), 4),
            macro_f1_ci95=list(bootstrap_ci(y_true, y_pred, labels, random_state=random_state)),
            accuracy=round(float(accuracy_score(y_true, y_pred)), 4),
            per_class={
                label: {
                    "precision": round(float(precision[i]), 4),
                    "recall": round(float(recall[i]), 4),
                    "f1": round(float(f1[i]), 4),
                    "support": int(support[i]),
                }
                for i, label in enumerate(labels)
            },
            # Rows are gold labels, columns predicted labels, in the order of ``labels``.
            confusion=matrix.astype(int).tolist(),
            n_refused=sum(1 for y in y_pred if y not in labels),
        )
    else:
        result.update(macro_f1=0.0, macro_f1_ci95=[0.0, 0.0], accuracy=0.0, per_class={}, confusion=[], n_refused=0)
    lat = [float(v) for v in latencies_ms]
    result.update(
        latency_ms_p50=_percentile(lat, 50),
        latency_ms_p95=_percentile(lat, 95),
        latency_ms_mean=round(float(np.mean(lat)), 2) if lat else 0.0,
        latency_ms_total=round(float(np.sum(lat)), 1) if lat else 0.0,
        prompt_tokens_mean=round(float(np.mean(prompt_tokens)), 1) if len(prompt_tokens) else 0.0,
        tokens_processed_mean=round(float(np.mean(tokens_processed)), 1) if len(tokens_processed) else 0.0,
        tokens_processed_total=int(np.sum(tokens_processed)) if len(tokens_processed) else 0,
    )
    total_s = result["latency_ms_total"] / 1000.0
    result["effective_tok_s"] = round(result["tokens_processed_total"] / total_s, 1) if total_s > 0 else 0.0
    return result


def metric_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """Return after − before for each headline metric both runs have."""
    keys = ["macro_f1", "accuracy", "latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "prompt_tokens_mean"]
    deltas: dict[str, float | None] = {}
    for key in keys:
        a, b = before.get(key), after.get(key)
        deltas[key] = round(float(b) - float(a), 4) if a is not None and b is not None else None
    return deltas


def _resampled_macro_f1(
    true_codes: np.ndarray, pred_codes: np.ndarray, sample: np.ndarray, n_labels: int
) -> np.ndarray:
    """Return macro-F1 on every resample (one row of ``sample`` each), as the unweighted mean over labels."""
    t, p = true_codes[sample], pred_codes[sample]
    total = np.zeros(sample.shape[0])
    for code in range(n_labels):
        tp = np.sum((t == code) & (p == code), axis=1)
        fp = np.sum((t != code) & (p == code), axis=1)
        fn = np.sum((t == code) & (p != code), axis=1)
        denom = 2 * tp + fp + fn
        total += np.where(denom == 0, 0.0, 2 * tp / np.maximum(denom, 1))
    return total / n_labels


def paired_bootstrap_margin(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    baselines: Sequence[Sequence[str]],
    labels: list[str],
    *,
    n_resamples: int = N_BOOTSTRAP,
    random_state: int = 0,
) -> tuple[float, float]:
    """Return the 95% interval of macro-F1(y_pred) minus the best baseline's macro-F1, paired over examples.

    Every resample draws the same examples for the candidate and for each baseline, and compares the
    candidate with the baseline that does best *on that resample*, so the interval lies above zero
    only when the candidate beats every baseline on almost every resample.

    Parameters
    ----------
    y_true : gold labels, one per example.
    y_pred : the candidate's predictions on the same examples, in the same order.
    baselines : each baseline's predictions on the same examples, in the same order.
    labels : the task's labels.
    n_resamples : number of bootstrap resamples.
    random_state : seed of the resampling, so the same evidence gives the same interval.
    """
    n_samples = len(y_true)
    if n_samples == 0 or not baselines:
        return (0.0, 0.0)
    index = {label: i for i, label in enumerate(labels)}
    true_codes = np.array([index.get(y, len(labels)) for y in y_true])

    def codes(predictions: Sequence[str]) -> np.ndarray:
        if len(predictions) != n_samples:
            raise ValueError("A paired bootstrap needs every prediction list on the same examples.")
        return np.array([index.get(y, len(labels) + 1) for y in predictions])

    rng = np.random.default_rng(random_state)
    sample = rng.integers(0, n_samples, (n_resamples, n_samples))
    candidate = _resampled_macro_f1(true_codes, codes(y_pred), sample, len(labels))
    best = np.max([_resampled_macro_f1(true_codes, codes(b), sample, len(labels)) for b in baselines], axis=0)
    low, high = np.percentile(candidate - best, [2.5, 97.5])
    return (round(float(low), 4), round(float(high), 4))


def proportion_ci(successes: int, n: int) -> tuple[float, float]:
    """Return the 95% Wilson score interval of a proportion (``successes`` of ``n``)."""
    if n <= 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (round(float(interval.low), 4), round(float(interval.high), 4))


def confusion_rows(labels: list[str], matrix: list[list[int]]) -> list[dict[str, Any]]:
    """Return a confusion matrix as one row per gold label: each cell's count, share of the row and heat level.

    A row or cell missing from a stored matrix counts as zero, so the table always has every label.
    """
    rows = []
    for i, gold in enumerate(labels):
        counts = matrix[i] if i < len(matrix) else []
        counts = [counts[j] if j < len(counts) else 0 for j in range(len(labels))]
        total = sum(counts)
        cells = []
        for j, predicted in enumerate(labels):
            share = counts[j] / total if total else 0.0
            cells.append({
                "predicted": predicted, "count": counts[j], "share": share, "percent": round(100 * share),
                "level": round(share * HEAT_LEVELS), "correct": i == j,
            })
        rows.append({"gold": gold, "cells": cells, "total": total})
    return rows


@dataclass(frozen=True)
class Flips(Generic[K]):
    """The examples two sets of decisions both judged, and those whose correctness changed between them."""

    n_common: int
    right_to_wrong: list[K]
    wrong_to_right: list[K]


def correctness_flips(before: Mapping[K, bool], after: Mapping[K, bool]) -> Flips[K]:
    """Return the examples (keys of both) right before and wrong after, and wrong before and right after.

    Each mapping says, per example, whether that side decided it correctly; the lists keep ``before``'s order.
    """
    common = [key for key in before if key in after]
    return Flips(
        n_common=len(common),
        right_to_wrong=[key for key in common if before[key] and not after[key]],
        wrong_to_right=[key for key in common if after[key] and not before[key]],
    )
