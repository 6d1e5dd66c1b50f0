"""The student on an inference server: same labels as in-process, retries then a clear failure, honest scoring."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from evaluation.models import EvaluationRun
from evaluation.runs.services import evaluation_run_create, evaluation_run_execute
from evaluation.student.http_client import ServerStudent, StudentServerError
from evaluation.student.in_process import Student, check_model_file, default_model_path
from evaluation.student.prompts import example_layout, task_header
from rules.teacher.local import LocalTeacher, free_port
from tests.evaluation.conftest import NDA_ROWS, STUDENT_N_CTX, add_examples
from tests.support.servers import serve_in_thread, server_url

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "nda_demo.jsonl"
LABELS = ["Entailment", "Contradiction", "NotMentioned"]


_OPENED: list[ServerStudent] = []


def _server_student(base_url: str, *, model: str = "pld-student", timeout: float = 60.0, max_retries: int = 0,
                    top_logprobs: int = 1000) -> ServerStudent:
    student = ServerStudent(
        check_model_file(default_model_path()), base_url=base_url, api_key="", model=model,
        n_ctx=STUDENT_N_CTX, timeout=timeout, max_retries=max_retries, top_logprobs=top_logprobs,
    )
    _OPENED.append(student)
    return student


@pytest.fixture(autouse=True)
def _close_opened() -> Iterator[None]:
    # Free each test's vocabularies while llama_cpp is loaded (at interpreter exit its globals are gone).
    yield
    while _OPENED:
        _OPENED.pop().close()


# --- A real llama_cpp.server with the bundled model -----------------------------------------------------------


class _StudentServer(LocalTeacher):
    """llama_cpp.server with the session student's context size: the KV cache's length changes how attention sums.

    ``module`` is ``evaluation.student.server`` (llama_cpp.server loading the model as the runner does:
    weight repacking off, full sliding-window cache) or the stock ``llama_cpp.server``.
    """

    def __init__(self, *, module: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.module = module

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("rules.llama_server")] = self.module
        command[command.index("--n_ctx") + 1] = str(STUDENT_N_CTX)
        return command


def _serving(module: str) -> Iterator[LocalTeacher]:
    server = _StudentServer(module=module, port=free_port(), model_alias="pld-student").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def student_server() -> Iterator[LocalTeacher]:
    """Serve the bundled model with llama_cpp.server (as the runner loads it) on a free loopback port."""
    yield from _serving("evaluation.student.server")


@pytest.fixture(scope="module")
def stock_student_server() -> Iterator[LocalTeacher]:
    """Serve the bundled model with the stock ``python -m llama_cpp.server`` (weight repacking on)."""
    for server in _serving("llama_cpp.server"):
        try:
            _server_student(server.base_url, timeout=120.0).classify(
                rules="", context="", example="Is this a test?", labels=["Yes", "No"], cue="Answer:")
        except StudentServerError:
            try:  # a crashed server may still be dying when its connection drops
                code = server.process.wait(timeout=10) if server.process is not None else None
            except subprocess.TimeoutExpired:
                code = None
            if code == -signal.SIGSEGV:
                # Measured on this workplace's AMX-capable Xeon (2026-12-07): llama.cpp's extra buffer types crash
                # at the first decode, so the stock peer cannot run here at all (rules/llama_loading.py).
                pytest.skip("the stock llama_cpp.server (extra buffer types on) crashed with SIGSEGV on this CPU")
            raise
        yield server


def _cpu_has_avx512() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " avx512f" in cpuinfo.read_text()


# Issue 17's bar, met on the AMD EPYC (AVX2) it was set on: 1.2e-4 at most. On the AVX-512 Intel Xeon this
# workplace moved to, llama.cpp's kernels sum in other orders and the same comparison measured 2.1e-3 and 2.4e-3
# (2026-12-07, tiled matmul on and off); the labels stay the same 30 of 30. docs/student.md says what is known.
_EQUALITY_BAR = 5e-3 if _cpu_has_avx512() else 1e-3


def _compare_thirty(server: LocalTeacher, student: Student, task: Any, *, step: int = 1) -> list[tuple[float, str]]:
    """Decide the first 30 NDA fixture examples (every ``step``-th of them) in-process and on the server; assert the
    same labels, all exact.

    Returns each example's largest probability difference, largest first.
    """
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line][:30:step]
    rules = task_header(task)
    remote = _server_student(server.base_url)
    diffs: list[tuple[float, str]] = []
    for row in rows:
        layout = example_layout(task=task, inputs={"premise": row["premise"], "hypothesis": row["hypothesis"]})
        kwargs = {"rules": rules, "context": layout.context, "example": layout.example, "labels": task.label_names,
                  "cue": layout.cue}
        here = student.classify(**kwargs)
        there = remote.classify(**kwargs)
        assert there.label == here.label, (row["id"], here.probabilities, there.probabilities)
        assert there.prefix == "server"
        # The bundled model ranks these labels' first tokens 8th to 294th: inside the top 1,000, so every
        # decision is exact by method and its probabilities are compared.
        assert not there.approximation, (row["id"], there.approximation)
        diff = max(abs(there.probabilities[name] - here.probabilities[name]) for name in task.label_names)
        diffs.append((diff, row["id"]))
    assert remote.answered_by == "pld-student"
    diffs.sort(reverse=True)
    print(f"{server.module}: {len(rows)}/{len(rows)} same labels, exact; largest probability differences {diffs[:5]}")
    return diffs


def test_the_server_computes_log_probabilities_only_for_the_rows_a_completion_reads_and_the_same_bits() -> None:
    """llama-cpp-python's completion takes the log-softmax of its whole context and keeps the rows after the prompt;
    the student server (evaluation.student.server) computes only the rows read, with identical numbers."""
    import numpy as np
    from llama_cpp import Llama

    from evaluation.student.server import _logprobs_of_rows_read

    original = Llama.logits_to_logprobs
    shapes: list[tuple[int, ...]] = []

    def counted(logits: Any, axis: int = -1) -> Any:
        shapes.append(np.shape(logits))
        return original(logits, axis)

    lazy = _logprobs_of_rows_read(counted)
    logits = np.random.default_rng(3).standard_normal((40, 4096)).astype(np.single)
    whole = original(logits)
    # As llama_cpp.Llama._create_completion reads it: the rows from the prompt's last position on.
    kept = lazy(logits)[38:]
    assert shapes == [(2, 4096)]
    assert kept == whole[38:].tolist()
    assert all(row == expected.tolist() for row, expected in zip(lazy(logits), whole, strict=True))
    # Sorted as the completion sorts them (its top log-probabilities): the same pairs in the same order.
    tokens = range(4096)
    assert sorted(zip(kept[1], tokens, strict=True), reverse=True)[:50] == [
        (float(value), token) for value, token in sorted(zip(whole[39], tokens, strict=True), reverse=True)[:50]]
    assert len(lazy(logits)) == 40
    # One vector (the streaming path's) is computed at once, as before.
    assert np.array_equal(lazy(logits[5]), whole[5])


# Run in a process of its own: load_like_the_runner changes llama_cpp.Llama for the whole process, as in the server.
_LAST_ROWS_PROBE = r"""
import json, sys
import llama_cpp
import numpy as np

