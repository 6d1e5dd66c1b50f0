"""Phase 3, closed-loop conflict resolution: the teacher diagnoses the student's failures and proposes patches.

From a finished evaluation run on train or dev, failures are grouped by (gold label, predicted label)
and sent with a few correct cases to the teacher, which names the cause (MISSING, WRONG, CONFLICT)
and proposes one patch (a new rule, an edited rule, or a precedence between two rules). Before a
proposal reaches reviewers, the student is run on a small seeded dev subset with the approved rules
and with the patch applied; macro-F1 before and after and the flipped examples go into the proposal.
Every proposal is a pending candidate: nothing here approves a rule.

With ``include_feedback`` the task's feedback examples (production decisions a Reviewer marked wrong, see
evaluation/production/decision_log.py) join as further failure groups named ``feedback:<right>-><given>``.
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.urls import reverse

from evaluation.models import EvaluationRun, Prediction
from evaluation.production.decision_log import PURGED
from evaluation.runs.metrics import correctness_flips, macro_f1
from evaluation.student import prompts
from evaluation.student.in_process import Student, classify_example, get_student
from pldreview.jobs import JobProgress
from pldreview.models import Job
from rules.models import Example, Rule, RuleRevision, Split, Task, TeacherCall
from rules.prompts.compiler import prompt_render
from rules.review.services import rule_propose, ruleset_rules
from rules.teacher.client import (
    Teacher,
    TeacherAnswer,
    TeacherConfig,
    TeacherRequest,
    TeacherTally,
    teacher_provenance,
)
from rules.teacher.extraction import field_text
from rules.teacher.local import teacher_for_params

JOB_KIND = "refine"
MAX_FAILURES_PER_GROUP = 6
CORRECT_PER_GROUP = 3
DEFAULT_MAX_GROUPS = 4
DEFAULT_DEV_LIMIT = 20

GUIDE = """You improve the rules a small classifier follows. You see the current rules (with their ids), \
examples the classifier got WRONG (with the correct label and the label it chose) and some it got right.
Diagnose the cause with one word:
- MISSING: no rule covers these cases,
- WRONG: a rule points to the wrong label for these cases,
- CONFLICT: two rules disagree on these cases.
Then propose ONE concrete patch:
- "new": a new general rule ("text") and its "label" (use rule_id 0),
- "edit": the new wording ("text") of the rule with id "rule_id", and the label it should imply,
- "precedence": which rule wins ("rule_id") over which ("other_rule_id") when both apply; "text" says so.
Rules must be general and checkable: no names from one example, no vague advice.
Answer with a JSON object with the keys diagnosis, patch, rule_id, other_rule_id, topic, text, label, explanation."""


@dataclass
class RefineSummary(TeacherTally):
    """What one refine call did."""

    evaluation_run: int
    n_failures: int = 0
    n_groups: int = 0
    n_proposed: int = 0
    n_existing: int = 0
    rule_ids: list[int] = field(default_factory=list)
    dev_before: dict[str, Any] = field(default_factory=dict)


def approved_rules(task: Task) -> list[Rule]:
    """Return the task's approved rules in the order the prompt compiler lays them out."""
    return [rule for rule in ruleset_rules(task) if rule.current_revision_id is not None]


def student_rules_text(*, task: Task, rules: list[Rule]) -> str:
    """Return the student's rules prefix for these rules: the compiler's text, as a pld run on a version gets it."""
    return prompts.pld_rules(task=task, prompt_text=prompt_render(task=task, rules=rules).text)


def _proposed_fields(patch: dict[str, Any], target: Rule | None) -> dict[str, str]:
    """Return the wording a proposal files: a precedence keeps its rule's statement, an edit its precedence note."""
    fields = {"text": patch["text"].strip(), "label": patch["label"], "topic": patch["topic"].strip(),
              "precedence_note": ""}
    if target is not None and patch["patch"] == "precedence":
        fields.update(text=target.text, label=target.label, precedence_note=patch["text"].strip())
    elif target is not None and patch["patch"] == "edit":
        fields["precedence_note"] = target.precedence_note
    return fields


def _stand_in(task: Task, rule: Rule | None, fields: dict[str, str]) -> Rule:
    # Unsaved: the compiler reads only the current revision, so the patched set is measured without writing.
    stand_in = Rule(pk=rule.pk if rule is not None else None, task=task, status=Rule.Status.APPROVED, **fields)
    stand_in.current_revision = RuleRevision(number=1, **fields)
    return stand_in


def patched_rules(task: Task, rules: list[Rule], patch: dict[str, Any]) -> list[Rule]:
    """Return the approved rules as they would compile with the patch: new appended, edit/precedence in place."""
    target = next((rule for rule in rules if rule.pk == patch.get("refines")), None)
    fields = _proposed_fields(patch, target)
    if target is None:
        return [*rules, _stand_in(task, None, fields)]
    return [_stand_in(task, rule, fields) if rule.pk == target.pk else rule for rule in rules]


