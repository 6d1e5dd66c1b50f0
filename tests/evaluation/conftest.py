"""Evaluation fixtures: the real student (the bundled GGUF, loaded once per session) and small example sets."""
from __future__ import annotations

from typing import Any

import pytest

from evaluation.student.in_process import Student, get_student
from rules.models import Example, Task
from tests.support.factories import NDA_ROWS, TaskFactory, add_examples
from tests.support.student import STUDENT_N_CTX


@pytest.fixture(scope="session")
def student() -> Student:
    return get_student(n_ctx=STUDENT_N_CTX)


@pytest.fixture
def student_settings(settings: Any, student: Student) -> Student:
    """Make runs created in the test use the session's student (same path and context size)."""
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    return student


@pytest.fixture
def nda_examples(task: Task) -> list[Example]:
    add_examples(task, NDA_ROWS, split="train")
    return add_examples(task, NDA_ROWS, split="test")


@pytest.fixture
def contract_task(db: None) -> Task:
    """A task whose examples share a long document, like ContractNLI."""
    return TaskFactory(
        name="contracts",
        description="Does the contract entail, contradict or not mention the hypothesis?",
        labels=[{"name": "Entailment"}, {"name": "Contradiction"}, {"name": "NotMentioned"}],
        input_fields=["document", "hypothesis"],
        shared_context_field="document",
    )
