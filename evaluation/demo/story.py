"""The demo story in order: each chapter is a ``step(stdout) -> None`` that skips what is already there."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from evaluation.demo import production, prompts, reports, review, second_factors, student, teacher, users

Step = Callable[[TextIO], None]

STEPS: list[Step] = [
    users.seed_users_and_tasks,
    second_factors.seed_second_factors,
    teacher.seed_teacher_rules,
    review.seed_review_decisions,
    prompts.seed_prompt_versions,
    student.seed_evaluations,
    prompts.seed_promotion,
    production.seed_production_calls,
    reports.seed_report,
]


def step_name(step: Step) -> str:
    """Return a step's dotted path, which ``seed_demo`` prints and ``--only`` matches."""
    return f"{step.__module__}.{step.__qualname__}"


def demo_seed(*, stdout: TextIO, only: str | None = None) -> None:
    """Run the story's steps (those whose dotted path contains ``only``, if given), timing each."""
    for step in STEPS:
        name = step_name(step)
        if only and only not in name:
            continue
        stdout.write(f"==> {name}\n")
        started = time.monotonic()
        step(stdout)
        stdout.write(f"    ({time.monotonic() - started:.1f} s)\n")
