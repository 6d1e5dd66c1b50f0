"""Exporting logged calls as they are read: CSV and a streamed JSON document, in flat memory at any volume.

``call_export_rows`` is the one row producer: it reads the calls in chunks (a server-side cursor on PostgreSQL,
``fetchmany`` on SQLite) as plain values, never model instances, and yields one dict per call. The writers
turn rows into text a few hundred at a time, so a million calls cost what a thousand do in memory. A column is
added in ``CALL_EXPORT_VALUES`` (what is read) and ``_row`` (what is written).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from evaluation.models import ClassifyCall, DecisionExplanation
from evaluation.runs.impact import explanation_as_dict
from rules.models import PromptVersion, Task

CHUNK_SIZE = 2000
# Rows per piece of text handed to the response: big enough that writing is not per row, small enough to stay flat.
ROWS_PER_PIECE = 500
CALL_EXPORT_VALUES = (
    "request_id", "created_at", "source", "api_token__prefix", "prompt_version__number", "prompt_sha256",
    "model_sha256", "student_backend", "student_base_url", "student_model", "approximation", "label",
    "top_probability", "probabilities", "latency_ms", "input_retention", "input_sha256", "inputs", "id",
)


def _row(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": str(values["request_id"]),
        "time": values["created_at"].isoformat(),
        "source": values["source"],
        "api_token": values["api_token__prefix"] or "",
        "prompt_version": values["prompt_version__number"],
        "prompt_sha256": values["prompt_sha256"],
        "model_sha256": values["model_sha256"],
        "student_backend": values["student_backend"],
        "student_base_url": values["student_base_url"],
        "student_model": values["student_model"],
        "approximation": values["approximation"],
        "label": values["label"],
        "top_probability": values["top_probability"],
        "probabilities": values["probabilities"],
        "latency_ms": values["latency_ms"],
        "input_retention": values["input_retention"],
        "input_sha256": values["input_sha256"],
        "inputs": values["inputs"],
        # The newest "Why this label?" answer (evaluation/runs/impact.py), or None when never asked.
        "explanation": values.get("explanation"),
    }


def calls_in_range(*, task: Task, start: date, end: date, version: PromptVersion | None) -> QuerySet[ClassifyCall]:
    """Return the task's calls from the start of ``start`` to the end of ``end`` (TIME_ZONE), of one version or all."""
    # A time range rather than created_at__date, so the (task, created_at) index bounds the read.
    calls = ClassifyCall.objects.filter(task=task, created_at__gte=_day_start(start),
                                        created_at__lt=_day_start(end + timedelta(days=1)))
    return calls.filter(prompt_version=version) if version is not None else calls


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def call_export_rows(calls: QuerySet[ClassifyCall]) -> Iterator[dict[str, Any]]:
    """Yield each call of the queryset as an export row, oldest first, reading CHUNK_SIZE calls at a time."""
    values = calls.order_by("created_at", "id").values(*CALL_EXPORT_VALUES)
    chunk: list[dict[str, Any]] = []
    for row in values.iterator(chunk_size=CHUNK_SIZE):
        chunk.append(row)
        if len(chunk) == CHUNK_SIZE:
            yield from _with_explanations(chunk)
            chunk = []
    yield from _with_explanations(chunk)


def _with_explanations(chunk: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Write a chunk's rows with each call's newest explanation: one query a chunk, however many rows."""
    newest: dict[int, dict[str, Any]] = {}
    if chunk:
        explanations = (DecisionExplanation.objects.filter(call_id__in=[row["id"] for row in chunk])
                        .select_related("prompt_version", "created_by").order_by("call_id", "-created_at", "-id"))
        for explanation in explanations:
            newest.setdefault(explanation.call_id, explanation_as_dict(explanation))
    for row in chunk:
        yield _row({**row, "explanation": newest.get(row["id"])})


def csv_pieces(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield CSV text: a header from the first row's keys, then the rows; dicts and lists as JSON."""
    buffer = io.StringIO()
    writer: Any = None
    pending = 0
    for row in rows:
        if writer is None:
            writer = csv.writer(buffer)
            writer.writerow(list(row))
        writer.writerow([json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                         for v in row.values()])
        pending += 1
        if pending == ROWS_PER_PIECE:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if buffer.tell():
        yield buffer.getvalue()


def json_pieces(summary: dict[str, Any], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield one JSON document ``{"summary": …, "calls": [row, …]}``, the array written as the rows come."""
    encode = DjangoJSONEncoder(ensure_ascii=False).encode
    yield '{"summary": ' + encode(summary) + ', "calls": [\n'
    parts: list[str] = []
    first = True
    for row in rows:
        parts.append(("" if first else ",\n") + encode(row))
        first = False
        if len(parts) == ROWS_PER_PIECE:
            yield "".join(parts)
            parts.clear()
    yield "".join(parts) + "\n]}\n"
