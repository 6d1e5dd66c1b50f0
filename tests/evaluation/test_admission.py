"""Admission control and readiness: refusals never wait for the model, a full queue says 503 and when to come
back, /healthz needs nothing, /readyz says whether the process can serve and why not."""
from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from evaluation.models import ApiToken, ApiTokenWindow
from evaluation.production.admission import (
    MODEL_QUEUE,
    RETRY_SPREAD,
    QueueFull,
    readiness_reset,
    student_preload_for_readiness,
)
from evaluation.production.api_tokens import api_token_create
from rules.student_model import bundled_model_path
from tests.support.prompt_versions import in_production

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {"premise": "The Recipient may disclose it to employees.", "hypothesis": "It may share with employees."}


@pytest.fixture(autouse=True)
def _fresh_readiness() -> Iterator[None]:
    readiness_reset()
    yield
    readiness_reset()
    gc.unfreeze()  # a preload freezes the heap (pldreview/heap.py); the test process is not a server


def _post(token: str) -> object:
    return Client().post(URL, data=json.dumps(BODY), content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})


class _InFlightCalls:
    """Other requests' calls holding their places in the model's queue until released: the first as if deciding,
    the others admitted and waiting for their turns."""

    def __init__(self, count: int = 1) -> None:
        self.release = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        with MODEL_QUEUE.slot():
            self.release.wait()

    def __enter__(self) -> _InFlightCalls:
        for thread in self.threads:
            _start_admitted(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join()


def _start_admitted(thread: threading.Thread) -> None:
    # Start a thread that calls MODEL_QUEUE.slot() and wait until it holds its place, so arrivals keep their order.
    held = MODEL_QUEUE.in_flight
    thread.start()
    deadline = time.monotonic() + 10
    while MODEL_QUEUE.in_flight <= held:
        assert time.monotonic() < deadline, "the call was not admitted in time"
        time.sleep(0.005)


def _no_database(execute, sql, params, many, context):  # noqa: ANN001, ANN202 - Django's execute_wrapper signature
    raise OperationalError("the database is down (test)")


# --- the queue ---------------------------------------------------------------------------------------------


def test_a_token_over_its_rate_gets_its_429_while_another_call_holds_the_model(
    task, admin_user, reviewer, settings, tmp_path
) -> None:
    settings.PLD_API_MAX_QUEUE = 0
    # Any call that reached the student would answer 503 model_error: the file does not exist.
    settings.PLD_STUDENT_MODEL_PATH = str(tmp_path / "absent.gguf")
    _limited, limited = api_token_create(user=reviewer, name="limited", created_by=admin_user,
                                         rate_limit_per_minute=1)
    _open, unlimited = api_token_create(user=reviewer, name="open", created_by=admin_user)
    # Both of the limited token's calls must fall in one clock minute (its rate window).
    if timezone.now().second >= 50:
        time.sleep(61 - timezone.now().second)
    assert _post(limited).status_code == 409  # its one call this minute (no version in production yet)
    with _InFlightCalls():
        over = _post(limited)
        assert over.status_code == 429 and over.json()["code"] == "rate_limited"
        assert 1 <= int(over["Retry-After"]) <= 60
        assert _post("pld_unknown").status_code == 401
        busy = _post(unlimited)
        assert busy.status_code == 503 and busy.json()["code"] == "queue_full"
        assert int(busy["Retry-After"]) >= 1 and busy["X-Request-ID"]
        assert MODEL_QUEUE.in_flight == 1  # the refusals never took a place
    # Once the call in flight ends, the next one is admitted and goes on (here to "no production version").
    assert _post(unlimited).status_code == 409
    assert MODEL_QUEUE.in_flight == 0


def test_a_token_already_over_its_rate_is_refused_again_without_a_database_write(
    task, admin_user, reviewer
) -> None:
    token, raw = api_token_create(user=reviewer, name="limited", created_by=admin_user, rate_limit_per_minute=1)
    if timezone.now().second >= 50:
        time.sleep(61 - timezone.now().second)
    assert [_post(raw).status_code for _ in range(3)] == [409, 429, 429]
    # The third call was answered from this process's memory of the second: the counter was not bumped.
    assert ApiTokenWindow.objects.get(token=token).count == 2
    # An Admin raises the limit: the database decides again.
    ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=5)
    assert _post(raw).status_code == 409
    assert ApiTokenWindow.objects.get(token=token).count == 3


def test_a_full_queue_answers_503_and_each_place_freed_admits_one_call(task, admin_user, reviewer, settings) -> None:
    settings.PLD_API_MAX_QUEUE = 1
    token = api_token_create(user=reviewer, name="busy", created_by=admin_user)[1]
    with _InFlightCalls(2):
        refused = _post(token)
        assert refused.status_code == 503 and refused.json()["code"] == "queue_full"
        assert "try again in" in refused.json()["error"] and refused["Retry-After"].isdigit()
    assert MODEL_QUEUE.in_flight == 0
    assert _post(token).status_code == 409  # places free: admitted


def test_a_full_queue_refuses_before_the_body_is_read(task, admin_user, reviewer, settings) -> None:
    settings.PLD_API_MAX_QUEUE = 0
    token = api_token_create(user=reviewer, name="busy", created_by=admin_user)[1]

    def broken() -> object:
        return Client().post(URL, data="{not json", content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})

    with _InFlightCalls():
        assert broken().json()["code"] == "queue_full"
    assert broken().json()["code"] == "bad_json"