def dev_examples(task: Task, *, limit: int, seed: int) -> list[Example]:
    """Return a seeded dev subset (the same one for 'before' and every 'after')."""
    examples = list(Example.objects.filter(task=task, split=Split.DEV).order_by("id"))
    random.Random(seed).shuffle(examples)
    return sorted(examples[:limit], key=lambda example: example.pk)


def measure_on_dev(*, student: Student, task: Task, rules_text: str, examples: list[Example]) -> dict[str, Any]:
    """Run the student on the examples under a rules text; return macro-F1 and each prediction."""
    predicted = {ex.pk: classify_example(student=student, task=task, inputs=ex.inputs, rules_text=rules_text).label
                 for ex in examples}
    return {
        "macro_f1": macro_f1([ex.gold_label for ex in examples], [predicted[ex.pk] for ex in examples],
                             task.label_names),
        "n": len(examples),
        "rules_sha256": hashlib.sha256(rules_text.encode("utf-8")).hexdigest(),
        "predictions": {str(pk): label for pk, label in predicted.items()},
    }


def _flips(examples: list[Example], before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[int]]:
    flips = correctness_flips(
        {ex.pk: before["predictions"][str(ex.pk)] == ex.gold_label for ex in examples},
        {ex.pk: after["predictions"][str(ex.pk)] == ex.gold_label for ex in examples},
    )
    return {"right_to_wrong": flips.right_to_wrong, "wrong_to_right": flips.wrong_to_right}


def _case_text(task: Task, example: Example) -> str:
    return " | ".join(f"{name}: {field_text(task, example, name)[:400]}" for name in task.input_fields)


def refine_messages(
    task: Task, rules: list[Rule], failures: list[Prediction], correct: list[Prediction]
) -> list[dict[str, str]]:
    """Return the chat messages asking the teacher to diagnose one group of failures."""
    labels = "\n".join(f"- {label['name']}: {label.get('description', '')}" for label in task.labels)
    current = "\n".join(f"[{rule.pk}] {rule.text} → {rule.label}" for rule in rules) or "(no approved rules yet)"
    wrong = "\n".join(
        f"- {_case_text(task, p.example)}\n  correct: {p.example.gold_label}; classifier said: {p.label}"
        for p in failures
    )
    right = "\n".join(f"- {_case_text(task, p.example)}\n  correct: {p.example.gold_label}" for p in correct)
    system = f"Task: {task.title or task.name}. {task.description}\nLabels:\n{labels}\n\n{GUIDE}"
    user = f"Current rules:\n{current}\n\nGot wrong:\n{wrong}\n\nGot right:\n{right or '(none shown)'}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def refine_schema(task: Task, rules: list[Rule], gold: str = "") -> dict[str, Any]:
    """Return the JSON schema of a diagnosis; without approved rules only a new rule for the gold label fits."""
    ids = [rule.pk for rule in rules]
    labels = task.label_names
    if gold in labels:
        # A new rule for these failures must imply their gold label; edits may point anywhere.
        labels = [gold] if not ids else [gold, *(label for label in labels if label != gold)]
    return {
        "type": "object",
        "properties": {
            "diagnosis": {"type": "string", "enum": ["MISSING", "WRONG", "CONFLICT"] if ids else ["MISSING"]},
            "patch": {"type": "string", "enum": ["new", "edit", "precedence"] if ids else ["new"]},
            "rule_id": {"type": "integer", "enum": [0, *ids]},
            "other_rule_id": {"type": "integer", "enum": [0, *ids]},
            "topic": {"type": "string", "minLength": 3, "maxLength": 80},
            "text": {"type": "string", "minLength": 10, "maxLength": 400},
            "label": {"type": "string", "enum": labels},
            "explanation": {"type": "string", "minLength": 10, "maxLength": 300},
        },
        "required": ["diagnosis", "patch", "rule_id", "other_rule_id", "topic", "text", "label", "explanation"],
    }


def _normalise_patch(data: dict[str, Any], rules: list[Rule]) -> dict[str, Any]:
    """Return the patch with its target rule, falling back to a new rule when the teacher named none."""
    by_id = {rule.pk: rule for rule in rules}
    patch = {**data, "refines": None}
    if data["patch"] in {"edit", "precedence"} and data["rule_id"] in by_id:
        patch["refines"] = data["rule_id"]
    elif data["patch"] != "new":
        patch["patch"] = "new"
        patch["note"] = f"The teacher asked for {data['patch']} without naming an approved rule; proposed as new."
    if patch["patch"] == "edit" and data["diagnosis"] == "MISSING":
        patch["diagnosis"] = "WRONG"
    return patch


