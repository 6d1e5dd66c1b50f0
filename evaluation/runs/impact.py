"""Rule impact: which rule moves which decision, by leaving each rule out (counterfactual, per prompt version).

An impact run decides every sampled example once with the version's whole rule set (variant 0) and once
with each rule left out (variant k: the rest in their compiled order, renumbered as the compiler would).
Variant-major order: each variant's rules prefix is prepared once, then every example is decided after it.
The prompt is cut into the compiler's parts (``rules.prompts.compiler.prompt_parts``: header, one part per rule,
answer line), tokenized part by part and decoded with a batch cut at every part start, so the prefix of
rules 1..k-1 is the same tokens in the same batch layout in the whole prompt and in the prompt without
rule k: the student keeps it cached and only processes the tail. A decision is therefore exactly the one a
from-scratch pass over the prompt without the rule gives (tests/evaluation/test_rule_impact.py).

Explaining one decision (``decision_explain``) is the same leave-one-out for one input. Running an impact run
in shards over the workers (start, cancel, resume): ``evaluation/runs/impact_runs.py``. Method, cost and
limits: docs/attribution.md.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from evaluation.models import (
    ClassifyCall,
    DecisionExplanation,
    EvaluationRun,
    InputRetention,
    Prediction,
    RuleImpactRun,
)
from evaluation.runs.metrics import macro_f1, paired_bootstrap_margin
from evaluation.runs.shards import shards_plan
from evaluation.student import prompts
from evaluation.student.in_process import (
    Student,
    StudentDecision,
    StudentModelError,
    check_model_file,
)
from pldreview.jobs import JobProgress, NoProgress, job_start
from pldreview.ledger import ledger_append
from pldreview.models import Job
from rules.models import Example, PromptVersion, Split
from rules.prompts.compiler import TEMPLATE_VERSION, prompt_parts

JOB_KIND = "rule_impact"
EXPLAIN_JOB_KIND = "decision_explain"
# A run whose most frequent answer covers this share of its decisions is near-constant: leaving a rule out
# can hardly change it, so "changes nothing" says more about the student than about the rule.
NEAR_CONSTANT_SHARE = 0.9
# How many rules the set summary names as carrying most decisions.
CARRIERS = 3


@dataclass(frozen=True)
class Variant:
    """One prompt of a leave-one-out: number 0 has every rule, number k leaves out the rule at number k."""

    number: int
    rule_id: int | None
    revision_id: int | None
    parts: list[str]

    @property
    def text(self) -> str:
        return "".join(self.parts)


def version_variants(version: PromptVersion) -> list[Variant]:
    """Return the version's whole prompt and each leave-one-out prompt, cut into the compiler's parts.

    Refuses a version whose text the current compiler does not reproduce from its recorded rule revisions
    (another template, or a task header changed since): the variants would not be that version's.
    """
    entries = list(version.entries.select_related("rule", "revision").order_by("position"))
    numbered = [(entry.rule, entry.revision) for entry in entries]
    task = version.task
    parts = prompt_parts(task=task, numbered=numbered)
    if version.template_version != TEMPLATE_VERSION or "".join(parts) != version.text:
        raise ValidationError(
            f"{version} was compiled with another layout (template {version.template_version}, or the task's "
            "description or labels changed since): its leave-one-out prompts cannot be rebuilt exactly."
        )
    variants = [Variant(number=0, rule_id=None, revision_id=None, parts=_as_rules(parts))]
    for k, entry in enumerate(entries, start=1):
        without = numbered[: k - 1] + numbered[k:]
        variants.append(Variant(number=k, rule_id=entry.rule_id, revision_id=entry.revision_id,
                                parts=_as_rules(prompt_parts(task=task, numbered=without))))
    return variants


def _as_rules(parts: list[str]) -> list[str]:
    # The runner reads a version as pld_rules(text): without the final line break.
    return [*parts[:-1], parts[-1].rstrip()]


class PreparedVariant:
    """A variant's tokens on one student: its prefix, the batch cuts, and what preparing it cost."""

    def __init__(self, student: Student, variant: Variant) -> None:
        self.variant = variant
        self.prefix, self.cuts = student.parts_prefix(variant.parts)
        self.processed = 0

    def prepare(self, student: Student) -> int:
        """Put the prefix in the student's cache; return (and add up) the tokens that cost."""
        n = student.prefix_prepare(self.prefix, self.cuts)
        self.processed += n
        return n


