"""The teacher client against a real misbehaving HTTP server on loopback: retries, budget, validation, the log."""
from __future__ import annotations

import pytest

from rules.models import TeacherCall
from rules.teacher.client import (
    Teacher,
    TeacherBudgetExceeded,
    TeacherConfig,
    TeacherError,
    TeacherRequest,
    TeacherTally,
    parse_reply,
)
from tests.support.fake_teacher import FakeTeacher

SCHEMA = {
    "type": "object",
    "properties": {"rule": {"type": "string", "minLength": 1}, "label": {"type": "string", "enum": ["A", "B"]}},
    "required": ["rule", "label"],
}


def _config(fake: FakeTeacher, **overrides: object) -> TeacherConfig:
    base = TeacherConfig(base_url=fake.base_url, model="fake-teacher", timeout=1.0, max_retries=3, backoff_base=0.01)
    return base.with_overrides(**overrides)


def _request(n: int = 0) -> TeacherRequest:
    messages = [{"role": "user", "content": f"question {n}"}]
    return TeacherRequest(purpose="extract", messages=messages, schema=SCHEMA, key=n)


def test_it_stores_each_call_with_tokens_latency_and_hash(db: None) -> None:
    with FakeTeacher() as fake:
        answer = Teacher(_config(fake)).ask(_request())
    call = TeacherCall.objects.get()
    assert answer.data["label"] == "A"
    assert call.prompt_tokens == 50 and call.completion_tokens == 20
    assert call.latency_ms > 0
    assert len(call.request_hash) == 64
    assert call.request["response_format"]["schema"] == SCHEMA
    assert call.base_url.startswith("http://127.0.0.1:")


def test_it_answers_a_repeated_request_from_the_store(db: None) -> None:
    with FakeTeacher() as fake:
        Teacher(_config(fake)).ask(_request())
        second = Teacher(_config(fake))
        answer = second.ask(_request())
        assert len(fake.requests) == 1
    assert answer.cached and second.new_calls == 0
    assert TeacherCall.objects.count() == 1


def test_it_waits_as_told_by_retry_after_on_429(db: None) -> None:
    pauses: list[float] = []
    with FakeTeacher(["429", "ok"], retry_after="2") as fake:
        answer = Teacher(_config(fake), sleep=pauses.append).ask(_request())
        assert len(fake.requests) == 2
    assert answer.data["rule"]
    assert pauses == [2.0]


def test_it_backs_off_with_growing_pauses_on_server_errors(db: None) -> None:
    pauses: list[float] = []
    with FakeTeacher(["500", "500", "ok"]) as fake:
        Teacher(_config(fake, backoff_base=1.0), sleep=pauses.append).ask(_request())
    assert len(pauses) == 2
    assert 1.0 <= pauses[0] < 2.0 and 2.0 <= pauses[1] < 3.0


def test_it_retries_after_a_timeout(db: None) -> None:
    with FakeTeacher(["hang", "ok"], hang_seconds=2.0) as fake:
        answer = Teacher(_config(fake, timeout=0.5)).ask(_request())
        assert len(fake.requests) == 2
    assert answer.data["label"] == "A"


def test_it_gives_up_with_a_transient_error_when_retries_run_out(db: None) -> None:
    with FakeTeacher(default="500") as fake:
        with pytest.raises(TeacherError) as caught:
            Teacher(_config(fake, max_retries=2)).ask(_request())
        assert len(fake.requests) == 3
    assert not caught.value.permanent
    assert TeacherCall.objects.count() == 0


def test_it_refuses_malformed_json(db: None) -> None:
    with FakeTeacher(["malformed"]) as fake:
        with pytest.raises(TeacherError, match="not valid JSON") as caught:
            Teacher(_config(fake)).ask(_request())
    assert caught.value.permanent


def test_it_refuses_json_that_breaks_the_schema(db: None) -> None:
    with FakeTeacher(["invalid"]) as fake:
        with pytest.raises(TeacherError, match="does not match the schema"):
            Teacher(_config(fake)).ask(_request())
        # The stored reply is the evidence; asking again at the same settings would cost a call for nothing.
        with pytest.raises(TeacherError):
            Teacher(_config(fake)).ask(_request())
        assert len(fake.requests) == 1


