"""Phase 1: for each training example the teacher justifies the gold label and writes one general rule.

Resumable: examples that already have a micro-rule from this teacher model are skipped, and every
question already asked is answered from the call log, so a second run costs no teacher request.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from django.db import transaction

from pldreview.jobs import JobProgress
from pldreview.ledger import ledger_append
from rules.models import Example, MicroRule, Split, Task, TeacherCall
from rules.teacher.client import (
    Teacher,
    TeacherAnswer,
    TeacherConfig,
    TeacherError,
    TeacherRequest,
    TeacherTally,
    teacher_request_hash,
)

# Longest text of one input field shown to the teacher; ContractNLI documents run to 42k characters
# and the local teacher has a 4k-token context. Evidence spans are shown instead when the example has them.
JOB_KIND = "extract"
MAX_FIELD_CHARS = 1500

GUIDE = """You write rules for a text classifier. For one labelled example you do two things:
1. "rationale": one or two sentences explaining why the gold label is correct for this example.
2. "condition": ONE general rule condition that can be checked on any new input of this task and that \
implies the gold label. Describe a kind of wording, obligation or situation, not this particular text.

Good conditions (general, checkable):
- "the text forbids an action in every case and the statement claims the action is sometimes allowed"
- "the text lists the people who may receive information and the statement names one of those groups"
- "the statement is about a subject the text does not discuss at all"
Bad conditions (never write these):
- "Acme Ltd must not tell Beta GmbH about the project" (names people or companies from one example)
- "read the text carefully" or "use common sense" (vague advice, not a condition)
- "the answer is Entailment" (restates the label)

Answer with a JSON object with the keys "rationale", "condition" and "label"."""

# The worked examples above; a condition that copies one says nothing about the example at hand.
GUIDE_CONDITIONS = [line.split('"')[1].lower() for line in GUIDE.splitlines() if line.startswith('- "')]


def _label_lines(task: Task) -> str:
    lines = []
    for label in task.labels:
        description = label.get("description", "")
        lines.append(f"- {label['name']}" + (f": {description}" if description else ""))
    return "\n".join(lines)


def field_text(task: Task, example: Example, name: str) -> str:
    """Return one input field as shown to the teacher: evidence spans for a shared context, and shortened."""
    value = str(example.inputs.get(name, ""))
    if name == task.shared_context_field and example.evidence:
        spans = [value[span["start"] : span["end"]] for span in example.evidence if "start" in span]
        value = " … ".join(span.strip() for span in spans if span.strip()) or value
    if len(value) > MAX_FIELD_CHARS:
        value = value[:MAX_FIELD_CHARS] + " …"
    return value


def extraction_messages(task: Task, example: Example) -> list[dict[str, str]]:
    """Return the chat messages that ask the teacher for one example's rationale and rule."""
    system = f"Task: {task.title or task.name}. {task.description}\nLabels:\n{_label_lines(task)}\n\n{GUIDE}"
    fields = "\n".join(f"{name}: {field_text(task, example, name)}" for name in task.input_fields)
    user = f"Example:\n{fields}\nGold label: {example.gold_label}\n\nWrite the rationale and one general condition."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def extraction_schema(example: Example) -> dict[str, Any]:
    """Return the JSON schema of the reply: non-empty text and the gold label itself."""
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "minLength": 10, "maxLength": 300},
            "condition": {"type": "string", "minLength": 10, "maxLength": 240},
            "label": {"type": "string", "enum": [example.gold_label]},
        },
        "required": ["rationale", "condition", "label"],
    }


