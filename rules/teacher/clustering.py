"""Phase 2: cluster a task's micro-rules with DBSCAN and have the teacher merge each cluster into a candidate rule.

Noise micro-rules (DBSCAN label -1) are kept and listed; a person can promote one to a candidate.
A clustering with the same micro-rules and parameters is done once: running it again resumes an
unfinished one and otherwise returns the finished one unchanged.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from sklearn.cluster import DBSCAN

from pldreview.jobs import JobProgress
from pldreview.ledger import ledger_append
from rules.models import ClusteringRun, Decision, MicroRule, Rule, Task
from rules.review.services import decision_record, rule_propose
from rules.teacher.client import (
    Teacher,
    TeacherAnswer,
    TeacherConfig,
    TeacherError,
    TeacherRequest,
    TeacherTally,
    teacher_provenance,
)
from rules.teacher.embeddings import embed_texts

JOB_KIND = "cluster"
DEFAULT_EPS = 0.4
DEFAULT_MIN_SAMPLES = 6
# Small sets: a cluster needs at least this share of the micro-rules (never fewer than 2, never more
# than the requested min_samples). The paper's 6 was for roughly a thousand rules; on 24 rules it
# would leave almost everything as noise.
SMALL_SET_SHARE = 0.05
# Micro-rules shown to the teacher per cluster; the rest still count in support and provenance.
MAX_RULES_PER_PROMPT = 15


def effective_min_samples(n_rules: int, min_samples: int, *, adapt: bool = True) -> int:
    """Return the DBSCAN min_samples used for ``n_rules`` micro-rules (see SMALL_SET_SHARE)."""
    if not adapt:
        return min_samples
    return max(2, min(min_samples, round(SMALL_SET_SHARE * n_rules)))


def cluster_vectors(vectors: np.ndarray, *, eps: float, min_samples: int) -> np.ndarray:
    """Return DBSCAN labels (-1 = noise) for unit vectors under cosine distance."""
    return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine", algorithm="brute").fit_predict(vectors)


def consolidation_messages(task: Task, micro_rules: list[MicroRule]) -> list[dict[str, str]]:
    """Return the chat messages that ask the teacher to merge a cluster's micro-rules into one instruction."""
    labels = "\n".join(f"- {label['name']}: {label.get('description', '')}" for label in task.labels)
    system = (
        f"Task: {task.title or task.name}. {task.description}\nLabels:\n{labels}\n\n"
        "You merge similar rules into ONE instruction for a classifier. Write:\n"
        '- "topic": a short name for what the rules are about (2 to 6 words),\n'
        '- "instruction": one or two general sentences that say when the label applies; '
        "no names of people or companies, no vague advice such as 'read carefully',\n"
        '- "label": the label the instruction implies.\n'
        "Answer with a JSON object with the keys topic, instruction and label."
    )
    shown = "\n".join(f"{i}. {micro.text}" for i, micro in enumerate(micro_rules[:MAX_RULES_PER_PROMPT], 1))
    user = f"Rules to merge ({len(micro_rules)} in this group):\n{shown}\n\nWrite the merged instruction."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def consolidation_schema(labels: list[str]) -> dict[str, Any]:
    """Return the JSON schema of a merged instruction; the label must be one found in the cluster."""
    return {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "minLength": 3, "maxLength": 80},
            "instruction": {"type": "string", "minLength": 10, "maxLength": 400},
            "label": {"type": "string", "enum": labels},
        },
        "required": ["topic", "instruction", "label"],
    }


@dataclass
class ClusteringOutcome(TeacherTally):
    """A clustering run and what this call added to it."""

    run: ClusteringRun
    n_candidates_created: int = 0
    reused: bool = False


def _run_key(micro_ids: list[int], *, eps: float, min_samples: int, embedding: str, adapt: bool) -> str:
    payload = json.dumps([sorted(micro_ids), eps, min_samples, embedding, adapt])
    return hashlib.sha256(payload.encode()).hexdigest()


def _cluster_members(run: ClusteringRun) -> dict[int, list[MicroRule]]:
    members: dict[int, list[MicroRule]] = defaultdict(list)
    ids = run.params.get("assignment", {})
    by_id = MicroRule.objects.select_related("example").in_bulk([int(pk) for pk in ids])
    for pk, cluster in ids.items():
        if cluster >= 0 and int(pk) in by_id:
            members[cluster].append(by_id[int(pk)])
    for cluster_members in members.values():
        cluster_members.sort(key=lambda micro: micro.pk)
    return members


