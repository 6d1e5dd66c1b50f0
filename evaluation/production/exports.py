"""Exporting logged calls as they are read: CSV and a streamed JSON document, in flat memory at any volume.

``call_export_rows`` is the row producer of the JSON document: it reads the calls in chunks (a server-side
cursor on PostgreSQL, ``fetchmany`` on SQLite) as plain values, never model instances, and yields one dict per
call. ``call_export_csv`` writes the same columns as CSV from tuples, the JSON columns as the text the database
holds, because at volume decoding and re-encoding them was most of its time (a test holds the two equal). The
writers turn rows into text a few hundred at a time, so a million calls cost what a thousand do in memory. A
column is added in ``CALL_EXPORT_VALUES`` (what is read), ``_row`` (what is written), ``CSV_HEADER`` and
``_csv_chunk``.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from evaluation.models import ClassifyCall, DecisionExplanation
from evaluation.runs.impact import explanation_as_dict
from pldreview.dates import day_after, day_start
from rules.models import PromptVersion, Task

CHUNK_SIZE = 2000
# Rows per piece of text handed to the response: big enough that writing is not per row, small enough to stay flat.
ROWS_PER_PIECE = 500
CALL_EXPORT_VALUES = (
    "request_id", "created_at", "source", "api_token__prefix", "prompt_version__number", "prompt_sha256",
    "model_sha256", "student_backend", "student_base_url", "student_model", "approximation", "label",
    "top_probability", "probabilities", "latency_ms", "input_retention", "input_sha256", "inputs", "id",
)
# The same columns for the CSV, the JSON ones as their text (call_export_csv).
_CSV_VALUES = tuple({"probabilities": "probabilities_text", "inputs": "inputs_text"}.get(name, name)
                    for name in CALL_EXPORT_VALUES)


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


# The CSV's header: the keys of ``_row``, in its order (a test holds them equal).
CSV_HEADER = ("request_id", "time", "source", "api_token", "prompt_version", "prompt_sha256", "model_sha256",
              "student_backend", "student_base_url", "student_model", "approximation", "label", "top_probability",
              "probabilities", "latency_ms", "input_retention", "input_sha256", "inputs", "explanation")


def calls_in_range(*, task: Task, start: date, end: date, version: PromptVersion | None) -> QuerySet[ClassifyCall]:
    """Return the task's calls from the start of ``start`` to the end of ``end`` (TIME_ZONE), of one version or all."""
    # A time range rather than created_at__date, so the (task, created_at) index bounds the read.
    calls = ClassifyCall.objects.filter(task=task, created_at__gte=day_start(start), created_at__lt=day_after(end))
    return calls.filter(prompt_version=version) if version is not None else calls


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


def _newest_explanations(ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return the newest explanation of each of these calls that has one: one query, however many calls."""
    if not ids:
        return {}
    wanted = set(ids)
    # A range of ids, not ``IN (…)``: a chunk read in time order is a near-contiguous run of ids, and Django
    # prepares an IN list one parameter at a time (a tenth of the CSV's time). Others in the range are skipped.
    explanations = (DecisionExplanation.objects.filter(call__gte=min(ids), call__lte=max(ids))
                    .select_related("prompt_version", "created_by").order_by("call_id", "-created_at", "-id"))
    newest: dict[int, dict[str, Any]] = {}
    for explanation in explanations:
        if explanation.call_id in wanted and explanation.call_id not in newest:
            newest[explanation.call_id] = explanation_as_dict(explanation)
    return newest


def _with_explanations(chunk: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Write a chunk's rows with each call's newest explanation: one query a chunk, however many rows."""
    newest = _newest_explanations([row["id"] for row in chunk])
    for row in chunk:
        yield _row({**row, "explanation": newest.get(row["id"])})


def call_export_csv(calls: QuerySet[ClassifyCall]) -> Iterator[str]:
    """Yield the calls as CSV text, oldest first: the columns of ``call_export_rows``, dicts as JSON.

    The CSV's own producer, for speed at volume: rows are read as tuples, the JSON columns as the text the
    database holds (``json_cell``), so a row is never decoded and encoded again, and written a piece at a time.
    """
    text = TextField()
    values = (calls.order_by("created_at", "id")
              .annotate(probabilities_text=Cast("probabilities", text), inputs_text=Cast("inputs", text))
              .values_list(*_CSV_VALUES))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    chunk: list[tuple] = []
    for row in values.iterator(chunk_size=CHUNK_SIZE):
        chunk.append(row)
        if len(chunk) == ROWS_PER_PIECE:
            yield from _csv_chunk(chunk, buffer, writer)
            chunk = []
    yield from _csv_chunk(chunk, buffer, writer)


def _csv_chunk(chunk: list[tuple], buffer: io.StringIO, writer: Any) -> Iterator[str]:
    newest = _newest_explanations([row[-1] for row in chunk])
    dumps = _json_text
    writer.writerows(
        (str(request_id), created_at.isoformat(), source, token or "", version, prompt_sha256, model_sha256, backend,
         base_url, model, approximation, label, top, json_cell(probabilities), latency, retention, input_sha256,
         json_cell(inputs), dumps(newest[pk]) if pk in newest else None)
        for (request_id, created_at, source, token, version, prompt_sha256, model_sha256, backend, base_url, model,
             approximation, label, top, probabilities, latency, retention, input_sha256, inputs, pk) in chunk
    )
    if buffer.tell():
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def json_cell(text: str) -> str:
    """Return a JSON column's text as the CSV writes it: as stored, unless it escapes a character as ``\\u``.

    Django stores JSON as ``json.dumps`` writes it (SQLite) and PostgreSQL answers jsonb as the same kind of
    text, so it is written as read; a ``\\u`` escape (non-ASCII text, stored ASCII-only) is written out as the
    character, as ``csv_pieces`` does.
    """
    return text if "\\u" not in text else _json_text(json.loads(text))


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


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
