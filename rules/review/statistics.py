"""Rule statistics that need no evaluation: support and the Wilson lower bound.

How often predictions are right on the examples a rule covers needs evaluation runs, so that part
lives in ``evaluation/runs/rule_stats.py`` (rules never imports evaluation).
"""
from __future__ import annotations

import math
from typing import Any

from rules.models import Rule

Z_95 = 1.959963984540054


def wilson_lower_bound(successes: int, n: int, z: float = Z_95) -> float | None:
    """Return the lower end of the Wilson score interval for ``successes`` out of ``n`` (None when n is 0).

    Parameters
    ----------
    successes : int
        Correct predictions.
    n : int
        Predictions in all.
    z : float
        Normal quantile; the default gives a 95% interval. With 3 of 3 right the bound is about 0.44,
        so a rule backed by three examples cannot look perfect.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n ({successes} of {n})")
    p = successes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denominator)


def rule_support(rule: Rule) -> dict[str, Any]:
    """Return a rule's support: its examples, micro-rules and the gold-label balance behind it."""
    return {
        "support": rule.support,
        "n_examples": rule.examples.count(),
        "n_micro_rules": rule.micro_rules.count(),
        "label_balance": dict(rule.label_balance),
    }
