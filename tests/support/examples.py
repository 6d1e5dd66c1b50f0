"""Plain builders for examples and micro-rules on the conftest ``task``."""
from __future__ import annotations

from rules.models import Example, MicroRule, Task

PAIRS = [
    ("The Recipient shall not disclose Confidential Information to any third party.",
     "The Receiving Party may share some Confidential Information with third parties.", "Contradiction"),
    ("The Recipient may disclose Confidential Information to employees who need to know it.",
     "The Receiving Party may share some Confidential Information with its employees.", "Entailment"),
    ("This Agreement is governed by the laws of the State of New York.",
     "The Receiving Party shall return Confidential Information on termination.", "NotMentioned"),
]


def make_examples(task: Task, n: int, split: str = "train", start: int = 0) -> list[Example]:
    """Create n distinct examples cycling through the three labels."""
    examples = []
    for i in range(start, start + n):
        premise, hypothesis, label = PAIRS[i % 3]
        inputs = {"premise": f"{premise} (Section {i + 1})", "hypothesis": hypothesis}
        examples.append(Example.objects.create(
            task=task, inputs=inputs, gold_label=label, split=split,
            content_hash=Example.hash_content(inputs, label),
        ))
    return examples


def make_micro_rule(example: Example, condition: str, *, model: str = "fake-teacher") -> MicroRule:
    """Store a micro-rule for an example as if the teacher had written it."""
    return MicroRule.objects.create(
        task=example.task, example=example, rationale="Because the wording settles it.", condition=condition,
        label=example.gold_label, teacher_model=model, teacher_endpoint="http://127.0.0.1:1/v1",
    )
