"""Evaluation fixtures: the real student (the bundled GGUF, loaded once per session) and small example sets."""
from __future__ import annotations

from typing import Any

import pytest

from evaluation.student import Student, get_student
from rules.models import Example, Task

# Small enough to keep memory low, large enough for every prompt these tests build.
STUDENT_N_CTX = 2048

NDA_ROWS = [
    ("The Recipient shall not disclose Confidential Information to any third party.",
     "The receiving party may share confidential information with third parties.", "Contradiction"),
    ("The Recipient may disclose Confidential Information to its employees who need to know it.",
     "The receiving party may share confidential information with its employees.", "Entailment"),
    ("This Agreement is governed by the laws of England.",
     "The receiving party may share confidential information with its employees.", "NotMentioned"),
    ("Upon termination the Recipient shall return or destroy all Confidential Information.",
     "The receiving party must return or destroy confidential information at the end.", "Entailment"),
    ("The Recipient may keep copies of Confidential Information after termination.",
     "The receiving party must return or destroy confidential information at the end.", "Contradiction"),
    ("Notices must be sent by registered mail.",
     "The receiving party must return or destroy confidential information at the end.", "NotMentioned"),
]


@pytest.fixture(scope="session")
def student() -> Student:
    return get_student(n_ctx=STUDENT_N_CTX)


@pytest.fixture
def student_settings(settings: Any, student: Student) -> Student:
    """Make runs created in the test use the session's student (same path and context size)."""
    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    return student


def add_examples(
    task: Task, rows: list[tuple[str, str, str]], *, split: str = "test", group_key: str = ""
) -> list[Example]:
    """Add (premise, hypothesis, label) rows to a task as examples of one split."""
    examples = []
    for premise, hypothesis, label in rows:
        inputs = {"premise": premise, "hypothesis": hypothesis}
        example = Example(
            task=task,
            inputs=inputs,
            gold_label=label,
            split=split,
            content_hash=Example.hash_content({**inputs, "_split": split}, label),
            group_key=group_key,
        )
        example.full_clean()
        example.save()
        examples.append(example)
    return examples


@pytest.fixture
def nda_examples(task: Task) -> list[Example]:
    add_examples(task, NDA_ROWS, split="train")
    return add_examples(task, NDA_ROWS, split="test")


@pytest.fixture
def contract_task(db: None) -> Task:
    """A task whose examples share a long document, like ContractNLI."""
    task = Task(
        name="contracts",
        description="Does the contract entail, contradict or not mention the hypothesis?",
        labels=[{"name": "Entailment"}, {"name": "Contradiction"}, {"name": "NotMentioned"}],
        input_fields=["document", "hypothesis"],
        shared_context_field="document",
    )
    task.full_clean()
    task.save()
    return task


CONTRACT_A = (
    "MUTUAL NON-DISCLOSURE AGREEMENT. 1. The Receiving Party shall hold Confidential Information in strict "
    "confidence. 2. The Receiving Party may disclose Confidential Information to its employees who need to know. "
    "3. Upon termination the Receiving Party shall return all Confidential Information. 4. This Agreement is "
    "governed by the laws of Delaware."
)
CONTRACT_B = (
    "CONFIDENTIALITY AGREEMENT. The Recipient shall not disclose any Confidential Information to third parties. "
    "The Recipient may retain one archival copy of Confidential Information. This Agreement lasts three years."
)
HYPOTHESES = [
    ("The receiving party may share confidential information with employees.", "Entailment", "NotMentioned"),
    ("The receiving party may keep a copy of confidential information.", "Contradiction", "Entailment"),
    ("The agreement is governed by French law.", "Contradiction", "NotMentioned"),
]


def add_contract_examples(task: Task, *, split: str = "test") -> list[Example]:
    """Add three hypotheses for each of two documents, the document in a shared field."""
    examples = []
    for key, document, column in (("doc-a", CONTRACT_A, 1), ("doc-b", CONTRACT_B, 2)):
        for hypothesis, *labels in HYPOTHESES:
            inputs = {"document": document, "hypothesis": hypothesis}
            label = labels[column - 1]
            example = Example(
                task=task, inputs=inputs, gold_label=label, split=split, group_key=key,
                content_hash=Example.hash_content(inputs, label),
            )
            example.save()
            examples.append(example)
    return examples
