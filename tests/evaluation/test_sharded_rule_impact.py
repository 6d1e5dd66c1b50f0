"""Rule impact runs sharded like evaluation runs: the same shards, leases, a dead worker's shard retried, cancel,
resume, and a run in several shards that decides exactly like a run in one.

The last test starts real ``manage.py db_worker`` processes on PostgreSQL (scripts/test-postgres runs it).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from evaluation.models import RuleImpactDecision, RuleImpactRun, RuleImpactShard
from evaluation.runs.impact import rule_impact_create, rule_impact_finish
from evaluation.runs.impact_runs import (
    rule_impact_cancel,
    rule_impact_execute,
    rule_impact_resume,
    rule_impact_shard_execute,
    rule_impact_start,
    watch_rule_impact_run,
)
from evaluation.runs.shards import ShardLost, ShardProgress, shard_claim, shard_heartbeat
from evaluation.student.in_process import Student
from pldreview.jobs import JobCancelled
from pldreview.models import Job
from rules.models import Example, PromptVersion, Task
from tests.support.factories import NDA_ROWS, add_contract_examples, add_examples
from tests.support.prompt_versions import approve_all, compiled


@pytest.fixture
def version(task: Task, reviewer: User, admin_user: User) -> PromptVersion:
    approve_all(task, reviewer)
    add_examples(task, NDA_ROWS[:3], split="dev")
    return compiled(task, admin_user)


def _expire(shard: RuleImpactShard) -> None:
    RuleImpactShard.objects.filter(pk=shard.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _decisions(run: RuleImpactRun) -> dict[tuple[int, int], str]:
    return dict(((variant, example_id), label) for variant, example_id, label
                in run.decisions.values_list("variant", "example_id", "label"))


def _largest_probability_gap(a: RuleImpactRun, b: RuleImpactRun) -> float:
    theirs = {(d.variant, d.example_id): d.probabilities for d in b.decisions.all()}
    return max(abs(p - theirs[(d.variant, d.example_id)][label])
               for d in a.decisions.all() for label, p in d.probabilities.items())


def _figures(run: RuleImpactRun) -> dict[str, Any]:
    # What the run publishes, less what preparing prefixes cost (more shards prepare each prefix more often).
    return {key: value for key, value in run.results.items() if key != "prefix_tokens"}


# --- planning, claiming, leases (no model) -----------------------------------------------------


def test_an_impact_run_is_cut_into_shards_of_whole_shared_context_groups(
    contract_task: Task, reviewer: User, admin_user: User, settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    approve_all(contract_task, reviewer)
    examples = add_contract_examples(contract_task, split="dev")
    run = rule_impact_create(prompt_version=compiled(contract_task, admin_user), split="dev")
    shards = list(run.shards.order_by("number"))
    # Three hypotheses per document: a shard of "about two" takes the whole document, never half of it.
    by_id = {e.pk: e.group_key for e in examples}
    assert [{by_id[i] for i in s.example_ids} for s in shards] == [{"doc-a"}, {"doc-b"}]
    assert [i for s in shards for i in s.example_ids] == run.options["example_ids"]
    assert {s.status for s in shards} == {RuleImpactShard.Status.QUEUED}


def test_an_impact_shard_is_claimed_by_one_worker_only_and_needs_a_lease_to_run(
    version: PromptVersion, settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    run = rule_impact_create(prompt_version=version, split="dev")
    assert [len(s.example_ids) for s in run.shards.order_by("number")] == [2, 1]
    shard = run.shards.get(number=1)
    first = shard_claim(shard_id=shard.pk, worker="w-a", model=RuleImpactShard)
    assert first is not None and first.status == RuleImpactShard.Status.RUNNING and first.lease_expires_at
    assert shard_claim(shard_id=shard.pk, worker="w-b", model=RuleImpactShard) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        RuleImpactShard.objects.filter(pk=run.shards.get(number=2).pk).update(status=RuleImpactShard.Status.RUNNING)


def test_a_dead_workers_impact_shard_is_queued_again_by_the_watch_and_the_run_page_says_so(
    version: PromptVersion, django_capture_on_commit_callbacks: Any, client: Any, reviewer: User
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = rule_impact_start(prompt_version=version, split="dev")
    shard = run.shards.get()
    assert shard.task_result_id and DBTaskResult.objects.get(id=shard.task_result_id).status == "READY"
    held = shard_claim(shard_id=shard.pk, worker="w-a (host-1, pid 42)", model=RuleImpactShard)
    DBTaskResult.objects.filter(id=shard.task_result_id).update(status="RUNNING")  # as the dead worker left it
    _expire(shard)
    run.refresh_from_db()
    assert watch_rule_impact_run.call(run.pk, "an-older-token") == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert watch_rule_impact_run.call(run.pk, run.options["watch"]) == 1
    shard.refresh_from_db()
    assert shard.status == RuleImpactShard.Status.QUEUED and shard.attempts == 1
    assert "Shard 1 was retried after worker w-a (host-1, pid 42) stopped responding" in shard.events[-1]["message"]
    # A new task for the shard, the dead one recorded as failed, and the watch goes on.
    assert DBTaskResult.objects.get(id=shard.task_result_id).status == "READY"
    assert DBTaskResult.objects.filter(task_path__endswith="run_rule_impact_shard", status="FAILED").count() == 1
    assert DBTaskResult.objects.filter(task_path__endswith="watch_rule_impact_run", status="READY").count() >= 1
    # The worker that was only slow finds out at its next heartbeat and stops.
    with pytest.raises(ShardLost):
        shard_heartbeat(shard=held)
    client.force_login(reviewer)
    body = client.get(run.get_absolute_url()).content.decode()
    assert "Shard 1 was retried after worker w-a (host-1, pid 42) stopped responding" in body


def test_cancel_stops_queued_impact_shards_at_once_and_running_ones_at_their_next_decision(
    version: PromptVersion, settings: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 1
    run = rule_impact_start(prompt_version=version, split="dev")
    running = shard_claim(shard_id=run.shards.get(number=1).pk, worker="w-a", model=RuleImpactShard)
    rule_impact_cancel(run=run)
    run.refresh_from_db()
    run.job.refresh_from_db()
    assert run.status == RuleImpactRun.Status.CANCELLED and run.job.state == Job.State.CANCELLED
    assert set(run.shards.exclude(number=1).values_list("status", flat=True)) == {RuleImpactShard.Status.CANCELLED}
    with pytest.raises(JobCancelled):
        ShardProgress(None, running).beat(force=True)


def test_resume_queues_every_unfinished_impact_shard_as_its_own_task_but_not_under_a_live_lease(
    version: PromptVersion, settings: Any, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 1
    run = rule_impact_start(prompt_version=version, split="dev")
    RuleImpactShard.objects.filter(run=run, number=1).update(status=RuleImpactShard.Status.FINISHED)
    held = shard_claim(shard_id=run.shards.get(number=2).pk, worker="w-a", model=RuleImpactShard)
    rule_impact_cancel(run=run)
    run.refresh_from_db()
    with pytest.raises(ValidationError, match="still holds a shard"):
        rule_impact_resume(run=run)
    _expire(held)
    DBTaskResult.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        rule_impact_resume(run=run, user=admin_user)
    shards = {s.number: s for s in run.shards.all()}
    assert shards[1].status == RuleImpactShard.Status.FINISHED
    assert {shards[n].status for n in (2, 3)} == {RuleImpactShard.Status.QUEUED}
    tasks = DBTaskResult.objects.filter(task_path__endswith="run_rule_impact_shard")
    assert sorted(t.args_kwargs["args"][0] for t in tasks) == sorted([shards[2].pk, shards[3].pk])
    assert "resumed the run" in shards[3].events[-1]["message"]
    run.refresh_from_db()
    assert run.status == RuleImpactRun.Status.QUEUED and run.job.state == Job.State.QUEUED


def test_a_run_with_decisions_missing_is_not_sealed(version: PromptVersion) -> None:
    run = rule_impact_create(prompt_version=version, split="dev")
    example = Example.objects.get(pk=run.options["example_ids"][0])
    RuleImpactDecision.objects.create(run=run, variant=0, example=example, label="Entailment")
    with pytest.raises(ValidationError, match="1 of its 12 decisions"):
        rule_impact_finish(run=run)
    run.refresh_from_db()
    assert run.status == RuleImpactRun.Status.QUEUED and run.results == {}


# --- with the model (SQLite or PostgreSQL) ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_an_impact_run_in_several_shards_decides_exactly_like_a_run_in_one(
    version: PromptVersion, student_settings: Student, settings: Any
) -> None:
    one = rule_impact_execute(run=rule_impact_create(prompt_version=version, split="dev"))
    settings.PLD_SHARD_EXAMPLES = 1
    three = rule_impact_execute(run=rule_impact_create(prompt_version=version, split="dev"))
    assert one.shards.count() == 1 and three.shards.count() == 3
    assert three.status == RuleImpactRun.Status.FINISHED
    assert set(three.shards.values_list("status", flat=True)) == {RuleImpactShard.Status.FINISHED}
    assert _decisions(three) == _decisions(one) and len(_decisions(one)) == 4 * 3
    assert _largest_probability_gap(three, one) <= 1e-6
    assert _figures(three) == _figures(one)


@pytest.mark.slow
def test_an_impact_shard_taken_back_from_a_dead_worker_is_decided_by_the_next_who_finishes_the_run(
    version: PromptVersion, student_settings: Student, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.PLD_SHARD_EXAMPLES = 2
    with django_capture_on_commit_callbacks(execute=False):
        run = rule_impact_start(prompt_version=version, split="dev")
    first, second = run.shards.order_by("number")
    assert rule_impact_shard_execute(shard_id=first.pk, worker="w-a") is not None
    run.refresh_from_db()
    assert run.status == RuleImpactRun.Status.RUNNING and run.decisions.count() == 4 * 2
    _expire(shard_claim(shard_id=second.pk, worker="w-b", model=RuleImpactShard))  # w-b took it, then died
    assert watch_rule_impact_run.call(run.pk, run.options["watch"]) == 1
    assert rule_impact_shard_execute(shard_id=second.pk, worker="w-c") is not None
    run.refresh_from_db()
    assert run.status == RuleImpactRun.Status.FINISHED and run.results["full"]["n"] == 3
    assert run.decisions.count() == 4 * 3
    assert RuleImpactShard.objects.get(pk=second.pk).worker == "w-c"
    # A late task for a finished shard finds nothing to claim.
    assert rule_impact_shard_execute(shard_id=second.pk, worker="w-b") is None


# --- real db_worker processes on PostgreSQL ---------------------------------------------------

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several db_worker processes need PostgreSQL (scripts/test-postgres)"
)


@pytest.mark.slow
@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_db_workers_finish_one_impact_run_together_with_the_figures_of_one_process(
    task: Task, reviewer: User, admin_user: User, settings: Any
) -> None:
    from tests.evaluation.test_sharded_runs import _stop, _wait, _worker
    from tests.support.student import STUDENT_N_CTX

    settings.PLD_STUDENT_N_CTX = STUDENT_N_CTX
    approve_all(task, reviewer)
    add_examples(task, NDA_ROWS, split="dev")
    version = compiled(task, admin_user)
    settings.PLD_SHARD_EXAMPLES = 2
    run = rule_impact_start(prompt_version=version, split="dev", user=admin_user)
    workers = [_worker("w-a"), _worker("w-b")]
    try:
        _wait(lambda: RuleImpactRun.objects.get(pk=run.pk).status not in {"queued", "running"}, timeout=400,
              what="the impact run to end")
    finally:
        _stop(*workers)
    run.refresh_from_db()
    assert run.status == RuleImpactRun.Status.FINISHED, run.error
    assert run.decisions.count() == run.n_examples * (run.n_rules + 1)
    assert set(run.shards.values_list("status", flat=True)) == {RuleImpactShard.Status.FINISHED}
    holders = {worker.split(" ")[0] for worker in run.shards.values_list("worker", flat=True)}
    assert holders == {"w-a", "w-b"}, "both workers should have decided shards"
    run.job.refresh_from_db()
    assert run.job.state == Job.State.SUCCEEDED and (run.job.done, run.job.total) == (run.decisions.count(),) * 2
    # The same run decided in this process with the workers' thread count: the figures to match.
    settings.PLD_STUDENT_THREADS = 1
    reference = rule_impact_execute(run=rule_impact_create(prompt_version=version, split="dev"))
    assert _decisions(run) == _decisions(reference) and _figures(run) == _figures(reference)
