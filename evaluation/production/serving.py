"""Classify one input with a task's production prompt version: the code behind the API and ``classify``."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from evaluation.models import ServingStop
from evaluation.production.decision_thread import decision_thread_run
from evaluation.production.serving_stops import serving_stop_body, serving_stop_current, serving_stop_message
from evaluation.release.promotion import production_prompt_version
from evaluation.student.http_client import get_backend_student
from evaluation.student.in_process import ExampleTooLongError, StudentError, classify_example
from evaluation.student.prompts import pld_rules
from evaluation.student.warm import student_state_restore
from rules.models import Task

# What an input field must be, as the OpenAPI document publishes it (production/api.py) and classify_inputs enforces
# it: at least one character that is not whitespace, and no NUL. Whitespace is spelled out (exactly the characters
# of Python's str.isspace, which strip() uses) because \s differs between Python, ECMA-262 and Rust regexes.
_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
INPUT_FIELD_PATTERN = f"^[^\\u0000]*[^\\u0000{_SPACE}][^\\u0000]*$"
# Lone surrogates (JSON's "\ud800") are refused too: not Unicode text (RFC 8259 §8.2), the student cannot encode
# them as UTF-8, and PostgreSQL can store neither them nor NUL. No JSON Schema pattern can name them (a validator
# working on Unicode scalar values cannot even hold them), so the document states it in words.
_NOT_TEXT_CHARACTER = re.compile("[\\u0000\\ud800-\\udfff]")


class ClassifyError(Exception):
    """The input cannot be classified; ``status`` is the HTTP status and ``code`` a stable error name."""

    def __init__(self, message: str, *, status: int, code: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.fields = fields or []

    def as_dict(self, *, request_id: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.fields:
            body["fields"] = self.fields
        return body


class ServingStopped(ClassifyError):
    """The task's serving is stopped (``production.serving_stops``): no decision is given, 503 ``serving_stopped``."""

    def __init__(self, stop: ServingStop) -> None:
        super().__init__(serving_stop_message(stop), status=503, code="serving_stopped")
        self.stop = stop

    def as_dict(self, *, request_id: Any = None) -> dict[str, Any]:
        """Return the refusal's JSON body: the stop (since, by whom, why) and the request's id."""
        return serving_stop_body(self.stop, request_id=request_id)


def serving_stop_check(task: Task | int) -> None:
    """Raise ``ServingStopped`` when the task's serving is stopped now (read from the database, never cached)."""
    stop = serving_stop_current(task)
    if stop is not None:
        raise ServingStopped(stop)


@dataclass(frozen=True)
class Classification:
    """The production prompt's decision on one input, and what made it."""

    label: str
    probabilities: dict[str, float]
    prompt_version_id: int
    prompt_version_number: int
    prompt_version_sha256: str
    model_sha256: str
    latency_ms: float
    # "restored" (the rules prefix came from a saved state) or "recomputed"; also in the X-PLD-Prefix header.
    prefix: str = "recomputed"
    # "llama_cpp" (in this process) or "server" (PLD_STUDENT_BACKEND), and why the scores are approximate
    # (empty: exact; the in-process student is always exact).
    backend: str = "llama_cpp"
    approximation: str = ""
    # The inference server's URL and the model name it answered with (empty in-process).
    student_base_url: str = ""
    student_model: str = ""

    @property
    def scoring(self) -> str:
        """Return "approximate" when the label scores are an approximation, else "exact"."""
        return "approximate" if self.approximation else "exact"

    def as_dict(self) -> dict[str, Any]:
        scoring: dict[str, Any] = {"backend": self.backend, "exact": not self.approximation}
        if self.approximation:
            scoring["approximation"] = self.approximation
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "prompt_version": {
                "id": self.prompt_version_id,
                "number": self.prompt_version_number,
                "sha256": self.prompt_version_sha256,
            },
            "model_sha256": self.model_sha256,
            "scoring": scoring,
        }