def _groups(run: EvaluationRun, *, max_groups: int, seed: int) -> list[tuple[str, list[Prediction], list[Prediction]]]:
    predictions = list(run.predictions.select_related("example").order_by("id"))
    failures: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    correct: dict[str, list[Prediction]] = defaultdict(list)
    for p in predictions:
        if p.correct:
            correct[p.example.gold_label].append(p)
        elif p.label:
            failures[(p.example.gold_label, p.label)].append(p)
    rng = random.Random(seed)
    groups = []
    for (gold, said), group in sorted(failures.items(), key=lambda item: (-len(item[1]), item[0]))[:max_groups]:
        pool = correct.get(gold, [])
        sample = rng.sample(pool, min(CORRECT_PER_GROUP, len(pool)))
        groups.append((f"{gold}->{said}", group[:MAX_FAILURES_PER_GROUP], sorted(sample, key=lambda p: p.pk)))
    return groups


def feedback_examples(task: Task) -> list[Example]:
    """Return the task's feedback examples that still hold text: production decisions a Reviewer marked wrong."""
    examples = (
        Example.objects.filter(task=task, split=Split.FEEDBACK, feedback__isnull=False)
        .select_related("feedback__given_by").order_by("id")
    )
    return [example for example in examples if PURGED not in example.inputs.values()]


def _feedback_groups(task: Task) -> list[tuple[str, list[Prediction], list[Prediction]]]:
    """Group feedback examples like a run's failures: by (right label, label the production version gave)."""
    failures: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for example in feedback_examples(task):
        # Unsaved: the logged decision plays the part of the student's prediction on this example.
        said = example.feedback.logged_label
        failures[(example.gold_label, said)].append(Prediction(example=example, label=said, correct=False))
    return [(f"feedback:{gold}->{said}", group[:MAX_FAILURES_PER_GROUP], [])
            for (gold, said), group in sorted(failures.items(), key=lambda item: (-len(item[1]), item[0]))]


def refine_groups(
    run: EvaluationRun, *, max_groups: int = DEFAULT_MAX_GROUPS, seed: int = 0, include_feedback: bool = False
) -> list[tuple[str, list[Prediction], list[Prediction]]]:
    """Return the failure groups a refine call diagnoses: the run's, then the task's feedback examples'."""
    groups = _groups(run, max_groups=max_groups, seed=seed)
    if include_feedback:
        groups += _feedback_groups(run.task)
    return groups


def refine_is_done(
    run: EvaluationRun, *, max_groups: int = DEFAULT_MAX_GROUPS, seed: int = 0, include_feedback: bool = False
) -> bool:
    """Say whether every failure group of the run already has a filed proposal."""
    filed = set(
        Rule.objects.filter(origin=Rule.Origin.REFINE, proposal__evaluation_run=run.pk).values_list(
            "proposal__group", flat=True
        )
    )
    groups = refine_groups(run, max_groups=max_groups, seed=seed, include_feedback=include_feedback)
    return all(name in filed for name, _, _ in groups)


