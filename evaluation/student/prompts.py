"""Prompt layouts for each evaluation mode: what goes in the rules, the context and the example.

Every mode shares one layout, [rules][shared context][example][answer cue], so the only thing that
changes between zero-shot, few-shot, pld and cot is the rules segment (and, for cot, a reasoning
cue before the answer). The example segment ends with the question field, then the answer cue.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rules.models import Example, Task

ANSWER_CUE = "Answer:"
REASONING_CUE = "Reasoning:"
# What stands in for every input field when measuring the label prior (contextual calibration).
CONTENT_FREE = "N/A"


@dataclass(frozen=True)
class ExampleLayout:
    """The text of one example's variable parts."""

    context: str
    example: str
    cue: str = ANSWER_CUE


def field_title(name: str) -> str:
    """Return a field name as a heading: ``hypothesis`` → ``Hypothesis``."""
    return name.replace("_", " ").replace("-", " ").strip().capitalize()


def example_layout(*, task: Task, inputs: dict[str, Any]) -> ExampleLayout:
    """Return the shared-context text and the example text of one example of a task."""
    shared = task.shared_context_field
    context = ""
    if shared:
        context = f"{field_title(shared)}:\n{str(inputs.get(shared, '')).strip()}"
    lines = [
        f"{field_title(name)}: {str(inputs.get(name, '')).strip()}"
        for name in task.input_fields
        if name != shared
    ]
    return ExampleLayout(context=context, example="\n".join(lines))


def content_free_layout(*, task: Task) -> ExampleLayout:
    """Return the layout of a content-free example (every field "N/A") for calibration."""
    return example_layout(task=task, inputs={name: CONTENT_FREE for name in task.input_fields})


def task_header(task: Task) -> str:
    """Describe the task and its labels: the zero-shot prompt."""
    lines = []
    if task.description:
        lines.append(f"Task: {task.description.strip()}")
    lines.append("Labels:")
    for label in task.labels:
        description = str(label.get("description", "")).strip()
        lines.append(f"- {label['name']}: {description}" if description else f"- {label['name']}")
    lines.append(f"Answer with exactly one label: {', '.join(task.label_names)}.")
    return "\n".join(lines)


def format_demonstration(*, task: Task, example: Example) -> str:
    """Return one solved example as it appears in a few-shot prompt."""
    layout = example_layout(task=task, inputs=example.inputs)
    parts = [layout.context, layout.example] if layout.context else [layout.example]
    return "\n".join(parts) + f"\n{ANSWER_CUE} {example.gold_label}"


def select_demonstrations(*, candidates: Iterable[Example], labels: list[str], k: int, seed: int) -> list[Example]:
    """Pick k examples balanced across labels (round-robin), reproducibly for a seed."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {label: [] for label in labels}
    for example in candidates:
        if example.gold_label in by_label:
            by_label[example.gold_label].append(example)
    for pool in by_label.values():
        pool.sort(key=lambda e: e.pk)
        rng.shuffle(pool)
    chosen: list[Example] = []
    while len(chosen) < k and any(by_label.values()):
        for label in labels:
            if by_label[label] and len(chosen) < k:
                chosen.append(by_label[label].pop())
    rng.shuffle(chosen)
    return chosen


def few_shot_rules(*, task: Task, demonstrations: list[Example]) -> str:
    """Return the few-shot prompt: the task header followed by solved examples."""
    blocks = [task_header(task), "Examples:"]
    blocks.extend(format_demonstration(task=task, example=e) for e in demonstrations)
    return "\n\n".join(blocks)


def pld_rules(*, task: Task, prompt_text: str) -> str:
    """Return a compiled rule prompt, adding the label list if the text does not name every label."""
    text = prompt_text.strip()
    if all(label in text for label in task.label_names):
        return text
    return f"{text}\n\nAnswer with exactly one label: {', '.join(task.label_names)}."


def cot_rules(*, task: Task) -> str:
    """Return the chain-of-thought prompt: the task header and an instruction to reason first."""
    return task_header(task) + "\nFirst explain your reasoning briefly, then give the label."


def no_rules(*, task: Task) -> str:
    """Return a prompt with the labels but no rules (the adherence check's baseline)."""
    return f"Answer with exactly one label: {', '.join(task.label_names)}."
