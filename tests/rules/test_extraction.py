"""Phase 1: one micro-rule per training example, resumable, against a fake server for faults and the real one."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from pldreview.jobs import job_create, job_execute
from pldreview.models import Job
from rules.models import MicroRule, Task, TeacherCall
from rules.teacher.client import TeacherConfig, TeacherError
from rules.teacher.extraction import (
    GUIDE_CONDITIONS,
    extraction_examples,
    extraction_messages,
    extraction_pending,
    micro_rules_extract,
)
from tests.support.factories import make_examples
from tests.support.fake_teacher import FakeTeacher, fake_endpoints
from tests.support.local_teacher import local_endpoint_settings


def _config(fake: FakeTeacher, **overrides: object) -> TeacherConfig:
    config = TeacherConfig(base_url=fake.base_url, model="fake-teacher", timeout=1.0, max_retries=2, backoff_base=0.01)
    return config.with_overrides(**overrides)


def test_it_stores_one_micro_rule_per_example_with_the_teacher_recorded(task: Task) -> None:
    make_examples(task, 4)
    with FakeTeacher() as fake:
        summary = micro_rules_extract(task=task, config=_config(fake))
    assert summary.n_created == 4 and summary.new_calls == 4
    micro = MicroRule.objects.select_related("example").first()
    assert micro.label == micro.example.gold_label
    assert micro.rationale and micro.condition
    assert micro.teacher_model == "fake-teacher"
    assert micro.teacher_endpoint.startswith("http://127.0.0.1:")
    assert micro.teacher_settings["temperature"] == 0.0
    assert micro.teacher_call.purpose == "extract"


def test_a_second_run_makes_no_new_teacher_request(task: Task) -> None:
    make_examples(task, 3)
    with FakeTeacher() as fake:
        micro_rules_extract(task=task, config=_config(fake))
        calls_before = TeacherCall.objects.count()
        again = micro_rules_extract(task=task, config=_config(fake))
        assert len(fake.requests) == 3
    assert again.n_existing == 3 and again.new_calls == 0
    assert TeacherCall.objects.count() == calls_before


def test_the_prompt_shows_good_and_bad_rules_and_the_gold_label(task: Task) -> None:
    example = make_examples(task, 1)[0]
    system, user = extraction_messages(task, example)
    assert "Good conditions" in system["content"] and "Bad conditions" in system["content"]
    assert "Gold label: Contradiction" in user["content"]
    assert "Section 1" in user["content"]


def test_a_small_limit_still_sees_every_label(task: Task) -> None:
    make_examples(task, 9)
    chosen = extraction_examples(task, limit=3)
    assert sorted(example.gold_label for example in chosen) == ["Contradiction", "Entailment", "NotMentioned"]


def test_a_refused_reply_skips_that_example_and_keeps_the_rest(task: Task) -> None:
    make_examples(task, 3)
    with FakeTeacher(["ok", "invalid", "ok"]) as fake:
        summary = micro_rules_extract(task=task, config=_config(fake, concurrency=1))
    assert summary.n_created == 2 and summary.n_failed == 1
    assert "does not match the schema" in summary.failures[0]["error"]
    assert MicroRule.objects.count() == 2


def test_a_reached_budget_stops_the_run_cleanly(task: Task) -> None:
    make_examples(task, 5)
    with FakeTeacher() as fake:
        summary = micro_rules_extract(task=task, config=_config(fake, max_requests=2, concurrency=1))
    assert "budget of 2 teacher requests" in summary.stopped
    assert MicroRule.objects.count() == 2


def test_a_run_cut_short_by_a_dying_server_resumes_where_it_stopped(task: Task) -> None:
    make_examples(task, 5)
    fake = FakeTeacher(die_after=2).start()
    try:
        with pytest.raises(TeacherError):
            micro_rules_extract(task=task, config=_config(fake, concurrency=1, max_retries=1))
    finally:
        fake.stop()
    assert MicroRule.objects.count() == 2
    with FakeTeacher() as revived:
        summary = micro_rules_extract(task=task, config=_config(revived))
        assert len(revived.requests) == 3
    assert summary.n_existing == 2 and summary.n_created == 3
    assert MicroRule.objects.count() == 5


def test_the_job_reports_progress_and_fails_resumably(task: Task) -> None:
    make_examples(task, 3)
    with FakeTeacher(default="500") as fake:
        job = job_create(kind="extract", title="x", params={"task": task.name, "endpoint": "fake"})
        with override_settings(PLD_TEACHER_MAX_RETRIES=0, **fake_endpoints(("fake", fake))):
            job = job_execute(job.pk)
    assert job.state == Job.State.FAILED and "TeacherError" in job.error
    with FakeTeacher(port=fake.port) as revived, override_settings(**fake_endpoints(("fake", revived))):
        job = job_execute(job.pk)
    assert job.state == Job.State.SUCCEEDED
    assert job.done == job.total == 3
    assert job.result["url"] == "/tasks/nda-demo/micro-rules/"


def test_the_command_refuses_an_unknown_task(db: None) -> None:
    with pytest.raises(CommandError, match="No task named"):
        call_command("extract_rules", "--task", "nope")


@pytest.mark.slow
def test_extract_rules_runs_against_the_real_local_teacher_and_a_rerun_costs_nothing(task: Task, local_teacher) -> None:
    make_examples(task, 3)
    args = ["--task", task.name, "--limit", "2", "--endpoint", "local", "--concurrency", "1"]
    with override_settings(**local_endpoint_settings(local_teacher)):
        call_command("extract_rules", *args)
    micro = list(MicroRule.objects.all())
    # The 270M model sometimes copies the prompt's worked examples; such replies are refused, not stored.
    assert 1 <= len(micro) <= 2
    assert all(m.condition.strip() and m.rationale.strip() for m in micro)
    assert {(m.teacher_model, m.teacher_endpoint_name) for m in micro} == {("gemma-3-270m-q4_k_m", "local")}
    calls = TeacherCall.objects.count()
    assert calls == 2
    with override_settings(**local_endpoint_settings(local_teacher)):
        call_command("extract_rules", *args)
    assert TeacherCall.objects.count() == calls


def test_a_condition_copied_from_the_prompts_worked_examples_is_refused(task: Task) -> None:
    make_examples(task, 2)
    with FakeTeacher(overrides={"condition": GUIDE_CONDITIONS[1]}) as fake:
        summary = micro_rules_extract(task=task, config=_config(fake))
        assert summary.n_failed == 2 and "copies a worked example" in summary.failures[0]["error"]
        # Refused replies stay in the log: asking again costs nothing and refuses again.
        again = micro_rules_extract(task=task, config=_config(fake))
        assert len(fake.requests) == 2
    assert again.new_calls == 0 and again.n_failed == 2
    assert not MicroRule.objects.exists()
    assert extraction_pending(task, _config(fake)) == []


def test_pending_lists_only_examples_never_asked(task: Task) -> None:
    examples = make_examples(task, 3)
    with FakeTeacher() as fake:
        micro_rules_extract(task=task, config=_config(fake), limit=2)
        pending = extraction_pending(task, _config(fake))
    assert [ex.pk for ex in pending] == [examples[2].pk]