def extraction_examples(task: Task, *, limit: int | None = None, split: str = Split.TRAIN) -> list[Example]:
    """Return the examples a run covers: interleaved by gold label so a small limit still sees every label."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in Example.objects.filter(task=task, split=split).order_by("id"):
        by_label[example.gold_label].append(example)
    ordered = [label for label in task.label_names if label in by_label] + sorted(
        label for label in by_label if label not in task.label_names
    )
    interleaved = [ex for row in zip_longest(*(by_label[label] for label in ordered)) for ex in row if ex]
    return interleaved[:limit] if limit else interleaved


def _extraction_request(task: Task, example: Example) -> TeacherRequest:
    return TeacherRequest(
        purpose="extract", messages=extraction_messages(task, example), schema=extraction_schema(example), key=example
    )


def extraction_pending(task: Task, config: TeacherConfig, *, limit: int | None = None) -> list[Example]:
    """Return the examples a run would still ask the teacher about (no micro-rule and no stored reply)."""
    examples = extraction_examples(task, limit=limit)
    done = set(
        MicroRule.objects.filter(example__in=examples, teacher_model=config.model).values_list("example_id", flat=True)
    )
    hashes = {ex.pk: teacher_request_hash(config, _extraction_request(task, ex)) for ex in examples}
    answered = set(
        TeacherCall.objects.filter(request_hash__in=hashes.values(), response__isnull=False).values_list(
            "request_hash", flat=True
        )
    )
    return [ex for ex in examples if ex.pk not in done and hashes[ex.pk] not in answered]


@dataclass
class ExtractionSummary(TeacherTally):
    """What one extraction run did."""

    teacher_model: str
    teacher_endpoint: str
    n_examples: int = 0
    n_existing: int = 0
    n_created: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def rule_problem(condition: str) -> str:
    """Return why a condition is not a usable rule (a copied worked example, a restated label), or ''."""
    text = condition.strip().rstrip(".").lower()
    if any(text == example or text in example for example in GUIDE_CONDITIONS):
        return "The condition copies a worked example from the prompt instead of describing this example."
    if "gold label" in text:
        return "The condition talks about the gold label instead of the input."
    return ""


@transaction.atomic
def _micro_rule_store(*, task: Task, example: Example, answer: TeacherAnswer, config: TeacherConfig) -> MicroRule:
    micro = MicroRule(
        task=task,
        example=example,
        rationale=answer.data["rationale"].strip(),
        condition=answer.data["condition"].strip().rstrip("."),
        label=answer.data["label"],
        # The stored call says who answered: with a replayed answer that is the endpoint that gave it.
        teacher_model=answer.call.model,
        teacher_endpoint=answer.call.base_url,
        teacher_endpoint_name=answer.call.endpoint_name,
        teacher_settings=config.public_settings(),
        teacher_call=answer.call,
    )
    micro.full_clean()
    micro.save()
    return micro


def micro_rules_extract(
    *,
    task: Task,
    config: TeacherConfig,
    limit: int | None = None,
    split: str = Split.TRAIN,
    job: Any = None,
    progress: JobProgress | None = None,
) -> ExtractionSummary:
    """Ask the teacher for a micro-rule per example that has none from this model yet, and store them.

    Returns a summary; a reached budget stops the run cleanly (``stopped`` says why). A teacher that
    keeps failing raises TeacherError after everything answered so far is stored.
    """
    summary = ExtractionSummary(teacher_model=config.model, teacher_endpoint=config.endpoint)
    examples = extraction_examples(task, limit=limit, split=split)
    summary.n_examples = len(examples)
    done_ids = set(
        MicroRule.objects.filter(example__in=examples, teacher_model=config.model).values_list("example_id", flat=True)
    )
    summary.n_existing = len(done_ids)
    todo = [example for example in examples if example.pk not in done_ids]
    if progress is not None:
        progress.set_total(len(examples), f"{len(done_ids)} of {len(examples)} examples already have a micro-rule")
        progress.set_done(len(done_ids))
    if not todo:
        return summary
    teacher = Teacher(config, job=job)
    requests = [_extraction_request(task, example) for example in todo]
    for answer in teacher.ask_all(requests, tally=summary):
        problem = answer.message if isinstance(answer, TeacherError) else rule_problem(answer.data["condition"])
        if not problem:
            _micro_rule_store(task=task, example=answer.request.key, answer=answer, config=config)
            summary.n_created += 1
        else:
            if isinstance(answer, TeacherAnswer):
                summary.n_failed += 1  # ask_all counts only replies that break the schema
            summary.failures.append({"example": answer.request.key.pk if answer.request else None, "error": problem})
        if progress is not None:
            progress.advance()
    ledger_append(
        event="teacher_run.finished", actor=getattr(job, "created_by", None), obj=task,
        facts={"phase": "extraction", "job_id": getattr(job, "pk", None), **summary.as_dict()},
        reason=f"Extraction: {summary.n_created} new micro-rules",
    )
    return summary