def classify_inputs(*, task: Task, payload: Any) -> dict[str, str]:
    """Check a request body against the task's input fields; return the inputs or raise ClassifyError."""
    if not isinstance(payload, dict):
        raise ClassifyError(
            f"The body must be a JSON object with the fields {', '.join(task.input_fields)}.",
            status=400, code="not_an_object",
        )
    missing = [name for name in task.input_fields if name not in payload]
    if missing:
        raise ClassifyError(
            f"Missing field(s): {', '.join(missing)}. Task {task.name} needs {', '.join(task.input_fields)}.",
            status=400, code="missing_field", fields=missing,
        )
    unknown = sorted(name for name in payload if name not in task.input_fields)
    if unknown:
        raise ClassifyError(
            f"Unknown field(s): {', '.join(unknown)}. Task {task.name} takes {', '.join(task.input_fields)}.",
            status=400, code="unknown_field", fields=unknown,
        )
    wrong = [name for name in task.input_fields if not isinstance(payload[name], str)]
    if wrong:
        raise ClassifyError(
            f"Field(s) {', '.join(wrong)} must be strings.", status=400, code="wrong_type", fields=wrong
        )
    not_text = [name for name in task.input_fields if _NOT_TEXT_CHARACTER.search(payload[name])]
    if not_text:
        raise ClassifyError(
            f"Field(s) {', '.join(not_text)} hold a NUL character or a lone surrogate (\\ud800-\\udfff), "
            "which is not text: send UTF-8 text.", status=400, code="invalid_unicode", fields=not_text,
        )
    empty = [name for name in task.input_fields if not payload[name].strip()]
    if empty:
        raise ClassifyError(f"Field(s) {', '.join(empty)} are empty.", status=400, code="empty_field", fields=empty)
    return {name: payload[name] for name in task.input_fields}


def _decide(*, student: Any, task: Task, inputs: dict[str, Any], rules_text: str) -> Any:
    # The student's part of a call: no database here (decision_thread.py runs it on another thread).
    if student.backend == "llama_cpp":
        student_state_restore(student=student, rules_text=rules_text)
    return classify_example(student=student, task=task, inputs=inputs, rules_text=rules_text)


def production_classify(*, task: Task, payload: Any, on_decision_thread: bool = False) -> Classification:
    """Classify one input with the task's current production version (read per call, never cached).

    A stopped task (``evaluation.production.serving_stops``) raises ``ServingStopped`` before anything is decided.
    ``on_decision_thread``: the student decides on the process's decision thread (the API's request threads stay
    ahead of it for the CPU; evaluation/production/decision_thread.py).
    """
    inputs = classify_inputs(task=task, payload=payload)
    serving_stop_check(task)
    version = production_prompt_version(task)
    if version is None:
        raise ClassifyError(
            f"Task {task.name} has no prompt version in production; an Admin must promote one first.",
            status=409, code="no_production_version",
        )
    try:
        # The path is resolved once per process; the student itself is loaded once per process by get_student.
        student = get_backend_student()
        rules_text = pld_rules(task=task, prompt_text=version.text)
        work = {"student": student, "task": task, "inputs": inputs, "rules_text": rules_text}
        decision = decision_thread_run(_decide, **work) if on_decision_thread else _decide(**work)
    except ExampleTooLongError as exc:
        raise ClassifyError(exc.message, status=413, code="input_too_long") from exc
    except StudentError as exc:
        raise ClassifyError(f"The student model is unavailable: {exc.message}", status=503, code="model_error") from exc
    return Classification(
        label=decision.label,
        probabilities={name: round(p, 6) for name, p in decision.probabilities.items()},
        prompt_version_id=version.pk,
        prompt_version_number=version.number,
        prompt_version_sha256=version.sha256,
        model_sha256=student.info.sha256,
        latency_ms=decision.latency_ms,
        prefix=decision.prefix,
        backend=student.backend,
        approximation=decision.approximation,
        student_base_url=getattr(student, "base_url", ""),
        student_model=decision.answered_by,
    )
