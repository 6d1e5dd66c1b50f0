"""Build rules for review tests plainly, through the same services the app uses."""
from __future__ import annotations

from typing import Any

from rules.models import Example, Rule, Task
from rules.services import rule_propose

TEACHER_MODEL = "gemma-3-270m-q4_k_m"


def teacher_rule(task: Task, text: str = "If the clause lets the recipient share with employees, then Entailment",
                 label: str = "Entailment", support: int = 5, **extra: Any) -> Rule:
    """Return a pending rule proposed by the teacher model."""
    return rule_propose(task=task, text=text, label=label, origin=Rule.Origin.TEACHER, proposed_by_model=TEACHER_MODEL,
                        support=support, **extra)


def example(
    task: Task, n: int, *, premise: str = "", gold: str = "Entailment", evidence: list | None = None
) -> Example:
    """Return a saved example with a premise, a hypothesis and optional evidence spans."""
    inputs = {"premise": premise or f"Clause {n}: the recipient may share with employees.", "hypothesis": f"H{n}"}
    ex = Example(task=task, inputs=inputs, gold_label=gold, split="train",
                 content_hash=Example.hash_content(inputs, gold), evidence=evidence or [])
    ex.save()
    return ex
