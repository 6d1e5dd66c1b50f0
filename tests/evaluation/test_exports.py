"""Exports stream: 100,000 logged calls leave through CSV and JSON in flat memory, measured in-process."""
from __future__ import annotations

import csv
import io
import json
import tracemalloc
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from evaluation.models import ClassifyCall
from evaluation.production.decision_log import inputs_sha256
from evaluation.production.exports import csv_pieces, json_pieces
from tests.support.factories import CALL_INPUTS
from tests.support.prompt_versions import approve_all, compiled

N_CALLS = 100_000
# Every row carries its input text (~800 bytes of JSON); the whole export is ~80 MB, so a bound of 20 MB can
# only hold if rows leave as they are read.
PEAK_BOUND_BYTES = 20 * 1024 * 1024


@pytest.fixture
def many_calls(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    start = timezone.now() - timedelta(hours=20)
    inputs = {name: text * 2 for name, text in CALL_INPUTS.items()}
    digest, text = inputs_sha256(inputs), json.dumps(inputs)
    probabilities = json.dumps({"Entailment": 0.9, "Contradiction": 0.06, "NotMentioned": 0.04})
    # One executemany of plain tuples: building 100,000 model instances would take most of the test's time.
    columns = ("request_id", "created_at", "source", "task_id", "prompt_version_id", "prompt_sha256",
               "model_sha256", "label", "probabilities", "top_probability", "latency_ms", "input_retention",
               "inputs", "input_sha256", "student_backend", "student_base_url", "student_model", "approximation")
    uuid_text = connection.vendor != "postgresql"
    rows = [
        (uuid.uuid4().hex if uuid_text else uuid.uuid4(), start + timedelta(milliseconds=600 * i), "api", task.pk,
         version.pk, version.sha256, "m" * 64, "Entailment", probabilities, 0.9, 12.5, "full", text, digest,
         "llama_cpp", "", "", "")
        for i in range(N_CALLS)
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {ClassifyCall._meta.db_table} ({', '.join(columns)}) "  # noqa: S608 (constants)
            f"VALUES ({', '.join(['%s'] * len(columns))})", rows)
    return version


def _drain(response) -> tuple[int, int, bytes, bytes]:
    """Read a streamed response to its end, keeping only its size, line count, head and tail."""
    size = lines = 0
    head = tail = b""
    for piece in response.streaming_content:
        size += len(piece)
        lines += piece.count(b"\n")
        if len(head) < 4000:
            head += piece[:4000]
        tail = (tail + piece)[-4000:]
    return size, lines, head, tail


@pytest.mark.slow
def test_an_export_of_100k_calls_streams_in_flat_memory(client, auditor, many_calls) -> None:
    client.force_login(auditor)
    # The JSON export is the one that held every call in memory before (issue 28: +1.5 GB at 200k calls).
    tracemalloc.start()
    try:
        response = client.get("/tasks/nda-demo/production/export.json")
        assert response.streaming
        size, lines, head, tail = _drain(response)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == N_CALLS + 2 and size > 3 * PEAK_BOUND_BYTES
    assert head.startswith(b'{"summary": {"task": "nda-demo"') and tail.endswith(b"\n]}\n")
    first = json.loads(head.split(b"\n")[1].rstrip(b","))
    assert first["label"] == "Entailment" and first["inputs"]["premise"].startswith("The Recipient")
    assert peak < PEAK_BOUND_BYTES, f"the JSON export peaked at {peak / 2**20:.1f} MB"

    # The CSV export of the same calls, read without tracing (the same row producer, another writer).
    size, lines, head, _tail = _drain(client.get("/tasks/nda-demo/production/export.csv"))
    assert lines == N_CALLS + 1 and next(csv.DictReader(io.StringIO(head.decode())))["label"] == "Entailment"


def test_the_json_writer_makes_one_document_of_any_number_of_rows() -> None:
    for n in (0, 1, 501, 1000):
        rows = ({"n": i, "inputs": {"a": "é"}} for i in range(n))
        document = json.loads("".join(json_pieces({"days": []}, rows)))
        assert [row["n"] for row in document["calls"]] == list(range(n)) and document["summary"] == {"days": []}
    assert "".join(csv_pieces(iter([]))) == ""
    assert "".join(csv_pieces([{"a": 1, "b": {"x": "y"}}] * 501)).count("\n") == 502


def test_the_csv_export_writes_what_the_row_producer_holds(task, admin_user, second_reviewer) -> None:
    """The CSV's own fast producer (JSON columns as stored text) writes the same cells as the generic writer
    over ``call_export_rows``: non-ASCII text, a control character, a hash-only call and an explanation."""
    from evaluation.models import DecisionExplanation
    from evaluation.production.exports import CALL_EXPORT_VALUES, CSV_HEADER, _row, call_export_csv, call_export_rows
    from tests.support.factories import ClassifyCallFactory

    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    texts = [{"premise": "Le destinataire peut partager — «confidentiel» é\u0001", "hypothesis": "日本語"},
             dict(CALL_INPUTS), {}]
    calls = [ClassifyCallFactory(prompt_version=version, inputs=inputs,
                                 input_retention="full" if inputs else "hash") for inputs in texts]
    DecisionExplanation.objects.create(
        call=calls[1], prompt_version=version, prompt_sha256=version.sha256, model_sha256="m" * 64,
        label="Entailment", probabilities={"Entailment": 0.8, "Contradiction": 0.2}, rules=[{"number": 1}],
        deciding_numbers=[1])
    queryset = ClassifyCall.objects.filter(task=task)
    generic = "".join(csv_pieces(call_export_rows(queryset)))
    assert "".join(call_export_csv(queryset)) == generic
    rows = list(csv.DictReader(io.StringIO(generic)))
    assert json.loads(rows[0]["inputs"])["hypothesis"] == "日本語" and json.loads(rows[1]["explanation"])["label"]
    assert tuple(_row(dict.fromkeys(CALL_EXPORT_VALUES) | {"created_at": timezone.now()})) == CSV_HEADER