def refine_proposals_create(
    *,
    run: EvaluationRun,
    config: TeacherConfig,
    max_groups: int = DEFAULT_MAX_GROUPS,
    dev_limit: int = DEFAULT_DEV_LIMIT,
    seed: int = 0,
    student: Student | None = None,
    job: Any = None,
    progress: JobProgress | None = None,
    include_feedback: bool = False,
) -> RefineSummary:
    """Ask the teacher to diagnose a run's failures; measure each patch on dev; file it as a pending candidate."""
    if run.status != EvaluationRun.Status.FINISHED:
        raise ValidationError(f"Evaluation run {run.pk} is {run.status}; refine needs a finished run.")
    if run.split not in {Split.TRAIN, Split.DEV}:
        raise ValidationError("Refine learns from train or dev runs only; the test split stays unseen.")
    task = run.task
    summary = RefineSummary(evaluation_run=run.pk)
    summary.n_failures = run.predictions.filter(correct=False).count()
    groups = refine_groups(run, max_groups=max_groups, seed=seed, include_feedback=include_feedback)
    summary.n_groups = len(groups)
    existing = {
        rule.proposal.get("group"): rule
        for rule in Rule.objects.filter(origin=Rule.Origin.REFINE, proposal__evaluation_run=run.pk)
    }
    todo = [group for group in groups if group[0] not in existing]
    summary.n_existing = len(groups) - len(todo)
    summary.rule_ids = [rule.pk for rule in existing.values()]
    if progress is not None:
        progress.set_total(len(groups), f"{summary.n_failures} failures in {len(groups)} groups")
        progress.set_done(summary.n_existing)
    if not todo:
        return summary
    rules = approved_rules(task)
    teacher = Teacher(config, job=job)
    requests = [
        TeacherRequest(purpose="refine", messages=refine_messages(task, rules, failures, correct),
                       schema=refine_schema(task, rules, failures[0].example.gold_label), key=(name, failures))
        for name, failures, correct in todo
    ]
    examples = dev_examples(task, limit=dev_limit, seed=seed)
    measuring = bool(examples)
    before: dict[str, Any] = {}
    if measuring:
        student = student or get_student()
        if progress is not None:
            progress.note(f"Measuring the approved rules on {len(examples)} dev examples")
        before = measure_on_dev(student=student, task=task, rules_text=student_rules_text(task=task, rules=rules),
                                examples=examples)
        summary.dev_before = {"macro_f1": before["macro_f1"], "n": before["n"]}
    for answer in teacher.ask_all(requests, tally=summary):
        if isinstance(answer, TeacherAnswer):
            name, failures = answer.request.key
            patch = _normalise_patch(answer.data, rules)
            proposal: dict[str, Any] = {
                "evaluation_run": run.pk,
                "group": name,
                "failure_example_ids": [p.example_id for p in failures],
                "feedback_example_ids": [p.example_id for p in failures if p.example.split == Split.FEEDBACK],
                "patch": patch["patch"],
                "explanation": patch["explanation"],
                "teacher_call": answer.call.pk,
                "teacher_settings": config.public_settings(),
                "dev_before": {},
                "dev_after": {},
                "flips": {"right_to_wrong": [], "wrong_to_right": []},
            }
            if patch["patch"] == "precedence" and patch["other_rule_id"]:
                proposal["other_rule"] = patch["other_rule_id"]
            if patch.get("note"):
                proposal["note"] = patch["note"]
            if measuring:
                patched = student_rules_text(task=task, rules=patched_rules(task, rules, patch))
                after = measure_on_dev(student=student, task=task, rules_text=patched, examples=examples)
                proposal["dev_before"] = {k: before[k] for k in ("macro_f1", "n", "rules_sha256")}
                proposal["dev_after"] = {k: after[k] for k in ("macro_f1", "n", "rules_sha256")}
                proposal["dev_example_ids"] = [ex.pk for ex in examples]
                proposal["flips"] = _flips(examples, before, after)
            rule = _proposal_file(task=task, patch=patch, failures=failures, proposal=proposal,
                                  call=answer.call, rules=rules)
            summary.n_proposed += 1
            summary.rule_ids.append(rule.pk)
        if progress is not None:
            progress.advance()
    return summary


def _proposal_file(
    *, task: Task, patch: dict[str, Any], failures: list[Prediction], proposal: dict[str, Any],
    call: TeacherCall, rules: list[Rule],
) -> Rule:
    target = next((rule for rule in rules if rule.pk == patch["refines"]), None)
    return rule_propose(
        task=task,
        **_proposed_fields(patch, target),
        origin=Rule.Origin.REFINE,
        diagnosis=patch["diagnosis"],
        refines=target,
        **teacher_provenance(call, [p.example for p in failures]),
        proposal=proposal,
        reason=f"{patch['diagnosis']}: {patch['explanation']}"[:500],
    )


def refine(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Job handler: refine proposals from an evaluation run (params: evaluation, dev_limit, max_groups, teacher)."""
    params = job.params
    run = EvaluationRun.objects.select_related("task").get(pk=params["evaluation"])
    max_groups = int(params.get("max_groups") or DEFAULT_MAX_GROUPS)
    seed = int(params.get("seed") or 0)
    include_feedback = bool(params.get("include_feedback"))

    def all_filed(_base: TeacherConfig) -> bool:
        return run.status == EvaluationRun.Status.FINISHED and refine_is_done(
            run, max_groups=max_groups, seed=seed, include_feedback=include_feedback
        )

    with teacher_for_params(params, all_answered=all_filed) as config:
        summary = refine_proposals_create(
            run=run, config=config, max_groups=max_groups,
            dev_limit=int(params.get("dev_limit") or DEFAULT_DEV_LIMIT), seed=seed, job=job, progress=progress,
            include_feedback=include_feedback,
        )
    summary.raise_if_all_failed()
    message = (
        f"{summary.n_proposed} new proposals ({summary.n_existing} already filed, {summary.n_failed} refused) from "
        f"{summary.n_failures} failures in {summary.n_groups} groups; {summary.new_calls} new teacher calls."
        + (f" {summary.failures_note()}" if summary.failures_note() else "")
    )
    progress.note(f"Stopped early: {summary.stopped}" if summary.stopped else message)
    try:
        url = reverse("pld-review-queue")
    except Exception:  # the review queue is another area's page; the result stands without the link
        url = ""
    return {**summary.as_dict(), "message": message, **({"url": url} if url else {})}