def test_the_schema_check_refuses_blank_text_and_unknown_labels() -> None:
    with pytest.raises(TeacherError, match="blank"):
        parse_reply('{"rule": "  ", "label": "A"}', SCHEMA)
    with pytest.raises(TeacherError, match="not one of"):
        parse_reply('{"rule": "x", "label": "C"}', SCHEMA)
    assert parse_reply('{"rule": "x", "label": "B"}', SCHEMA) == {"rule": "x", "label": "B"}


def test_it_stops_cleanly_when_the_request_budget_is_reached(db: None) -> None:
    with FakeTeacher() as fake:
        teacher = Teacher(_config(fake, max_requests=3, concurrency=1))
        answers = []
        with pytest.raises(TeacherBudgetExceeded):
            for answer in teacher.ask_many([_request(n) for n in range(6)]):
                answers.append(answer)
        assert len(fake.requests) == 3
    assert len(answers) == 3
    assert TeacherCall.objects.count() == 3


def test_ask_all_tallies_refusals_and_calls_and_stops_at_the_budget_without_raising(db: None) -> None:
    with FakeTeacher(["ok", "invalid", "ok", "ok"]) as fake:
        tally = TeacherTally()
        answers = list(Teacher(_config(fake, max_requests=3, concurrency=1)).ask_all(
            [_request(n) for n in range(5)], tally=tally))
        assert [answer.request.key for answer in answers] == [0, 1, 2]
        assert isinstance(answers[1], TeacherError) and answers[2].data["label"] in {"A", "B"}
        assert (tally.n_failed, tally.new_calls, tally.cached_calls) == (1, 3, 0)
        assert "budget of 3 teacher requests" in tally.stopped
        fake.requests.clear()
        again = TeacherTally()
        list(Teacher(_config(fake)).ask_all([_request(n) for n in range(3)], tally=again))
        assert not fake.requests
    assert (again.n_failed, again.new_calls, again.cached_calls, again.stopped) == (1, 0, 3, "")


def test_it_stops_when_the_token_budget_is_reached(db: None) -> None:
    with FakeTeacher() as fake:
        teacher = Teacher(_config(fake, max_tokens=100, concurrency=1))
        with pytest.raises(TeacherBudgetExceeded, match="tokens"):
            list(teacher.ask_many([_request(n) for n in range(5)]))
    # 70 tokens per reply: the second reply crosses the budget, the third is never sent.
    assert TeacherCall.objects.count() == 2


def test_it_keeps_concurrency_bounded_and_answers_every_request(db: None) -> None:
    with FakeTeacher() as fake:
        teacher = Teacher(_config(fake, concurrency=3))
        keys = sorted(answer.request.key for answer in teacher.ask_many([_request(n) for n in range(8)]))
    assert keys == list(range(8))
    assert TeacherCall.objects.count() == 8


def test_it_asks_for_json_schema_style_when_configured(db: None) -> None:
    with FakeTeacher() as fake:
        Teacher(_config(fake, schema_style="json_schema")).ask(_request())
        sent = fake.requests[0]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == SCHEMA


def test_a_run_interrupted_by_a_dying_server_resumes_without_losing_answers(db: None) -> None:
    fake = FakeTeacher(die_after=3).start()
    try:
        with pytest.raises(TeacherError) as caught:
            list(Teacher(_config(fake, concurrency=1, max_retries=1)).ask_many([_request(n) for n in range(6)]))
    finally:
        fake.stop()
    assert not caught.value.permanent
    assert TeacherCall.objects.count() == 3
    with FakeTeacher(port=fake.port) as revived:
        teacher = Teacher(_config(revived))
        answers = list(teacher.ask_many([_request(n) for n in range(6)]))
        assert len(revived.requests) == 3
    assert len(answers) == 6 and teacher.cached_calls == 3
    assert TeacherCall.objects.count() == 6


def test_it_refuses_to_start_without_an_endpoint() -> None:
    with pytest.raises(TeacherError, match="No teacher endpoint"):
        Teacher(TeacherConfig(base_url="", model="m"))
