"""Rules alike in meaning: "rules like this one" on the rule page, and search by a sentence when no word matches.

The vectors are the clustering's own fallback embedding (``rules.teacher.embeddings.tfidf_svd``: TF-IDF reduced by SVD,
a latent-semantic space), fitted on the task's rules at each call: a few hundred one-sentence rules take
milliseconds, and nothing goes stale when a rule is edited. It ranks by shared and co-occurring words, so
"disclose to staff" finds "share with employees" only when the task's rules use those words together; it knows
no synonyms the rules themselves never show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import QuerySet

from rules.models import Rule, Task
from rules.teacher.embeddings import tfidf_svd

SIMILAR_SHOWN = 5
# Below this cosine two rules share next to nothing: listing them would only look like a finding.
MIN_SIMILARITY = 0.2


@dataclass(frozen=True)
class SimilarRule:
    """A rule and how close it is in meaning (cosine of their vectors, 1 = the same words)."""

    rule: Rule
    similarity: float


def _rule_text(rule: Rule) -> str:
    return f"{rule.topic}. {rule.text}" if rule.topic else rule.text


def _ranked(rules: list[Rule], vectors: np.ndarray, target: np.ndarray, limit: int) -> list[SimilarRule]:
    scores = vectors @ target
    order = np.argsort(-scores, kind="stable")
    return [SimilarRule(rules[i], round(float(scores[i]), 2)) for i in order[:limit] if scores[i] >= MIN_SIMILARITY]


def _task_rules(task: Task) -> list[Rule]:
    return list(Rule.objects.filter(task=task).only("id", "task_id", "text", "topic", "label", "status").order_by("id"))


def similar_rules(rule: Rule, *, limit: int = SIMILAR_SHOWN) -> list[SimilarRule]:
    """Return the task's rules closest in meaning to this one (itself left out), closest first."""
    others = [r for r in _task_rules(rule.task) if r.pk != rule.pk]
    if not others:
        return []
    vectors = tfidf_svd([_rule_text(rule)] + [_rule_text(r) for r in others])
    return _ranked(others, vectors[1:], vectors[0], limit)


def rules_closest_to(
    text: str, *, task: Task | None = None, limit: int = 10, among: QuerySet[Rule] | None = None
) -> list[SimilarRule]:
    """Return the rules (of the task, or of ``among``: every rule unless given) closest in meaning to a sentence.

    Pages pass ``among`` as the rules of the tasks the user may see (need-to-know).
    """
    everywhere = Rule.objects.all() if among is None else among
    rules = _task_rules(task) if task is not None else list(
        everywhere.only("id", "task_id", "text", "topic", "label", "status").order_by("id")
    )
    if not rules or not text.strip():
        return []
    vectors = tfidf_svd([text] + [_rule_text(r) for r in rules])
    return _ranked(rules, vectors[1:], vectors[0], limit)
