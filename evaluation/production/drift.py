"""Watching production: calls, label shares and confidence per day, and the population stability index.

The reference distribution is the share of each label the student *predicted* on the evaluation run that
gated the version in production (its promotion's run). Production has no gold labels, so predicted shares
are what can be compared like for like.

PSI = Σ over labels (a − e) · ln(a / e), with a and e the production and reference shares and each share
floored at ``PSI_FLOOR`` so an empty label does not divide by zero. A day is judged only with at least
``PLD_DRIFT_MIN_CALLS`` calls; PSI above ``PLD_DRIFT_PSI_THRESHOLD`` (default 0.2, the usual "significant
shift") raises the alert. docs/production.md explains the choice.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum

from evaluation.models import LATENCY_BUCKETS_MS, LATENCY_FIELDS, ClassifyCallRollup, EvaluationRun, Promotion
from evaluation.release.promotion import production_prompt_version
from rules.models import PromptVersion, Split, Task

PSI_FLOOR = 1e-4


def population_stability_index(expected: dict[str, float], actual: dict[str, float], labels: list[str]) -> float:
    """Return the PSI of the actual label shares against the expected ones (shares floored at PSI_FLOOR)."""
    total = 0.0
    for label in labels:
        e = max(expected.get(label, 0.0), PSI_FLOOR)
        a = max(actual.get(label, 0.0), PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def gating_run(version: PromptVersion) -> EvaluationRun | None:
    """Return the evaluation run whose evidence promoted the version, or its latest finished test run."""
    promotion = (
        Promotion.objects.filter(prompt_version=version).exclude(evaluation_run=None)
        .select_related("evaluation_run").order_by("-created_at", "-id").first()
    )
    if promotion is not None:
        return promotion.evaluation_run
    return (
        EvaluationRun.objects.filter(prompt_version=version, status=EvaluationRun.Status.FINISHED, split=Split.TEST)
        .order_by("-finished_at", "-id").first()
    )


def reference_shares(run: EvaluationRun | None, labels: list[str]) -> dict[str, float]:
    """Return each label's share of the run's predictions (empty when the run has none)."""
    if run is None:
        return {}
    counts = Counter(dict(run.predictions.values_list("label").annotate(n=Count("id")).order_by()))
    total = sum(counts[label] for label in labels)
    return {label: counts[label] / total for label in labels} if total else {}


@dataclass
class Day:
    """One day of production calls."""

    day: date
    calls: int
    counts: dict[str, int]
    mean_top_probability: float | None
    # Calls per latency bucket (LATENCY_BUCKETS_MS, then slower).
    latency: list[int] = field(default_factory=list)
    psi: float | None = None

    @property
    def shares(self) -> dict[str, float]:
        return {label: n / self.calls for label, n in self.counts.items()} if self.calls else {}


@dataclass
class Watch:
    """What the production page shows for one task and filter."""

    task: Task
    labels: list[str]
    days: list[Day]
    version: PromptVersion | None
    reference_run: EvaluationRun | None
    reference: dict[str, float]
    threshold: float
    min_calls: int
    alerts: list[Day] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(day.calls for day in self.days)

    @property
    def latency(self) -> list[tuple[str, int]]:
        """Return the calls per latency bucket over every day shown, each bucket named by its bounds."""
        names = [f"≤ {bound} ms" for bound in LATENCY_BUCKETS_MS] + [f"> {LATENCY_BUCKETS_MS[-1]} ms"]
        return [(name, sum(day.latency[i] for day in self.days if day.latency)) for i, name in enumerate(names)]

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "task": self.task.name,
            "version": self.version.number if self.version else None,
            "reference_run": self.reference_run.pk if self.reference_run else None,
            "reference_shares": self.reference,
            "psi_threshold": self.threshold,
            "min_calls_per_day": self.min_calls,
            "days": [
                {"day": d.day.isoformat(), "calls": d.calls, "labels": d.counts,
                 "mean_top_probability": None if d.mean_top_probability is None else round(d.mean_top_probability, 4),
                 "psi": None if d.psi is None else round(d.psi, 4),
                 "latency_ms_histogram": dict(zip([name for name, _ in self.latency], d.latency, strict=True))}
                for d in self.days
            ],
        }


def production_watch(
    *, task: Task, start: date | None = None, end: date | None = None, version: PromptVersion | None = None,
) -> Watch:
    """Summarise a task's logged calls per day and judge each day's label shares against the reference."""
    labels = task.label_names
    # The rollups, never the calls: O(days × labels × versions) rows whatever the volume (production/rollups.py).
    rollups = ClassifyCallRollup.objects.filter(task=task)
    if start is not None:
        rollups = rollups.filter(day__gte=start)
    if end is not None:
        rollups = rollups.filter(day__lte=end)
    if version is None:
        version = production_prompt_version(task)
    else:
        rollups = rollups.filter(prompt_version=version)
    by_day: dict[date, dict[str, Any]] = {}
    sums = {name: Sum(name) for name in ("calls", "top_probability_micros", *LATENCY_FIELDS)}
    for row in rollups.order_by().values("day", "label").annotate(**{f"s_{k}": v for k, v in sums.items()}):
        held = by_day.setdefault(row["day"], {"calls": 0, "top": 0, "counts": dict.fromkeys(labels, 0),
                                               "latency": [0] * len(LATENCY_FIELDS)})
        held["calls"] += row["s_calls"]
        held["top"] += row["s_top_probability_micros"]
        if row["label"] in held["counts"]:
            held["counts"][row["label"]] += row["s_calls"]
        for i, name in enumerate(LATENCY_FIELDS):
            held["latency"][i] += row[f"s_{name}"]
    reference_run = gating_run(version) if version is not None else None
    reference = reference_shares(reference_run, labels)
    threshold = float(settings.PLD_DRIFT_PSI_THRESHOLD)
    min_calls = int(settings.PLD_DRIFT_MIN_CALLS)
    days = []
    # Days without calls between the first and the last are shown as such, not skipped.
    first, last = (min(by_day), max(by_day)) if by_day else (None, None)
    for offset in range((last - first).days + 1 if first and last else 0):
        current = first + timedelta(days=offset)
        row = by_day.get(current)
        if row is None:
            days.append(Day(day=current, calls=0, counts=dict.fromkeys(labels, 0), mean_top_probability=None,
                            latency=[0] * len(LATENCY_FIELDS)))
            continue
        day = Day(day=current, calls=row["calls"], counts=row["counts"],
                  mean_top_probability=row["top"] / 1_000_000 / row["calls"] if row["calls"] else None,
                  latency=row["latency"])
        if reference and day.calls >= min_calls:
            day.psi = population_stability_index(reference, day.shares, labels)
        days.append(day)
    watch = Watch(task=task, labels=labels, days=days, version=version, reference_run=reference_run,
                  reference=reference, threshold=threshold, min_calls=min_calls)
    watch.alerts = [day for day in days if day.psi is not None and day.psi > threshold]
    return watch