def decide_variant(
    *, student: Student, prepared: PreparedVariant, task: Any, inputs: dict[str, Any], reuse_prefix: bool = True
) -> StudentDecision:
    """Decide one input after a variant's prefix (the cached path, or from scratch with ``reuse_prefix=False``)."""
    layout = prompts.example_layout(task=task, inputs=inputs)
    return student.classify_prefixed(
        prefix=prepared.prefix, cuts=prepared.cuts, context=layout.context, example=layout.example,
        labels=task.label_names, cue=layout.cue, reuse_prefix=reuse_prefix,
    )


# --- impact runs ----------------------------------------------------------------------------------


def impact_student(model_path: str | None, n_ctx: int | None = None) -> Student:
    from django.conf import settings

    """Load the in-process student the leave-one-out needs (an inference server cannot give exact label scores)."""
    from evaluation.student.in_process import get_student

    if settings.PLD_STUDENT_BACKEND != EvaluationRun.Backend.LLAMA_CPP:
        raise ValidationError(
            "Rule impact and explanations need the in-process student (PLD_STUDENT_BACKEND=llama_cpp): "
            "an inference server does not give the exact label scores they compare."
        )
    return get_student(model_path, n_ctx=n_ctx)


def rule_impact_create(
    *, prompt_version: PromptVersion, split: str = Split.DEV, sample: int | None = None, seed: int = 0,
    model_path: str | None = None, user: Any = None,
) -> RuleImpactRun:
    """Create a queued impact run of a version: check the model file, fix the examples and the variants."""
    from django.conf import settings

    from evaluation.runs.services import _data_sha256, _select_examples
    from evaluation.student.in_process import default_model_path

    if split not in {Split.DEV, Split.TEST, Split.TRAIN}:
        raise ValidationError({"split": "Measure rule impact on the dev, test or train split."})
    if sample is not None and sample < 1:
        raise ValidationError({"sample": "The sample must be at least 1 example."})
    variants = version_variants(prompt_version)
    if len(variants) < 2:
        raise ValidationError(f"{prompt_version} has no rules to leave out.")
    try:
        info = check_model_file(model_path or default_model_path())
    except StudentModelError as exc:
        raise ValidationError({"model_path": exc.message}) from exc
    examples = _select_examples(task=prompt_version.task, split=split, limit=sample, seed=seed)
    if not examples:
        raise ValidationError({"split": f"The task {prompt_version.task.name} has no examples in its {split} split."})
    import llama_cpp

    run = RuleImpactRun(
        prompt_version=prompt_version, task=prompt_version.task, split=split, sample=sample, seed=seed,
        options={
            "example_ids": [e.pk for e in examples],
            "variants": [{"number": v.number, "rule_id": v.rule_id, "revision_id": v.revision_id} for v in variants],
            "prefix_tokens": {},
        },
        n_examples=len(examples), n_rules=len(variants) - 1, data_sha256=_data_sha256(examples),
        model_path=info.path, model_sha256=info.sha256, model_name=info.name,
        llama_cpp_version=llama_cpp.__version__, n_ctx=settings.PLD_STUDENT_N_CTX,
        created_by=user if user is not None and getattr(user, "pk", None) else None,
    )
    with transaction.atomic():
        run.full_clean()
        run.save()
        shards_plan(run=run)
        ledger_append(event="rule_impact.created", actor=run.created_by, obj=run, facts=_facts(run),
                      reason=f"Rule impact {run.pk} of {prompt_version} created")
    return run


def rule_impact_title(run: RuleImpactRun) -> str:
    """Name the run's job."""
    return f"Rule impact of {run.prompt_version} ({run.split}, {run.n_examples} examples) — {run.pk}"


def _facts(run: RuleImpactRun) -> dict[str, Any]:
    return {
        "prompt_version_id": run.prompt_version_id, "prompt_sha256": run.prompt_version.sha256,
        "model_sha256": run.model_sha256, "split": run.split, "sample": run.sample, "seed": run.seed,
        "n_examples": run.n_examples, "n_rules": run.n_rules, "data_sha256": run.data_sha256,
    }


def rule_impact_set(run: RuleImpactRun, **fields: Any) -> None:
    """Save these fields of a run not yet finished (the database refuses any change to a finished one)."""
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=list(fields))


