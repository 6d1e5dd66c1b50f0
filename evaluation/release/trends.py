"""How a task's prompt versions did over time: test macro-F1 with its 95% interval beside the baselines.

Drawn server-side as SVG (no JavaScript): on the task page (a rules task panel registered in
``EvaluationConfig.ready()``) and in the signed PDF report.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from evaluation.models import EvaluationRun
from evaluation.runs.metrics import macro_f1
from rules.models import Example, Split, Task

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 16, 36


def task_trend(task: Task) -> dict[str, Any] | None:
    """Return each prompt version's latest finished test run and the baselines, or None before any such run."""
    finished = EvaluationRun.objects.filter(task=task, status=EvaluationRun.Status.FINISHED, split=Split.TEST)
    latest: dict[int, EvaluationRun] = {}
    pld_runs = finished.filter(mode=EvaluationRun.Mode.PLD, prompt_version__isnull=False).select_related(
        "prompt_version"
    )
    for run in pld_runs.order_by("finished_at", "id"):
        latest[run.prompt_version.number] = run  # the last one of each version wins
    if not latest:
        return None
    points = []
    for number in sorted(latest):
        metrics = latest[number].metrics or {}
        f1 = metrics.get("macro_f1")
        if f1 is None:
            continue
        low, high = (metrics.get("macro_f1_ci95") or [f1, f1])[:2]
        points.append({"label": f"v{number}", "run_id": latest[number].pk, "f1": f1, "low": low, "high": high})
    if not points:
        return None
    zero = finished.filter(mode=EvaluationRun.Mode.ZERO_SHOT).order_by("-finished_at", "-id").first()
    gold = list(Example.objects.filter(task=task, split=Split.TEST).values_list("gold_label", flat=True))
    majority = None
    if gold:
        commonest = Counter(gold).most_common(1)[0][0]
        majority = macro_f1(gold, [commonest] * len(gold), task.label_names)
    return {
        "points": points,
        "zero_shot": (zero.metrics or {}).get("macro_f1") if zero else None,
        "majority": majority,
    }


def trend_chart(trend: dict[str, Any]) -> dict[str, Any]:
    """Return the chart's geometry: one dot and interval bar per version, dashed lines for the baselines."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    points = trend["points"]
    step = plot_w / max(len(points), 1)

    def y(value: float) -> float:
        return round(TOP + plot_h * (1 - max(0.0, min(1.0, float(value)))), 1)

    dots = [
        {**point, "x": round(LEFT + step * (i + 0.5), 1), "y": y(point["f1"]), "y_low": y(point["low"]),
         "y_high": y(point["high"])}
        for i, point in enumerate(points)
    ]
    # The short name labels the line inside the chart's right margin (150 px); the table gives the long one.
    named = (("No rules (zero-shot)", "Zero-shot", trend["zero_shot"]),
             ("Always the commonest label", "Majority label", trend["majority"]))
    baselines = [{"name": name, "short": short, "value": value, "y": y(value)}
                 for name, short, value in named if value is not None]
    _spread_labels(baselines, top=TOP, bottom=TOP + plot_h)
    ticks = [{"value": f"{v / 10:.1f}", "y": y(v / 10)} for v in range(0, 11, 2)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right_edge": WIDTH - RIGHT, "axis_y": TOP + plot_h,
        "top": TOP, "dots": dots, "baselines": baselines, "ticks": ticks,
        "path": " ".join(f"{'M' if i == 0 else 'L'}{d['x']},{d['y']}" for i, d in enumerate(dots)),
    }


LABEL_GAP = 13  # px between baseline labels at font-size 11: closer, they print over each other


def _spread_labels(baselines: list[dict[str, Any]], *, top: float, bottom: float) -> None:
    """Give each baseline a ``label_y`` at least LABEL_GAP from the next, keeping its line at its true ``y``."""
    ordered = sorted(baselines, key=lambda b: b["y"])
    previous = None
    for baseline in ordered:
        label_y = baseline["y"] if previous is None else max(baseline["y"], previous + LABEL_GAP)
        baseline["label_y"] = label_y
        previous = label_y
    overflow = (ordered[-1]["label_y"] - bottom) if ordered else 0
    if overflow > 0:  # pushed below the plot: move the whole stack up, never above the top
        for baseline in ordered:
            baseline["label_y"] = round(max(top, baseline["label_y"] - overflow), 1)


def trend_panel(task: Task, user: Any) -> tuple[str, dict[str, Any]] | None:
    """Return the task page's trend chart, for users who may read evaluations."""
    if not user.has_perm("evaluation.view_evaluationrun"):
        return None
    trend = task_trend(task)
    if trend is None:
        return None
    return "evaluation/trend_chart.html", {"trend": trend, "chart": trend_chart(trend), "task": task}