def test_admitted_calls_take_the_model_one_at_a_time_in_the_order_they_came() -> None:
    # Without turns the student's lock, which is not fair, could let a later call overtake an earlier one for ever.
    order: list[int] = []
    inside = [0, 0]  # now, most at once
    guard = threading.Lock()

    def call(n: int) -> None:
        with MODEL_QUEUE.slot(bound=8):
            with guard:
                inside[0] += 1
                inside[1] = max(inside)
                order.append(n)
            time.sleep(0.01)
            with guard:
                inside[0] -= 1

    callers = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    with _InFlightCalls():  # holds the model while the six arrive, one after another
        for caller in callers:
            _start_admitted(caller)
    for caller in callers:
        caller.join()
    assert order == [0, 1, 2, 3, 4, 5]
    assert inside[1] == 1
    assert MODEL_QUEUE.in_flight == 0


def test_a_call_that_fails_inside_its_place_gives_the_place_back() -> None:
    with pytest.raises(RuntimeError):
        with MODEL_QUEUE.slot(bound=0):
            raise RuntimeError("the student failed")
    with MODEL_QUEUE.slot(bound=0):
        with pytest.raises(QueueFull) as caught:
            with MODEL_QUEUE.slot(bound=0):
                pass
    assert caught.value.bound == 0 and caught.value.retry_after >= 1
    assert MODEL_QUEUE.in_flight == 0


def test_calls_refused_together_are_told_different_times_to_come_back() -> None:
    # Retry-After is whole seconds: told one number, a crowd refused at once would return at once, every time.
    with MODEL_QUEUE.slot(bound=0):
        told = []
        for _ in range(60):
            with pytest.raises(QueueFull) as caught:
                MODEL_QUEUE.refuse_if_full(bound=0)
            told.append(caught.value.retry_after)
    assert min(told) >= 1 and max(told) <= RETRY_SPREAD * min(told)
    assert len(set(told)) > 1  # all 60 alike: a chance of RETRY_SPREAD ** -59


def test_the_openapi_description_names_the_queue_refusal(task, admin_user, reviewer) -> None:
    token = api_token_create(user=reviewer, name="spec", created_by=admin_user)[1]
    spec = Client().get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
    answer = spec["paths"][URL]["post"]["responses"]["503"]
    assert "queue_full" in answer["description"] and "Retry-After" in answer["headers"]


# --- /healthz and /readyz -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["all", "pages", "api"])
def test_healthz_answers_200_in_every_role_without_touching_the_database(settings, role, db) -> None:
    settings.PLD_WEB_ROLE = role
    with connection.execute_wrapper(_no_database):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"alive": True}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_503_with_the_reason_when_the_model_file_is_truncated(settings, tmp_path, db) -> None:
    cut = tmp_path / "secret-dir" / "student.gguf"
    cut.parent.mkdir()
    with bundled_model_path().open("rb") as source:
        cut.write_bytes(source.read(10 * 1024 * 1024))
    settings.PLD_STUDENT_MODEL_PATH = str(cut)
    lazily = Client().get("/readyz")
    assert lazily.status_code == 503
    assert lazily.json()["reason"] == "model_unusable" and "truncated" in lazily.json()["detail"]
    # A process that preloads (the API's, scripts/demo) records the same at start.
    settings.PLD_STUDENT_PRELOAD = True
    student_preload_for_readiness()
    preloaded = Client().get("/readyz")
    assert preloaded.status_code == 503 and preloaded.json()["checks"]["model"] == "unusable"
    assert "student.gguf is truncated" in preloaded.json()["detail"]
    for response in (lazily, preloaded):
        assert str(tmp_path) not in response.content.decode()  # the file's name, never where it lives


@pytest.mark.slow  # the preload computes and checks the production version's prefix state (seconds)
def test_readyz_waits_for_the_preload_then_is_200_with_the_production_prefixes_held(
    task, admin_user, second_reviewer, settings, student_settings
) -> None:
    in_production(task, admin=admin_user, reviewer=second_reviewer)
    settings.PLD_STUDENT_PRELOAD = True
    settings.PLD_WEB_ROLE = "api"
    starting = Client().get("/readyz")
    assert starting.status_code == 503 and starting.json()["reason"] == "starting" and starting["Retry-After"]
    gc.unfreeze()
    student_preload_for_readiness()
    # What the preload loaded is out of the collector's walks before the process says it is ready.
    assert gc.get_freeze_count() > 0
    ready = Client().get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json() == {"ready": True, "role": "api", "checks": {
        "model": "loaded", "prefixes": "1 production version(s) held", "database": "reachable"}}
    assert task.name not in ready.content.decode()


def test_readyz_is_503_when_the_database_does_not_answer(settings, db) -> None:
    settings.PLD_WEB_ROLE = "pages"  # a page-serving process: no model, the database is all it needs
    assert Client().get("/readyz").json() == {"ready": True, "role": "pages", "checks": {
        "model": "not served here", "database": "reachable"}}
    with connection.execute_wrapper(_no_database):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "database_unreachable"
    assert "test" not in response.json()["detail"]  # the driver's message stays in the server's log