def rule_impact_finish(*, run: RuleImpactRun) -> RuleImpactRun:
    """Compute the run's results from its stored decisions, seal it (finished: immutable) and put it on the ledger."""
    with transaction.atomic():
        run = RuleImpactRun.objects.select_for_update().select_related("prompt_version", "task").get(pk=run.pk)
        if run.status == RuleImpactRun.Status.FINISHED:
            return run
        expected = run.n_examples * (run.n_rules + 1)
        stored = run.decisions.count()
        if stored != expected:
            # Sealing a run with decisions missing would publish figures over fewer examples than it says.
            raise ValidationError(f"Rule impact {run.pk} has {stored} of its {expected} decisions; it cannot finish.")
        run.results = rule_impact_results(run)
        run.status = RuleImpactRun.Status.FINISHED
        run.finished_at = timezone.now()
        run.full_clean()
        run.save(update_fields=["results", "status", "finished_at"])
        ledger_append(event="rule_impact.finished", actor=run.created_by, obj=run,
                      facts={**_facts(run), "results_sha256": _results_sha(run.results)},
                      reason=f"Rule impact {run.pk} of {run.prompt_version} finished")
    return run


def _results_sha(results: dict[str, Any]) -> str:
    import json

    return hashlib.sha256(json.dumps(results, sort_keys=True).encode("utf-8")).hexdigest()


# --- figures ------------------------------------------------------------------------------------------


def behaviour_warning(labels: list[str], predicted: list[str], gold: list[str]) -> str:
    """Say in plain words when a run's decisions are near-constant or no better than chance; else ""."""
    if not predicted:
        return ""
    label, count = Counter(predicted).most_common(1)[0]
    share = count / len(predicted)
    if share == 1.0:
        return (f"The student answered {label or 'nothing'} for every one of the {len(predicted)} examples: "
                "no rule can be seen moving its decisions, so these figures say nothing about the rules.")
    if share >= NEAR_CONSTANT_SHARE:
        return (f"The student answered {label} for {share:.0%} of the {len(predicted)} examples (near-constant): "
                "few decisions can move, so an effect of zero says little about a rule.")
    chance = 1.0 / max(len(labels), 1)
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(predicted)
    if accuracy <= chance:
        return (f"The student is right on {accuracy:.0%} of the examples, no better than chance ({chance:.0%}): "
                "a rule's effect on such decisions is not evidence that the rule works.")
    return ""


def rule_impact_results(run: RuleImpactRun) -> dict[str, Any]:
    """Count, per rule, the decisions leaving it out changes, right→wrong and wrong→right, ΔF1 with its 95% CI."""
    labels = run.task.label_names
    gold = dict(Example.objects.filter(pk__in=run.options["example_ids"]).values_list("pk", "gold_label"))
    by_variant: dict[int, dict[int, str]] = {}
    for variant, example_id, label in run.decisions.values_list("variant", "example_id", "label"):
        by_variant.setdefault(variant, {})[example_id] = label
    order = [pk for pk in run.options["example_ids"] if pk in by_variant.get(0, {})]
    full = by_variant.get(0, {})
    y_true = [gold[pk] for pk in order]
    y_full = [full[pk] for pk in order]
    f1_full = macro_f1(y_true, y_full, labels)
    positions = {entry.position: entry for entry in run.prompt_version.entries.select_related("revision")}
    rows: list[dict[str, Any]] = []
    for spec in run.options["variants"][1:]:
        k = spec["number"]
        without = by_variant.get(k, {})
        ids = [pk for pk in order if pk in without]
        y_t = [gold[pk] for pk in ids]
        y_w = [full[pk] for pk in ids]
        y_k = [without[pk] for pk in ids]
        changed = [i for i in range(len(ids)) if y_k[i] != y_w[i]]
        r2w = sum(1 for i in changed if y_w[i] == y_t[i])
        w2r = sum(1 for i in changed if y_k[i] == y_t[i])
        delta = round(macro_f1(y_t, y_k, labels) - macro_f1(y_t, y_w, labels), 4) if ids else 0.0
        ci = list(paired_bootstrap_margin(y_t, y_k, [y_w], labels, random_state=run.seed)) if ids else [0.0, 0.0]
        per_label = {}
        for label in labels:
            t_f1 = macro_f1(y_t, y_k, [label]) - macro_f1(y_t, y_w, [label]) if ids else 0.0
            per_label[label] = {
                "f1_delta": round(t_f1, 4),
                "gained": sum(1 for i in changed if y_k[i] == label),
                "lost": sum(1 for i in changed if y_w[i] == label),
            }
        entry = positions.get(k)
        rows.append({
            "number": k, "rule_id": spec["rule_id"], "revision_id": spec["revision_id"],
            "label": entry.revision.label if entry else "", "text": entry.revision.text if entry else "",
            "n": len(ids), "changed": len(changed), "right_to_wrong": r2w, "wrong_to_right": w2r,
            "wrong_to_wrong": len(changed) - r2w - w2r, "f1_delta": delta, "f1_delta_ci95": ci,
            "per_label": per_label,
        })
    rows.sort(key=lambda r: (-abs(r["f1_delta"]), -r["changed"], r["number"]))
    carriers = [r["number"] for r in sorted(rows, key=lambda r: (-r["changed"], r["number"])) if r["changed"]]
    return {
        "labels": labels,
        "full": {"n": len(order), "macro_f1": round(f1_full, 4),
                 "accuracy": round(sum(a == b for a, b in zip(y_true, y_full, strict=True)) / len(order), 4)
                 if order else 0.0,
                 "predicted": dict(Counter(y_full))},
        "rules": rows,
        "set": {
            "dead_weight": sorted(r["number"] for r in rows if r["changed"] == 0),
            "hurts": sorted(r["number"] for r in rows if r["f1_delta_ci95"][0] > 0),
            "helps": sorted(r["number"] for r in rows if r["f1_delta_ci95"][1] < 0),
            "carries": carriers[:CARRIERS],
        },
        "warning": behaviour_warning(labels, y_full, y_true),
        "prefix_tokens": run.options.get("prefix_tokens", {}),
    }