@transaction.atomic
def _clustering_run_store(
    *, task: Task, micro_rules: list[MicroRule], labels: np.ndarray, key: str, embedding: str,
    eps: float, min_samples: int, used_min_samples: int, adapt: bool, user: AbstractBaseUser | None,
) -> ClusteringRun:
    assignment = {str(micro.pk): int(label) for micro, label in zip(micro_rules, labels, strict=True)}
    run = ClusteringRun(
        task=task,
        eps=eps,
        min_samples=used_min_samples,
        embedding=embedding,
        n_rules=len(micro_rules),
        n_clusters=len({label for label in assignment.values() if label >= 0}),
        n_noise=sum(1 for label in assignment.values() if label < 0),
        params={
            "key": key,
            "requested_min_samples": min_samples,
            "adapted_for_small_set": adapt and used_min_samples != min_samples,
            "assignment": assignment,
            "complete": False,
        },
        created_by=user if user is not None and user.pk else None,
    )
    run.full_clean()
    run.save()
    for micro in micro_rules:
        micro.clustering_run = run
        micro.cluster = assignment[str(micro.pk)]
    MicroRule.objects.bulk_update(micro_rules, ["clustering_run", "cluster"])
    return run


def clustering_is_done(
    *, task: Task, eps: float = DEFAULT_EPS, min_samples: int = DEFAULT_MIN_SAMPLES, adapt: bool = True,
    embedding: str = "auto", teacher_model: str = "",
) -> bool:
    """Say whether a finished clustering with these micro-rules and parameters already exists."""
    micro_qs = MicroRule.objects.filter(task=task)
    if teacher_model:
        micro_qs = micro_qs.filter(teacher_model=teacher_model)
    ids = list(micro_qs.values_list("id", flat=True))
    key = _run_key(ids, eps=eps, min_samples=min_samples, embedding=embedding, adapt=adapt)
    return ClusteringRun.objects.filter(task=task, params__key=key, params__complete=True).exists()


def clustering_run_create(
    *,
    task: Task,
    config: TeacherConfig,
    eps: float = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    adapt: bool = True,
    embedding: str = "auto",
    teacher_model: str = "",
    user: AbstractBaseUser | None = None,
    job: Any = None,
    progress: JobProgress | None = None,
) -> ClusteringOutcome:
    """Cluster the task's micro-rules and propose one candidate rule per cluster, merged by the teacher."""
    if not 0 < eps <= 2:
        raise ValidationError({"eps": "eps is a cosine distance: it must be above 0 and at most 2."})
    if min_samples < 1:
        raise ValidationError({"min_samples": "min_samples must be at least 1."})
    micro_qs = MicroRule.objects.filter(task=task).select_related("example").order_by("id")
    if teacher_model:
        micro_qs = micro_qs.filter(teacher_model=teacher_model)
    micro_rules = list(micro_qs)
    if len(micro_rules) < 2:
        raise ValidationError(f"Task {task.name} has {len(micro_rules)} micro-rules; extract rules first (need 2+).")
    teacher = Teacher(config, job=job)
    used_min_samples = effective_min_samples(len(micro_rules), min_samples, adapt=adapt)
    key = _run_key([m.pk for m in micro_rules], eps=eps, min_samples=min_samples, embedding=embedding, adapt=adapt)
    run = ClusteringRun.objects.filter(task=task, params__key=key).order_by("-id").first()
    if run is not None and run.params.get("complete"):
        return ClusteringOutcome(run=run, reused=True)
    if run is None:
        if progress is not None:
            progress.note(f"Embedding {len(micro_rules)} micro-rules")
        vectors, method = embed_texts([m.text for m in micro_rules], teacher=teacher, method=embedding)
        labels = cluster_vectors(vectors, eps=eps, min_samples=used_min_samples)
        run = _clustering_run_store(
            task=task, micro_rules=micro_rules, labels=labels, key=key, embedding=method, eps=eps,
            min_samples=min_samples, used_min_samples=used_min_samples, adapt=adapt, user=user,
        )
    outcome = ClusteringOutcome(run=run)
    _consolidate(task=task, run=run, teacher=teacher, config=config, outcome=outcome, progress=progress)
    ledger_append(
        event="teacher_run.finished", actor=user, obj=run,
        facts={
            "phase": "clustering", "job_id": getattr(job, "pk", None), "teacher_model": config.model,
            "n_clusters": run.n_clusters, "n_noise": run.n_noise, "n_candidates_created": outcome.n_candidates_created,
            "n_failed": outcome.n_failed, "new_calls": outcome.new_calls, "cached_calls": outcome.cached_calls,
            "stopped": outcome.stopped,
        },
        reason=f"Clustering run {run.pk}: {outcome.n_candidates_created} new candidate rules",
    )
    return outcome


def merge_problem(data: dict[str, Any], labels: list[str]) -> str:
    """Return why a merged instruction is not a usable rule (a label or a few words instead of a condition), or ''."""
    instruction = data["instruction"].strip().rstrip(".")
    if instruction.lower() in {label.lower() for label in labels} or len(instruction.split()) < 4:
        return f"The merged instruction {instruction!r} states no condition."
    return ""


def merged_topic(data: dict[str, Any], labels: list[str]) -> str:
    """Return the merge's topic, or '' when it only names a label (a reviewer then gives the rule its topic)."""
    topic = data["topic"].strip()
    return "" if topic.rstrip(".").lower() in {label.lower() for label in labels} else topic