whole_eval, logprobs_of = llama_cpp.Llama.eval, llama_cpp.Llama.logits_to_logprobs
from evaluation.student.server import load_like_the_runner

load_like_the_runner()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, logits_all=True, verbose=False)
text = sys.argv[2]
tokens = llm.tokenize(text.encode())
whole_eval(llm, tokens)  # as llama-cpp-python decodes: every row
every = llm.scores[: len(tokens)].copy()

llm.reset()
llm.create_completion(prompt=text[: len(text) // 2], max_tokens=1, temperature=0.0)  # a prefix in the cache
llm.scores[:] = 0.0
plain = llm.create_completion(prompt=text, max_tokens=1, temperature=0.0, logprobs=3)
rows_decoded = int(np.count_nonzero(np.abs(llm.scores[: len(tokens)]).sum(axis=1)))
last_row_same = bool(np.array_equal(llm.scores[len(tokens) - 1], every[-1]))
top = plain["choices"][0]["logprobs"]["top_logprobs"][0]
expected_top = sorted(logprobs_of(every[-1]).tolist(), reverse=True)[:3]

echoed = llm.create_completion(prompt=text, max_tokens=1, temperature=0.0, logprobs=3, echo=True)
said = echoed["choices"][0]["logprobs"]["token_logprobs"][1 : len(tokens) - 1]
expected = [float(logprobs_of(every[i])[tokens[i + 1]]) for i in range(1, len(tokens) - 1)]
print(json.dumps({
    "tokens": len(tokens), "rows_decoded": rows_decoded, "last_row_same": last_row_same,
    "top": sorted(top.values(), reverse=True)[:3], "expected_top": expected_top,
    "echoed": said, "expected_echoed": expected,
}))
"""


@pytest.mark.slow
def test_the_server_decodes_only_the_prompt_rows_a_completion_reads_and_all_of_them_when_echoed() -> None:
    """logits_all makes llama.cpp compute every prompt token's 262,144 logits; a completion reads the last row."""
    text = "The Recipient shall not disclose Confidential Information to any third party without consent."
    done = subprocess.run([sys.executable, "-c", _LAST_ROWS_PROBE, str(default_model_path()), text],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["tokens"] > 10
    # One row decoded for a completion that reads one, bit for bit the row llama-cpp-python decodes with all.
    assert probe["rows_decoded"] == 1
    assert probe["last_row_same"]
    assert probe["top"] == probe["expected_top"]
    # An echoed completion reads every prompt row: it gets all of them, as without the change.
    assert probe["echoed"] == probe["expected_echoed"]


@pytest.mark.slow
def test_thirty_examples_get_the_same_labels_and_probabilities_as_in_process(
    student_server, student: Student, task
) -> None:
    diffs = _compare_thirty(student_server, student, task)
    # The runner decodes an example with all its labels' tokens in one batch, in parallel sequences;
    # the server, one label position per request. Without weight repacking a row does not depend on
    # its batch, so what is left is the order attention sums cells in (a label's cells sit at other
    # indices than in the runner's cache): far below the bar on the AVX2 cores it was set on.
    assert diffs[0][0] <= _EQUALITY_BAR, diffs[:5]


@pytest.mark.slow
def test_the_stock_llama_cpp_server_gives_the_same_labels_with_rounding_differences(
    stock_student_server, student: Student, task
) -> None:
    # Every third of the thirty, nda-016 among them: the stock server reads every prompt row of every request
    # (about 0.6 s each, seven a decision), so all thirty took 140 s of the test suite's 20 minutes. The thirty are
    # measured in docs/student.md, and the test above holds the server as the runner loads it to all thirty.
    diffs = _compare_thirty(stock_student_server, student, task, step=3)
    # With repacking on, a row rounds differently by how many rows share its batch (docs/student.md):
    # measured 0.047 at most here (nda-016) against the runner, which has it off. The same labels, and
    # no difference a wrong token or position would make (those move probabilities by tenths).
    assert diffs[0][0] <= 0.1, diffs[:5]


@pytest.mark.slow
def test_a_run_on_the_server_records_backend_url_model_and_scoring(student_server, student_settings, task,
                                                                   settings) -> None:
    settings.PLD_STUDENT_BACKEND = "server"
    settings.PLD_STUDENT_BASE_URL = student_server.base_url
    settings.PLD_STUDENT_MODEL = "pld-student"
    add_examples(task, NDA_ROWS)
    run = evaluation_run_execute(run=evaluation_run_create(task=task, mode="zero-shot"))
    assert run.status == EvaluationRun.Status.FINISHED, run.error
    assert run.student_backend == "server"
    assert run.student_base_url == student_server.base_url
    assert run.student_model == "pld-student"
    assert run.options["answered_by"] == "pld-student"
    assert run.options["prefix"] == "server"
    assert "top-1000 log-probabilities" in run.scoring
    assert run.n_approximate == run.predictions.exclude(approximation="").count() == 0
    assert run.predictions.count() == len(NDA_ROWS)


# --- Faults a real server cannot produce on demand: a real HTTP server that fails ------------------------------


class _Failing(BaseHTTPRequestHandler):
    """Answers every completion with 503, or hangs past the client's timeout when ``hang`` is set."""

    calls = 0
    hang = 0.0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        with self.lock:
            type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.hang:
            time.sleep(self.hang)
        body = b'{"error": {"message": "overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _failing(hang: float = 0.0) -> type[_Failing]:
    return type("Failing", (_Failing,), {"calls": 0, "hang": hang})


def test_a_5xx_is_retried_then_reported_with_the_server_and_the_tries(db, task) -> None:
    handler = _failing()
    with serve_in_thread(handler) as server:
        remote = _server_student(server_url(server, "/v1"), max_retries=2)
        with pytest.raises(StudentServerError) as caught:
            remote.classify(rules=task_header(task), example="Premise: x\nHypothesis: y", labels=LABELS)
    assert handler.calls == 3
    assert caught.value.permanent is False
    assert "answered HTTP 503 (3 tries)" in caught.value.message
    assert server_url(server, "/v1") in caught.value.message


def test_a_timeout_is_retried_then_reported(db, task) -> None:
    handler = _failing(hang=2.0)
    with serve_in_thread(handler) as server:
        remote = _server_student(server_url(server, "/v1"), timeout=0.5, max_retries=1)
        with pytest.raises(StudentServerError) as caught:
            remote.classify(rules=task_header(task), example="Premise: x\nHypothesis: y", labels=LABELS)
    assert handler.calls == 2
    assert "did not answer within 0.5 s (2 tries)" in caught.value.message


def test_a_run_whose_server_keeps_failing_says_so_on_the_run(db, task, settings) -> None:
    handler = _failing()
    add_examples(task, NDA_ROWS[:2])
    with serve_in_thread(handler) as server:
        settings.PLD_STUDENT_BACKEND = "server"
        settings.PLD_STUDENT_BASE_URL = server_url(server, "/v1")
        settings.PLD_STUDENT_MODEL = "pld-student"
        settings.PLD_STUDENT_MAX_RETRIES = 1
        run = evaluation_run_create(task=task, mode="zero-shot")
        with pytest.raises(StudentServerError):
            evaluation_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.FAILED
    assert "StudentServerError" in run.error and "answered HTTP 503 (2 tries)" in run.error
    assert run.student_backend == "server" and run.student_base_url == server_url(server, "/v1")


def test_a_cot_run_is_refused_on_the_server_backend(db, task, settings) -> None:
    add_examples(task, NDA_ROWS[:1])
    settings.PLD_STUDENT_BACKEND = "server"
    settings.PLD_STUDENT_BASE_URL = "http://127.0.0.1:9/v1"
    settings.PLD_STUDENT_MODEL = "pld-student"
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="in-process student"):
        evaluation_run_create(task=task, mode="cot")


# --- The scoring itself, against a server whose log-probabilities are known -----------------------------------


def _answering(top: dict[str, float], *, shape: str) -> type[BaseHTTPRequestHandler]:
    class Answering(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if shape == "legacy":  # llama_cpp.server and vLLM: top_logprobs is a list of {token: logprob}
                logprobs: dict[str, Any] = {"tokens": ["x"], "token_logprobs": [-0.1], "text_offset": [0],
                                            "top_logprobs": [top]}
            else:  # llama.cpp's llama-server: the chat shape inside a completion
                logprobs = {"content": [{"token": "x", "logprob": -0.1, "top_logprobs": [
                    {"token": token, "logprob": value} for token, value in top.items()]}]}
            body = json.dumps({
                "id": "c", "object": "text_completion", "created": 0, "model": "served-name",
                "choices": [{"index": 0, "text": "x", "finish_reason": "length", "logprobs": logprobs}],
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Answering


@pytest.mark.parametrize("shape", ["legacy", "llama-server"])
def test_label_scores_sum_every_token_and_say_when_a_token_was_missing(db, task, shape) -> None:
    vocab = _server_student("http://127.0.0.1:9/v1")
    pieces = {name: [vocab.detokenize([t]) for t in vocab.label_tokens(name)] for name in LABELS}
    # Every piece of Entailment and Contradiction is offered; NotMentioned's first piece is not.
    top = {piece: -3.0 - 0.25 * i for i, piece in enumerate(pieces["Entailment"] + pieces["Contradiction"])}
    top.update({piece: -4.0 for piece in pieces["NotMentioned"][1:]})
    with serve_in_thread(_answering(top, shape=shape)) as server:
        remote = _server_student(server_url(server, "/v1"), top_logprobs=len(top))
        decision = remote.classify(rules=task_header(task), example="Premise: x\nHypothesis: y", labels=LABELS)
    for name in ("Entailment", "Contradiction"):
        assert decision.logprobs[name] == pytest.approx(sum(top[p] for p in pieces[name]))
    # The missing piece is scored at its upper bound: the least of the offered log-probabilities here.
    bound = min(min(top.values()), math.log(max(1e-300, 1 - sum(math.exp(v) for v in top.values()))))
    assert decision.logprobs["NotMentioned"] == pytest.approx(bound + sum(top[p] for p in pieces["NotMentioned"][1:]))
    assert "NotMentioned" in decision.approximation and "not among the server's top" in decision.approximation
    assert "Entailment" not in decision.approximation
    assert remote.answered_by == "served-name"


def test_the_decision_log_records_the_server_that_decided_and_an_approximate_score(
    db, task, settings, admin_user, reviewer, second_reviewer
) -> None:
    from django.test import Client
    from django.urls import reverse

    from evaluation.models import ClassifyCall
    from evaluation.production.api_tokens import api_token_create
    from tests.support.prompt_versions import in_production

    in_production(task, admin=admin_user, reviewer=second_reviewer)
    raw = api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]
    vocab = _server_student("http://127.0.0.1:9/v1")
    # Every label piece is offered except NotMentioned's first: that label's score is an upper bound.
    pieces = [vocab.detokenize([t]) for name in LABELS for t in vocab.label_tokens(name)]
    missing = vocab.detokenize([vocab.label_tokens("NotMentioned")[0]])
    top = {piece: -3.0 - 0.1 * i for i, piece in enumerate(pieces) if piece != missing}
    with serve_in_thread(_answering(top, shape="legacy")) as server:
        settings.PLD_STUDENT_BACKEND = "server"
        settings.PLD_STUDENT_BASE_URL = server_url(server, "/v1")
        settings.PLD_STUDENT_MODEL = "pld-student"
        settings.PLD_STUDENT_TOP_LOGPROBS = len(top)
        response = Client().post(
            f"/api/v1/tasks/{task.name}/classify", content_type="application/json",
            data=json.dumps({"premise": "The Recipient shall keep it secret.", "hypothesis": "It is secret."}),
            headers={"Authorization": f"Bearer {raw}"},
        )
    assert response.status_code == 200, response.content
    assert response["X-PLD-Scoring"] == "approximate"
    call = ClassifyCall.objects.get(request_id=response["X-Request-Id"])
    assert (call.student_backend, call.student_base_url, call.student_model) == (
        "server", server_url(server, "/v1"), "served-name"
    )
    assert "NotMentioned" in call.approximation and "not among the server's top" in call.approximation
    detail = Client()
    detail.force_login(admin_user)
    page = detail.get(reverse("pld-classify-call-detail", args=[call.pk])).content.decode()
    assert "served-name" in page and "Approximate" in page