def rule_impact_sentence(row: dict[str, Any], *, n_full: int | None = None) -> str:
    """Put one rule's figures in a sentence a reviewer reads."""
    n = row["n"] if n_full is None else n_full
    if not row["changed"]:
        return f"Leaving it out changes none of {n} decisions."
    low, high = row["f1_delta_ci95"]
    return (
        f"Leaving it out changes {row['changed']} of {n} decisions: {row['right_to_wrong']} right→wrong, "
        f"{row['wrong_to_right']} wrong→right; macro-F1 {row['f1_delta']:+.3f} [{low:+.3f}, {high:+.3f}]."
    )


def latest_rule_impact(*, rule_id: int, revision_id: int | None) -> tuple[RuleImpactRun, dict[str, Any]] | None:
    """Return the latest finished impact run that left out this revision of the rule, and the rule's row."""
    if revision_id is None:
        return None
    runs = RuleImpactRun.objects.filter(
        status=RuleImpactRun.Status.FINISHED,
        prompt_version__entries__rule_id=rule_id, prompt_version__entries__revision_id=revision_id,
    ).select_related("prompt_version").order_by("-finished_at", "-id")
    for run in runs[:5]:
        for row in run.results.get("rules", []):
            if row["rule_id"] == rule_id and row["revision_id"] == revision_id:
                return run, row
    return None


# --- one decision ---------------------------------------------------------------------------------------


def _subject(*, call: ClassifyCall | None, prediction: Prediction | None) -> tuple[PromptVersion, dict[str, Any]]:
    if (call is None) == (prediction is None):
        raise ValidationError("Explain either a logged call or a prediction.")
    if call is not None:
        if not call.inputs_kept:
            raise ValidationError("This call kept only a hash of its input, so its decision cannot be recomputed.")
        if call.input_retention == InputRetention.REDACT:
            # Recomputing from the redacted text would explain another input than the one decided.
            raise ValidationError("This call kept its input redacted, so its decision cannot be recomputed.")
        return call.prompt_version, call.inputs
    assert prediction is not None
    version = prediction.run.prompt_version
    if version is None:
        raise ValidationError("Only a prediction of a prompt version (a pld run) can be explained by its rules.")
    return version, prediction.example.inputs


def decision_explain_start(
    *, user: Any, call: ClassifyCall | None = None, prediction: Prediction | None = None
) -> Job:
    """Check that the decision can be explained and queue the job that explains it."""
    version, _inputs = _subject(call=call, prediction=prediction)
    version_variants(version)
    params = {"call_id": call.pk} if call is not None else {"prediction_id": prediction.pk}  # type: ignore[union-attr]
    what = f"call {call.request_id}" if call is not None else f"prediction {prediction.pk}"  # type: ignore[union-attr]
    return job_start(kind=EXPLAIN_JOB_KIND, title=f"Why this label? ({what})", params=params, user=user)


