"""Phase 2: DBSCAN on micro-rule vectors, consolidation by the teacher, provenance, noise and its promotion."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings

from rules.models import ClusteringRun, Decision, MicroRule, Rule, Task, TeacherCall
from rules.teacher.client import TeacherConfig
from rules.teacher.clustering import (
    cluster_vectors,
    clustering_run_create,
    effective_min_samples,
    merge_problem,
    merged_topic,
    micro_rule_is_promotable,
    micro_rule_promote,
)
from rules.teacher.embeddings import tfidf_svd
from tests.support.factories import make_examples, make_micro_rule
from tests.support.fake_teacher import FakeTeacher
from tests.support.local_teacher import local_endpoint_settings

SECRECY = [
    "the clause forbids disclosing confidential information to any third party",
    "the clause forbids disclosing confidential information to a third party",
    "the clause forbids disclosing any confidential information to third parties",
    "the clause forbids disclosing confidential information to third parties",
]
RETURN = [
    "the clause requires returning or destroying confidential materials when the agreement ends",
    "the clause requires returning or destroying the confidential materials when the agreement ends",
    "the clause requires destroying or returning all confidential materials after the agreement ends",
]
ODD = "the statement concerns governing law and jurisdiction clauses"


def _micro_rules(task: Task) -> list[MicroRule]:
    conditions = SECRECY + RETURN + [ODD]
    examples = make_examples(task, len(conditions))
    return [make_micro_rule(example, condition) for example, condition in zip(examples, conditions, strict=True)]


def _config(fake: FakeTeacher, **overrides: object) -> TeacherConfig:
    config = TeacherConfig(base_url=fake.base_url, model="fake-teacher", timeout=2.0, max_retries=1, backoff_base=0.01)
    return config.with_overrides(**overrides)


def test_min_samples_adapts_to_small_sets_but_not_large_ones() -> None:
    assert effective_min_samples(24, 6) == 2
    assert effective_min_samples(60, 6) == 3
    assert effective_min_samples(900, 6) == 6
    assert effective_min_samples(24, 6, adapt=False) == 6


def test_similar_rules_share_a_cluster_and_an_outlier_is_noise() -> None:
    vectors = tfidf_svd(SECRECY + RETURN + [ODD])
    labels = cluster_vectors(vectors, eps=0.4, min_samples=2)
    assert len(set(labels[:4])) == 1 and labels[0] >= 0
    assert len(set(labels[4:7])) == 1 and labels[4] >= 0 and labels[4] != labels[0]
    assert labels[7] == -1


def test_tfidf_svd_copes_with_rules_that_have_no_words() -> None:
    vectors = tfidf_svd(["1", "2", "3"])
    assert vectors.shape[0] == 3 and np.isfinite(vectors).all()


def test_each_cluster_becomes_a_pending_candidate_with_its_provenance(task: Task) -> None:
    micro = _micro_rules(task)
    with FakeTeacher() as fake:
        outcome = clustering_run_create(task=task, config=_config(fake), eps=0.4, min_samples=6)
    run = outcome.run
    assert (run.n_rules, run.n_clusters, run.n_noise) == (8, 2, 1)
    assert run.min_samples == 2 and run.params["adapted_for_small_set"]
    assert run.embedding == "tfidf-svd"
    rules = list(Rule.objects.filter(clustering_run=run).order_by("-support"))
    assert [r.support for r in rules] == [4, 3]
    top = rules[0]
    assert top.status == Rule.Status.PENDING and top.origin == Rule.Origin.TEACHER
    assert top.proposed_by_model == "fake-teacher" and top.teacher_endpoint.startswith("http://127.0.0.1:")
    assert set(top.micro_rules.all()) == set(micro[:4])
    assert set(top.examples.all()) == {m.example for m in micro[:4]}
    assert top.label_balance == {"Contradiction": 2, "Entailment": 1, "NotMentioned": 1}
    assert top.topic and top.text
    assert top.current_revision.number == 1 and top.current_revision.author_model == "fake-teacher"
    assert not Decision.objects.filter(action=Decision.Action.APPROVE).exists()
    odd = MicroRule.objects.get(pk=micro[-1].pk)
    assert odd.is_noise and odd.clustering_run == run


def test_clustering_again_changes_nothing_and_costs_nothing(task: Task) -> None:
    _micro_rules(task)
    with FakeTeacher() as fake:
        clustering_run_create(task=task, config=_config(fake))
        calls = TeacherCall.objects.count()
        again = clustering_run_create(task=task, config=_config(fake))
    assert again.reused
    assert ClusteringRun.objects.count() == 1 and Rule.objects.count() == 2
    assert TeacherCall.objects.count() == calls


def test_a_budget_stop_leaves_the_run_unfinished_and_a_rerun_completes_it(task: Task) -> None:
    _micro_rules(task)
    with FakeTeacher() as fake:
        first = clustering_run_create(
            task=task, config=_config(fake, max_requests=1, concurrency=1), embedding="tfidf-svd"
        )
        assert first.stopped and not ClusteringRun.objects.get().params["complete"]
        assert Rule.objects.count() == 1
        second = clustering_run_create(task=task, config=_config(fake), embedding="tfidf-svd")
    assert second.n_candidates_created == 1 and not second.reused
    assert ClusteringRun.objects.get().params["complete"]
    assert Rule.objects.count() == 2


def test_it_uses_the_endpoints_embeddings_when_there_are_some(task: Task) -> None:
    _micro_rules(task)
    with FakeTeacher(embeddings=True) as fake:
        outcome = clustering_run_create(task=task, config=_config(fake), eps=0.05)
    assert outcome.run.embedding == "endpoint:fake-teacher"
    assert TeacherCall.objects.filter(purpose="embed").count() == 1


def test_it_refuses_to_cluster_without_micro_rules(task: Task) -> None:
    with FakeTeacher() as fake, pytest.raises(ValidationError, match="extract rules first"):
        clustering_run_create(task=task, config=_config(fake))


def test_a_person_can_promote_a_noise_micro_rule_once(task: Task, reviewer: User) -> None:
    micro = _micro_rules(task)
    with FakeTeacher() as fake:
        clustering_run_create(task=task, config=_config(fake))
    noise = MicroRule.objects.get(pk=micro[-1].pk)
    rule = micro_rule_promote(micro_rule=noise, user=reviewer, reason="Edge case worth keeping")
    assert rule.status == Rule.Status.PENDING and rule.support == 1
    assert rule.proposed_by_model == "fake-teacher" and rule.proposed_by is None
    assert list(rule.micro_rules.all()) == [noise]
    decision = Decision.objects.get(rule=rule)
    assert decision.action == Decision.Action.PROMOTE_NOISE and decision.reviewer == reviewer
    assert decision.history.first().history_user == reviewer
    with pytest.raises(ValidationError, match="already been promoted"):
        micro_rule_promote(micro_rule=noise, user=reviewer)
    with pytest.raises(ValidationError, match="Only a noise micro-rule"):
        micro_rule_promote(micro_rule=MicroRule.objects.get(pk=micro[0].pk), user=reviewer)


@pytest.mark.slow
def test_cluster_rules_merges_clusters_with_the_real_local_teacher(task: Task, local_teacher) -> None:
    conditions = SECRECY[:3] + [ODD]
    examples = make_examples(task, len(conditions))
    for example, condition in zip(examples, conditions, strict=True):
        make_micro_rule(example, condition, model="gemma-3-270m-q4_k_m")
    with override_settings(**local_endpoint_settings(local_teacher)):
        call_command("cluster_rules", "--task", task.name, "--endpoint", "local", "--concurrency", "1",
                     "--embedding", "tfidf-svd")
    run = ClusteringRun.objects.get()
    clustered = [m for m in MicroRule.objects.all() if m.cluster is not None and m.cluster >= 0]
    assert len(clustered) == 3 and run.params["complete"]
    # The 270M base model often writes no condition at all (seen: "Topic: NDA Clauses"); such a merge is
    # refused with its reason and leaves its micro-rules promotable, never a junk candidate.
    rule = Rule.objects.first()
    if rule is not None:
        assert rule.proposed_by_model == "gemma-3-270m-q4_k_m"
        assert rule.text.strip() and rule.topic.strip()
        assert rule.support == 3 and rule.micro_rules.count() == 3
    else:
        assert "states no condition" in run.unmerged_clusters[clustered[0].cluster]
        assert all(micro_rule_is_promotable(m) for m in clustered)
    assert TeacherCall.objects.filter(purpose="consolidate").count() == 1


def test_a_merge_that_states_no_condition_is_refused_and_its_micro_rules_can_be_promoted(
    task: Task, reviewer: User
) -> None:
    micro = _micro_rules(task)
    # What the 270M local teacher was seen to write: a label for the rule, and another for its topic.
    with FakeTeacher(overrides={"instruction": "Entailment", "topic": "NotMentioned"}) as fake:
        outcome = clustering_run_create(task=task, config=_config(fake), eps=0.4, min_samples=6)
    run = outcome.run
    assert outcome.n_candidates_created == 0 and outcome.n_failed == 2
    assert not Rule.objects.exists()
    assert set(run.unmerged_clusters) == {MicroRule.objects.get(pk=m.pk).cluster for m in micro[:7]}
    assert all("states no condition" in reason for reason in run.unmerged_clusters.values())
    clustered = MicroRule.objects.get(pk=micro[0].pk)
    rule = micro_rule_promote(micro_rule=clustered, user=reviewer)
    assert rule.status == Rule.Status.PENDING and rule.text == clustered.text
    promotion = Decision.objects.get(rule=rule, action=Decision.Action.PROMOTE_NOISE)
    assert promotion.reason == "Promoted a micro-rule the teacher could not merge to a candidate"
    with FakeTeacher() as fake:
        again = clustering_run_create(task=task, config=_config(fake), eps=0.4, min_samples=6)
    assert again.reused and len(ClusteringRun.objects.get().params["failed_clusters"]) == 2


def test_a_merge_needs_a_condition_and_a_topic_that_names_a_label_is_dropped() -> None:
    labels = ["Entailment", "Contradiction", "NotMentioned"]
    good = {"instruction": "If the clause forbids sharing with staff, then Contradiction", "topic": "Staff access"}
    assert merge_problem(good, labels) == "" and merged_topic(good, labels) == "Staff access"
    assert "states no condition" in merge_problem({**good, "instruction": "Entailment."}, labels)
    assert "states no condition" in merge_problem({**good, "instruction": "the label applies"}, labels)
    # A good instruction under a label-for-a-topic is kept: losing the rule would cost more than its topic.
    assert merge_problem({**good, "topic": "Entailment"}, labels) == ""
    assert merged_topic({**good, "topic": "contradiction."}, labels) == ""
