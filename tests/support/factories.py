"""factory_boy factories: the one home for the records tests build directly.

Plain records (tasks, examples, micro-rules, logged calls) are built by factories that ``full_clean`` before
saving, like the services. Audited records go through the services, as in the app: ``TeacherRuleFactory``
proposes a rule with ``rule_propose``. The functions below the factories are the shapes tests ask for most.
"""
from __future__ import annotations

import uuid
from typing import Any

import factory
from factory.django import DjangoModelFactory

from evaluation.models import ClassifyCall
from evaluation.production.decision_log import classify_call_save, inputs_sha256
from rules.models import Example, MicroRule, Rule, Task
from rules.review.services import rule_propose

NDA_LABELS = [
    {"name": "Entailment", "description": "The clause says the hypothesis holds."},
    {"name": "Contradiction", "description": "The clause says the opposite."},
    {"name": "NotMentioned", "description": "The clause says nothing about it."},
]
TEACHER_MODEL = "gemma-3-270m-q4_k_m"
TEACHER_RULE_TEXT = "If the clause lets the recipient share with employees, then Entailment"
CALL_INPUTS = {"premise": "The Recipient may share Confidential Information with its employees.",
               "hypothesis": "The receiving party may share information with its employees."}

# (premise, hypothesis, label) rows: three cycling NDA clauses, six for the student, two shared documents.
PAIRS = [
    ("The Recipient shall not disclose Confidential Information to any third party.",
     "The Receiving Party may share some Confidential Information with third parties.", "Contradiction"),
    ("The Recipient may disclose Confidential Information to employees who need to know it.",
     "The Receiving Party may share some Confidential Information with its employees.", "Entailment"),
    ("This Agreement is governed by the laws of the State of New York.",
     "The Receiving Party shall return Confidential Information on termination.", "NotMentioned"),
]
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


class CleanFactory(DjangoModelFactory):
    """Validate with ``full_clean`` before saving, as the services do."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        instance = model_class(*args, **kwargs)
        instance.full_clean()
        instance.save()
        return instance


class TaskFactory(CleanFactory):
    class Meta:
        model = Task

    name = factory.Sequence(lambda n: f"task-{n}")
    labels = factory.LazyFunction(lambda: [dict(label) for label in NDA_LABELS])
    input_fields = factory.LazyFunction(lambda: ["premise", "hypothesis"])


class ExampleFactory(CleanFactory):
    class Meta:
        model = Example

    task = factory.SubFactory(TaskFactory)
    inputs = factory.Sequence(lambda n: {"premise": f"Clause {n}: the recipient may share with employees.",
                                         "hypothesis": f"H{n}"})
    gold_label = "Entailment"
    split = "train"
    content_hash = factory.LazyAttribute(lambda o: Example.hash_content(o.inputs, o.gold_label))


class MicroRuleFactory(CleanFactory):
    """A micro-rule as if the teacher had written it for its example."""

    class Meta:
        model = MicroRule

    example = factory.SubFactory(ExampleFactory)
    task = factory.SelfAttribute("example.task")
    rationale = "Because the wording settles it."
    condition = "the clause settles it"
    label = factory.SelfAttribute("example.gold_label")
    teacher_model = "fake-teacher"
    teacher_endpoint = "http://127.0.0.1:1/v1"


class TeacherRuleFactory(factory.Factory):
    """A pending rule proposed by the teacher model, through ``rule_propose`` (audited)."""

    class Meta:
        model = Rule

    task = factory.SubFactory(TaskFactory)
    text = TEACHER_RULE_TEXT
    label = "Entailment"
    support = 5

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Rule:
        return rule_propose(origin=Rule.Origin.TEACHER, proposed_by_model=TEACHER_MODEL, **kwargs)


class ClassifyCallFactory(CleanFactory):
    """A logged production decision of ``prompt_version`` (required)."""

    class Meta:
        model = ClassifyCall

    request_id = factory.LazyFunction(uuid.uuid4)
    source = "api"
    task = factory.SelfAttribute("prompt_version.task")
    prompt_sha256 = factory.SelfAttribute("prompt_version.sha256")
    model_sha256 = "m" * 64
    label = "Entailment"
    top_probability = 0.8
    probabilities = factory.LazyAttribute(lambda o: {o.label: o.top_probability})
    latency_ms = 12.0
    input_retention = "full"
    inputs = factory.LazyFunction(lambda: dict(CALL_INPUTS))
    input_sha256 = factory.LazyAttribute(lambda o: inputs_sha256(o.inputs))

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        # Through the decision log's own save, so the call is counted in its rollup as the API's would be.
        instance = model_class(*args, **kwargs)
        instance.full_clean()
        return classify_call_save(instance)


def make_examples(task: Task, n: int, split: str = "train", start: int = 0) -> list[Example]:
    """Create n distinct examples cycling through the three labels."""
    examples = []
    for i in range(start, start + n):
        premise, hypothesis, label = PAIRS[i % 3]
        inputs = {"premise": f"{premise} (Section {i + 1})", "hypothesis": hypothesis}
        examples.append(ExampleFactory(task=task, inputs=inputs, gold_label=label, split=split))
    return examples


def example(
    task: Task, n: int, *, premise: str = "", gold: str = "Entailment", evidence: list | None = None
) -> Example:
    """Return a saved example with a premise, a hypothesis and optional evidence spans."""
    inputs = {"premise": premise or f"Clause {n}: the recipient may share with employees.", "hypothesis": f"H{n}"}
    return ExampleFactory(task=task, inputs=inputs, gold_label=gold, evidence=evidence or [])


def add_examples(
    task: Task, rows: list[tuple[str, str, str]], *, split: str = "test", group_key: str = ""
) -> list[Example]:
    """Add (premise, hypothesis, label) rows to a task as examples of one split (the same rows may go in two)."""
    return [
        ExampleFactory(
            task=task, inputs={"premise": premise, "hypothesis": hypothesis}, gold_label=label, split=split,
            group_key=group_key,
            content_hash=Example.hash_content({"premise": premise, "hypothesis": hypothesis, "_split": split}, label),
        )
        for premise, hypothesis, label in rows
    ]


def add_contract_examples(task: Task, *, split: str = "test") -> list[Example]:
    """Add three hypotheses for each of two documents, the document in a shared field."""
    return [
        ExampleFactory(task=task, inputs={"document": document, "hypothesis": hypothesis},
                       gold_label=labels[column - 1], split=split, group_key=key)
        for key, document, column in (("doc-a", CONTRACT_A, 1), ("doc-b", CONTRACT_B, 2))
        for hypothesis, *labels in HYPOTHESES
    ]


def make_micro_rule(example: Example, condition: str, *, model: str = "fake-teacher") -> MicroRule:
    """Store a micro-rule for an example as if the teacher had written it."""
    return MicroRuleFactory(example=example, condition=condition, teacher_model=model)


def teacher_rule(task: Task, text: str = TEACHER_RULE_TEXT, label: str = "Entailment", support: int = 5,
                 **extra: Any) -> Rule:
    """Return a pending rule proposed by the teacher model."""
    return TeacherRuleFactory(task=task, text=text, label=label, support=support, **extra)