@transaction.atomic
def _explanation_save(explanation: DecisionExplanation) -> DecisionExplanation:
    explanation.full_clean()
    explanation.save()
    subject = explanation.call or explanation.prediction
    ledger_append(
        event="decision.explained", actor=explanation.created_by, obj=explanation,
        facts={"call_id": explanation.call_id, "prediction_id": explanation.prediction_id,
               "request_id": str(explanation.call.request_id) if explanation.call else None,
               "prompt_version_id": explanation.prompt_version_id, "prompt_sha256": explanation.prompt_sha256,
               "model_sha256": explanation.model_sha256, "label": explanation.label,
               "deciding_numbers": explanation.deciding_numbers},
        reason=f"Explained {subject}",
    )
    return explanation


def decision_explain(
    *, call: ClassifyCall | None = None, prediction: Prediction | None = None, user: Any = None,
    progress: JobProgress | None = None, job: Job | None = None, model_path: str | None = None,
) -> DecisionExplanation:
    """Decide one input with every rule and with each rule left out; store which rules change its label."""
    progress = progress or NoProgress()
    version, inputs = _subject(call=call, prediction=prediction)
    variants = version_variants(version)
    student = impact_student(model_path)
    progress.set_total(len(variants), f"Deciding with every rule and without each of {len(variants) - 1}")
    started = time.perf_counter()
    task = version.task
    entries: list[dict[str, Any]] = []
    base: StudentDecision | None = None
    for variant in variants:
        prepared = PreparedVariant(student, variant)
        prepared.prepare(student)
        decision = decide_variant(student=student, prepared=prepared, task=task, inputs=inputs)
        probabilities = {k: round(v, 6) for k, v in decision.probabilities.items()}
        if variant.number == 0:
            base = decision
        else:
            assert base is not None
            entries.append({"number": variant.number, "rule_id": variant.rule_id, "revision_id": variant.revision_id,
                            "label": decision.label, "probabilities": probabilities,
                            "changes": decision.label != base.label})
        progress.advance(1)
    assert base is not None
    explanation = DecisionExplanation(
        call=call, prediction=prediction, prompt_version=version, prompt_sha256=version.sha256,
        model_sha256=student.info.sha256, label=base.label,
        probabilities={k: round(v, 6) for k, v in base.probabilities.items()},
        rules=entries, deciding_numbers=[e["number"] for e in entries if e["changes"]],
        seconds=round(time.perf_counter() - started, 3), job=job,
        created_by=user if user is not None and getattr(user, "pk", None) else None,
    )
    return _explanation_save(explanation)


def latest_explanation(call: ClassifyCall) -> DecisionExplanation | None:
    """Return the newest explanation computed for a logged call, or None (the dossier shows it)."""
    return (DecisionExplanation.objects.filter(call=call).select_related("prompt_version", "created_by")
            .order_by("-created_at", "-id").first())


def latest_prediction_explanation(prediction: Prediction) -> DecisionExplanation | None:
    """Return the newest explanation computed for an evaluation prediction, or None."""
    return DecisionExplanation.objects.filter(prediction=prediction).order_by("-created_at", "-id").first()


def explanation_as_dict(explanation: DecisionExplanation) -> dict[str, Any]:
    """Return an explanation as exported with its call."""
    return {
        "computed_at": explanation.created_at.isoformat(),
        "computed_by": explanation.created_by.get_username() if explanation.created_by else None,
        "prompt_version": explanation.prompt_version.number, "prompt_sha256": explanation.prompt_sha256,
        "model_sha256": explanation.model_sha256, "label": explanation.label,
        "probabilities": explanation.probabilities, "deciding_rules": explanation.deciding_numbers,
        "rules": explanation.rules,
    }


# --- job handlers -------------------------------------------------------------------------------------------


def decision_explain_job(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Explain the call or prediction named in the job's params."""
    call = ClassifyCall.objects.select_related("prompt_version", "task").filter(pk=job.params.get("call_id")).first()
    prediction = (Prediction.objects.select_related("run__prompt_version", "example")
                  .filter(pk=job.params.get("prediction_id")).first())
    explanation = decision_explain(call=call, prediction=prediction, user=job.created_by, progress=progress, job=job)
    url = (f"/calls/{call.pk}/#explanation" if call is not None
           else f"/evaluations/{prediction.run_id}/predictions/{prediction.pk}/")  # type: ignore[union-attr]
    return {"url": url, "explanation_id": explanation.pk,
            "message": "No single rule decides it." if not explanation.deciding_numbers else
            f"Rules whose removal changes the label: {', '.join(map(str, explanation.deciding_numbers))}"}
