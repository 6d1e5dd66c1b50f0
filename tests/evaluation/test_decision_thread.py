"""The API decides on one thread below its request threads' priority; answers and errors cross back unchanged."""
from __future__ import annotations

import json
import os
import sys
import threading

import pytest
from django.test import Client

from evaluation.models import ClassifyCall
from evaluation.production.api_tokens import api_token_create
from evaluation.production.decision_thread import decision_thread_run, decision_thread_started
from evaluation.production.serving import production_classify
from tests.support.prompt_versions import in_production

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {"premise": "The Recipient may disclose Confidential Information to its employees.",
        "hypothesis": "The receiving party may share confidential information with its employees."}


@pytest.fixture
def token(task, admin_user, reviewer, second_reviewer) -> str:
    in_production(task, admin=admin_user, reviewer=second_reviewer)
    return api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]


def _post(token: str, body: dict) -> object:
    return Client().post(URL, data=json.dumps(body), content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"})


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.slow
def test_an_api_call_is_decided_on_the_decision_thread_below_the_request_thread(
    token, task, student_settings, settings
) -> None:
    settings.PLD_DECISION_NICE = 9
    before = _own_nice()
    response = _post(token, BODY)
    assert response.status_code == 200, response.content
    started = decision_thread_started()
    assert started is not None
    thread_id, nice = started
    assert thread_id != threading.get_native_id()
    if sys.platform == "linux":
        # Only that thread was lowered: the request thread (here the test's own) keeps its priority.
        assert nice == min(19, before + 9) and nice > before
    assert _own_nice() == before
    # The same decision as one made on the caller's own thread (the classify command's way).
    inline = production_classify(task=task, payload=BODY)
    answer = response.json()
    assert (answer["label"], answer["probabilities"]) == (inline.label, inline.probabilities)
    assert ClassifyCall.objects.count() == 1


@pytest.mark.slow
def test_an_input_too_long_for_the_model_is_refused_across_the_decision_thread(
    token, student_settings
) -> None:
    # The context check happens inside the student, on the decision thread; its refusal is the API's 413.
    long = {**BODY, "premise": "The Recipient may disclose it to its employees. " * 600}
    response = _post(token, long)
    assert response.status_code == 413 and response.json()["code"] == "input_too_long"
    assert ClassifyCall.objects.count() == 0
    # The thread survives a refusal: the next call is decided.
    assert _post(token, BODY).status_code == 200


def test_work_on_the_decision_thread_returns_its_value_or_raises_its_exception() -> None:
    assert decision_thread_run(threading.get_native_id) != threading.get_native_id()
    assert decision_thread_run(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        decision_thread_run(lambda: 1 / 0)
    # A failure does not take the thread with it.
    assert decision_thread_run(str.upper, "still serving") == "STILL SERVING"