def _consolidate(
    *, task: Task, run: ClusteringRun, teacher: Teacher, config: TeacherConfig, outcome: ClusteringOutcome,
    progress: JobProgress | None,
) -> None:
    members = _cluster_members(run)
    done = set(Rule.objects.filter(clustering_run=run).values_list("proposal__cluster", flat=True))
    if progress is not None:
        progress.set_total(len(members), f"{run.n_clusters} clusters, {run.n_noise} noise micro-rules")
        progress.set_done(len(done & set(members)))
    requests = []
    for cluster, cluster_members in sorted(members.items()):
        if cluster in done:
            continue
        counts = Counter(micro.label for micro in cluster_members)
        labels = [label for label, _ in counts.most_common()]
        requests.append(
            TeacherRequest(
                purpose="consolidate",
                messages=consolidation_messages(task, cluster_members),
                schema=consolidation_schema(labels),
                key=cluster,
            )
        )
    # Keyed by cluster: a rerun asks again, and the latest answer is the one that counts.
    failed = run.unmerged_clusters
    for answer in teacher.ask_all(requests, tally=outcome):
        cluster = answer.request.key if answer.request else None
        problem = answer.message if isinstance(answer, TeacherError) else merge_problem(answer.data, task.label_names)
        if not problem:
            _candidate_propose(task=task, run=run, cluster=cluster, members=members[cluster],
                               answer=answer, config=config)
            outcome.n_candidates_created += 1
            failed.pop(cluster, None)
        elif cluster is not None:
            if isinstance(answer, TeacherAnswer):
                outcome.n_failed += 1  # ask_all counts only replies that break the schema
            failed[cluster] = problem
        if progress is not None:
            progress.advance()
    failed_clusters = [{"cluster": cluster, "error": error} for cluster, error in sorted(failed.items())]
    run.params = {**run.params, "failed_clusters": failed_clusters, "complete": not outcome.stopped}
    run.save(update_fields=["params"])


def _candidate_propose(
    *, task: Task, run: ClusteringRun, cluster: int, members: list[MicroRule], answer: TeacherAnswer,
    config: TeacherConfig,
) -> Rule:
    examples = [micro.example for micro in members]
    return rule_propose(
        task=task,
        text=answer.data["instruction"].strip(),
        label=answer.data["label"],
        topic=merged_topic(answer.data, task.label_names),
        origin=Rule.Origin.TEACHER,
        **teacher_provenance(answer.call, examples),
        micro_rules=members,
        clustering_run=run,
        proposal={"cluster": cluster, "teacher_call": answer.call.pk, "teacher_settings": config.public_settings()},
        reason=f"Merged from {len(members)} micro-rules by {answer.call.model}",
    )


def noise_micro_rules(task: Task) -> list[MicroRule]:
    """Return the micro-rules the task's latest clustering left as noise."""
    run = ClusteringRun.objects.filter(task=task).order_by("-id").first()
    if run is None:
        return []
    return list(MicroRule.objects.filter(clustering_run=run, cluster=-1).select_related("example").order_by("id"))


def micro_rule_is_promotable(micro_rule: MicroRule) -> bool:
    """Say whether no teacher candidate speaks for this micro-rule: noise, or a cluster that was not merged."""
    return micro_rule.is_noise or bool(micro_rule.unmerged_reason)


@transaction.atomic
def micro_rule_promote(*, micro_rule: MicroRule, user: AbstractBaseUser, reason: str = "") -> Rule:
    """Make a micro-rule that is in no candidate a pending candidate rule, recording the person who promoted it.

    That is a noise micro-rule, or one of a cluster the teacher could not merge into a usable rule.
    """
    if not micro_rule_is_promotable(micro_rule):
        raise ValidationError(
            "Only a noise micro-rule, or one of a cluster the teacher could not merge, can be promoted; "
            "the others are merged by the teacher."
        )
    if Rule.objects.filter(micro_rules=micro_rule, proposal__promoted_noise=True).exists():
        raise ValidationError("This micro-rule has already been promoted to a candidate rule.")
    kind = "a noise micro-rule" if micro_rule.cluster == -1 else "a micro-rule the teacher could not merge"
    why = reason.strip() or f"Promoted {kind} to a candidate"
    # The wording is the teacher's, so the revision names the teacher model as its author; the person who
    # promoted it is on the decision record, and that decision makes them an author for four eyes
    # (services.rule_authors): choosing a rule for the rule set is not reviewing it.
    rule = rule_propose(
        task=micro_rule.task,
        text=micro_rule.text,
        label=micro_rule.label,
        topic="",
        origin=Rule.Origin.TEACHER,
        proposed_by_model=micro_rule.teacher_model,
        teacher_endpoint=micro_rule.teacher_endpoint,
        teacher_endpoint_name=micro_rule.teacher_endpoint_name,
        support=1,
        label_balance={micro_rule.example.gold_label: 1},
        micro_rules=[micro_rule],
        examples=[micro_rule.example],
        clustering_run=micro_rule.clustering_run,
        proposal={"promoted_noise": True, "micro_rule": micro_rule.pk},
        reason=why,
    )
    decision_record(rule=rule, user=user, action=Decision.Action.PROMOTE_NOISE, reason=why, status_before="")
    return rule
