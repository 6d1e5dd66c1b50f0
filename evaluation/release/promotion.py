"""The promotion gate and the services that put a prompt version into production (or roll back).

A version passes the gate only when, on the test split with the current student model:

(a) its macro-F1 beats the better of the majority-class baseline and the same model's zero-shot run
    on the same examples: the 95% interval of the paired bootstrap difference lies above zero;
(b) its rule adherence is above chance: the 95% Wilson interval of the adherence lies above 1/labels;
(c) its macro-F1 is not below the production version's (evaluated the same way) minus
    ``PLD_PROMOTION_MARGIN``.

The evidence cannot be chosen (issue 22): the task's test split is frozen when a version is first gated
(its SHA-256 on an append-only row and the ledger, ``rules.datasets.frozen_split``) and a changed split fails the gate;
only a run of the whole frozen split with the task's seed and the current model can gate, and of those the
*first complete* one (the first to finish) is judged, so re-running until a run passes, or running on a
friendlier subset, shows in the list of runs and changes nothing.

Missing evidence (no evaluation, no zero-shot run on the same examples, no adherence check) fails
its condition; it is never taken as passed. A failing gate is overridden only by two Admins: one
requests the override with a written justification (``promotion_override_request``), a different
one confirms it (``promotion_override_confirm``). Every promotion is a ``Promotion`` row, never
changed or deleted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from evaluation.models import EvaluationRun, Prediction, Promotion, PromotionOverride
from evaluation.runs.metrics import N_BOOTSTRAP, correctness_flips, macro_f1, paired_bootstrap_margin, proportion_ci
from evaluation.student.warm import JOB_KIND as WARM_JOB_KIND
from pldreview.accounts.services import second_person_refusal
from pldreview.jobs import job_start
from pldreview.models import Signature
from pldreview.signatures import Meaning, prompt_version_content_sha256, signature_check
from rules.audit import audited_save
from rules.datasets.frozen_split import TASK_SEED, frozen_test_split, split_freeze, split_sha256
from rules.models import Example, FrozenTestSplit, PromptVersion, Split, Task
from rules.student_model import student_model_sha256

# The paired bootstrap's seed: fixed, so the same runs always give the same verdict.
GATE_SEED = 0
TWO_ADMINS = (
    "A failing gate is overridden by two Admins: one requests the override with a written justification, "
    "a different Admin confirms it."
)


def version_test_runs(prompt_version: PromptVersion) -> list[EvaluationRun]:
    """Return every run of the version on the test split, whatever its status, in the order they were started."""
    return list(
        EvaluationRun.objects.filter(prompt_version=prompt_version, split=Split.TEST)
        .select_related("created_by").order_by("created_at", "id")
    )


def _why_not_gating(run: EvaluationRun, *, model_sha256: str, split_sha: str) -> str:
    """Return why a run of the version cannot be judged by the gate, or '' when it can."""
    if run.limit is not None:
        return f"limited to {run.limit} examples: a run with a limit never gates"
    if run.seed != TASK_SEED:
        return f"seed {run.seed}, not the task's seed {TASK_SEED}: never gates"
    if not split_sha or run.split_sha256 != split_sha:
        drawn = f" (SHA-256 {run.split_sha256[:12]}…)" if run.split_sha256 else " (not recorded)"
        return f"drawn from another test split than the frozen one{drawn}: never gates"
    if run.model_sha256 != model_sha256:
        return f"another student model (SHA-256 {run.model_sha256[:12]}…): gates only for that model"
    if run.status != EvaluationRun.Status.FINISHED:
        return f"{run.get_status_display().lower()}: not complete"
    if run.macro_f1 is None:
        return "finished without metrics: not complete"
    return ""


@dataclass(frozen=True)
class GateRunRow:
    """One run of a version on the test split as the gate page and the report list it: judged, or why not."""

    run: EvaluationRun
    judged: bool
    note: str


def gate_run_rows(*, prompt_version: PromptVersion, model_sha256: str, split_sha: str) -> list[GateRunRow]:
    """List every run of the version on the test split and mark the one the gate judges.

    The gate judges the first complete run (the first to finish) of the whole frozen split with the task's
    seed and the given model. Later complete runs are listed and never judged: re-running cannot change the
    verdict. A new student model has its own first complete run.
    """
    runs = version_test_runs(prompt_version)
    why = {run.pk: _why_not_gating(run, model_sha256=model_sha256, split_sha=split_sha) for run in runs}
    eligible = [run for run in runs if not why[run.pk]]
    judged = min(eligible, key=lambda r: (r.finished_at or r.created_at, r.pk), default=None)
    rows = []
    for run in runs:
        if judged is not None and run.pk == judged.pk:
            note = "judged by the gate: the first complete run of the whole frozen test split"
        elif why[run.pk]:
            note = why[run.pk]
        else:
            assert judged is not None
            note = f"complete after run #{judged.pk}: shown, never judged"
        rows.append(GateRunRow(run=run, judged=judged is not None and run.pk == judged.pk, note=note))
    return rows


def _gate_split_sha(task: Task) -> str:
    # Before the first gating the split that would be frozen is the current one.
    frozen = frozen_test_split(task)
    return frozen.sha256 if frozen is not None else split_sha256(task=task)[0]


def gate_run(*, prompt_version: PromptVersion, model_sha256: str) -> EvaluationRun | None:
    """Return the run the gate judges for a version and model: its first complete run of the frozen test split."""
    rows = gate_run_rows(prompt_version=prompt_version, model_sha256=model_sha256,
                         split_sha=_gate_split_sha(prompt_version.task))
    return next((row.run for row in rows if row.judged), None)


def _predicted(run: EvaluationRun) -> dict[int, str]:
    return dict(Prediction.objects.filter(run=run).values_list("example_id", "label"))


def _same_examples_zero_shot(run: EvaluationRun, statuses: list[str]) -> Any:
    # Same split, model and number of examples narrow it down; the example ids decide.
    return EvaluationRun.objects.filter(
        task_id=run.task_id, mode=EvaluationRun.Mode.ZERO_SHOT, status__in=statuses, split=run.split,
        model_sha256=run.model_sha256, n_examples=run.n_examples,
    ).order_by("-finished_at", "-created_at", "-id")


def zero_shot_baseline(*, run: EvaluationRun) -> EvaluationRun | None:
    """Return the first finished zero-shot run of the same model on exactly the examples a run predicted.

    The first, like the candidate's: re-running the baseline until it does worse changes nothing.
    """
    wanted = set(_predicted(run))
    if not wanted:
        return None
    candidates = _same_examples_zero_shot(run, [EvaluationRun.Status.FINISHED]).order_by("finished_at", "id")
    return next((c for c in candidates if set(_predicted(c)) == wanted), None)


def zero_shot_baseline_in_progress(*, run: EvaluationRun) -> EvaluationRun | None:
    """Return a queued or running zero-shot run of the same model on the same examples, if one was started."""
    wanted = set(_predicted(run))
    candidates = _same_examples_zero_shot(run, [EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING])
    return next((c for c in candidates if set(c.options.get("example_ids", [])) == wanted), None)


def majority_label(task: Task) -> str:
    """Return the most frequent gold label of the task's train split (the test split's if train is empty).

    Ties go to the label listed first in the task, so the baseline never depends on database order.
    """
    for split in (Split.TRAIN, Split.TEST):
        counts = Counter(Example.objects.filter(task=task, split=split).values_list("gold_label", flat=True))
        if counts:
            order = {name: i for i, name in enumerate(task.label_names)}
            return min(counts, key=lambda label: (-counts[label], order.get(label, len(order))))
    return task.label_names[0]


@dataclass
class GateCondition:
    """One condition of the gate: whether it holds, its figure and a plain sentence for the page."""

    key: str
    title: str
    passed: bool
    figure: str
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        """Return the condition as stored on a promotion or override record."""
        return {"key": self.key, "title": self.title, "passed": self.passed, "figure": self.figure,
                "sentence": self.sentence}


@dataclass
class GateResult:
    """The gate's verdict on one version and the evidence it looked at."""

    prompt_version: PromptVersion
    model_sha256: str
    margin: float
    candidate_run: EvaluationRun | None = None
    production: PromptVersion | None = None
    production_run: EvaluationRun | None = None
    zero_shot_run: EvaluationRun | None = None
    zero_shot_in_progress: EvaluationRun | None = None
    # The candidate has predictions but no zero-shot run covers its examples (the page offers to start one).
    zero_shot_missing: bool = False
    # The frozen test split, the hash of the split as it is now, and every run of the version on the test split.
    frozen: FrozenTestSplit | None = None
    split_sha256_now: str = ""
    n_test_examples: int = 0
    runs: list[GateRunRow] = field(default_factory=list)
    conditions: list[GateCondition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.conditions) and all(c.passed for c in self.conditions)

    @property
    def problems(self) -> list[str]:
        return [c.sentence for c in self.conditions if not c.passed]

    @property
    def failing(self) -> list[GateCondition]:
        return [c for c in self.conditions if not c.passed]

    @property
    def needs_zero_shot(self) -> bool:
        """Say whether the page should offer to start the zero-shot run on the candidate's examples."""
        return self.zero_shot_missing and self.zero_shot_in_progress is None

    @property
    def split_changed(self) -> bool:
        """Say whether the test split no longer hashes to the frozen one (a re-import or relabel)."""
        return self.frozen is not None and self.split_sha256_now != self.frozen.sha256

    @property
    def candidate_macro_f1(self) -> float | None:
        return self.candidate_run.macro_f1 if self.candidate_run else None

    @property
    def production_macro_f1(self) -> float | None:
        return self.production_run.macro_f1 if self.production_run else None

    def as_dict(self) -> dict[str, Any]:
        """Return the evidence as it is stored on the promotion record."""

        def ci(run: EvaluationRun | None) -> Any:
            return run.metrics.get("macro_f1_ci95") if run else None

        return {
            "passed": self.passed,
            "problems": self.problems,
            "conditions": [c.as_dict() for c in self.conditions],
            "notes": self.notes,
            "margin": self.margin,
            "split": Split.TEST.value,
            "model_sha256": self.model_sha256,
            "candidate_version": self.prompt_version.pk,
            "candidate_run": self.candidate_run.pk if self.candidate_run else None,
            "candidate_macro_f1": self.candidate_macro_f1,
            "candidate_macro_f1_ci95": ci(self.candidate_run),
            "zero_shot_run": self.zero_shot_run.pk if self.zero_shot_run else None,
            "production_prompt_version": self.production.pk if self.production else None,
            "production_run": self.production_run.pk if self.production_run else None,
            "production_macro_f1": self.production_macro_f1,
            "production_macro_f1_ci95": ci(self.production_run),
            "test_split_frozen_sha256": self.frozen.sha256 if self.frozen else "",
            "test_split_sha256": self.split_sha256_now,
            "test_split_changed": self.split_changed,
            "runs_on_test_split": [
                {"run": row.run.pk, "status": row.run.status, "seed": row.run.seed, "limit": row.run.limit,
                 "n_examples": row.run.n_examples, "macro_f1": row.run.macro_f1, "judged": row.judged,
                 "note": row.note}
                for row in self.runs
            ],
            **self.figures,
        }


def production_prompt_version(task: Task) -> PromptVersion | None:
    """Return the task's prompt version in production (None if it has none), read fresh from the database."""
    return PromptVersion.objects.in_production().filter(task=task).first()


def _test_split_condition(result: GateResult) -> GateCondition:
    title = "Test split unchanged since it was frozen"
    frozen, task = result.frozen, result.prompt_version.task
    if frozen is None:
        return GateCondition(
            "test_split", title, False, "no test examples",
            f"Task {task.name} has no test examples, so there is nothing to judge a version on. Import a test split.",
        )
    when = f"{frozen.created_at:%Y-%m-%d %H:%M} UTC"
    if result.split_changed:
        return GateCondition(
            "test_split", title, False, f"changed: frozen {frozen.sha256[:12]}…, now {result.split_sha256_now[:12]}…",
            f"The test split changed since it was frozen on {when}: it was frozen with SHA-256 {frozen.sha256} "
            f"({frozen.n_examples} examples) and now hashes to {result.split_sha256_now} "
            f"({result.n_test_examples} examples). Examples were added, removed or relabelled behind the gate; "
            "no run can be judged until the frozen split is restored.",
        )
    return GateCondition(
        "test_split", title, True, f"SHA-256 {frozen.sha256[:12]}…, {frozen.n_examples} examples",
        f"The test split is the one frozen on {when} (SHA-256 {frozen.sha256}, {frozen.n_examples} examples).",
    )


def _evaluated_condition(result: GateResult) -> GateCondition:
    run, version = result.candidate_run, result.prompt_version
    title = "Evaluated on the whole test split"
    if result.split_changed:
        return GateCondition(
            "evaluated", title, False, "test split changed",
            "No run is judged while the test split differs from the frozen one (see the next condition).",
        )
    if run is None:
        return GateCondition(
            "evaluated", title, False, "no complete run",
            f"Version {version.number} has no finished evaluation on the test split that can gate: a complete "
            f"run of the whole frozen test split with the task's seed ({TASK_SEED}) and the current student model "
            f"(SHA-256 {result.model_sha256[:12]}…). Run one without a limit first; runs with a limit or another "
            "seed are listed but never gate.",
        )
    later = sum(1 for row in result.runs if not row.judged and row.note.startswith("complete after"))
    again = f" {later} later complete run(s) are listed below and not judged." if later else ""
    return GateCondition(
        "evaluated", title, True, f"run #{run.pk}, {run.n_examples} examples",
        f"Run #{run.pk}, the first complete run of version {version.number} on the whole frozen test split "
        f"({run.n_examples} examples) with the current model, is the one judged.{again}",
    )


def _baselines_condition(result: GateResult) -> GateCondition:
    title = "Beats the majority-class and zero-shot baselines"
    run = result.candidate_run
    if run is None:
        return GateCondition("baselines", title, False, "—", "Without an evaluation the baselines cannot be compared.")
    predicted = _predicted(run)
    if not predicted:
        return GateCondition(
            "baselines", title, False, "no predictions",
            f"Run #{run.pk} has no stored predictions, so it cannot be compared with the baselines example by example.",
        )
    result.zero_shot_run = zero_shot_baseline(run=run)
    if result.zero_shot_run is None:
        result.zero_shot_missing = True
        result.zero_shot_in_progress = zero_shot_baseline_in_progress(run=run)
        waiting = (
            f" Zero-shot run #{result.zero_shot_in_progress.pk} is under way; reload when it has finished."
            if result.zero_shot_in_progress else " Start it from this page."
        )
        return GateCondition(
            "baselines", title, False, "zero-shot run missing",
            "There is no finished zero-shot run of the current model on the same test examples, so the version "
            "cannot be shown to beat it." + waiting,
        )
    labels = run.task.label_names
    ids = sorted(predicted)
    gold = dict(Example.objects.filter(pk__in=ids).values_list("pk", "gold_label"))
    zero_shot = _predicted(result.zero_shot_run)
    majority = majority_label(run.task)
    y_true = [gold[i] for i in ids]
    y_pred = [predicted[i] for i in ids]
    y_zero = [zero_shot[i] for i in ids]
    y_majority = [majority] * len(ids)
    f1 = macro_f1(y_true, y_pred, labels)
    f1_majority = macro_f1(y_true, y_majority, labels)
    f1_zero = macro_f1(y_true, y_zero, labels)
    low, high = paired_bootstrap_margin(y_true, y_pred, [y_majority, y_zero], labels, random_state=GATE_SEED)
    best_name, best = ("zero-shot", f1_zero) if f1_zero >= f1_majority else (f"always {majority}", f1_majority)
    result.figures.update(
        macro_f1_on_paired_examples=round(f1, 4), majority_label=majority,
        majority_macro_f1=round(f1_majority, 4), zero_shot_macro_f1=round(f1_zero, 4),
        margin_over_baselines_ci95=[low, high], paired_examples=len(ids),
        bootstrap={"resamples": N_BOOTSTRAP, "seed": GATE_SEED},
    )
    figure = (
        f"macro-F1 {f1:.3f} vs {best:.3f} ({best_name}); difference 95% CI {low:+.3f} to {high:+.3f}"
    )
    if low > 0:
        return GateCondition(
            "baselines", title, True, figure,
            f"On the same {len(ids)} examples the version beats both baselines (always {majority}: "
            f"{f1_majority:.3f}; zero-shot run #{result.zero_shot_run.pk}: {f1_zero:.3f}) with the whole 95% "
            "interval of the difference above zero.",
        )
    return GateCondition(
        "baselines", title, False, figure,
        f"Macro-F1 {f1:.3f} does not beat the better baseline ({best_name}, {best:.3f}) on the same {len(ids)} "
        f"examples: the 95% interval of the difference, {low:+.3f} to {high:+.3f}, does not lie above zero.",
    )


def _adherence_condition(result: GateResult) -> GateCondition:
    title = "Follows its rules better than chance"
    run = result.candidate_run
    if run is None:
        return GateCondition("adherence", title, False, "—", "Without an evaluation adherence cannot be judged.")
    chance = 1.0 / max(len(run.task.label_names), 1)
    n = int(run.adherence.get("n") or 0)
    if run.rule_adherence is None or n == 0:
        why = run.adherence.get("warning") or "the evaluation did not measure it"
        return GateCondition(
            "adherence", title, False, "not measured",
            f"Rule adherence was not measured on run #{run.pk} ({why}), so the decisions cannot be attributed "
            "to the rules.",
        )
    followed = round(run.rule_adherence * n)
    low, high = proportion_ci(followed, n)
    result.figures.update(rule_adherence=run.rule_adherence, adherence_n=n, adherence_ci95=[low, high],
                          adherence_chance=round(chance, 4))
    figure = f"{run.rule_adherence:.2f} ({followed} of {n}; 95% CI {low:.2f}–{high:.2f}), chance {chance:.2f}"
    if low > chance:
        return GateCondition(
            "adherence", title, True, figure,
            f"With every rule's label swapped, {followed} of {n} decisions moved with the rules; the whole 95% "
            f"interval lies above chance ({chance:.0%}).",
        )
    return GateCondition(
        "adherence", title, False, figure,
        f"Rule adherence {run.rule_adherence:.2f} ({followed} of {n}) is not above chance ({chance:.2f}) with its "
        f"95% interval ({low:.2f}–{high:.2f}): the decisions cannot be attributed to the approved rules.",
    )


def _production_condition(result: GateResult) -> GateCondition:
    title = "Not worse than production"
    version = result.prompt_version
    production = production_prompt_version(version.task)
    if production is None:
        result.notes.append("No version is in production yet; there is nothing to compare against.")
        return GateCondition("production", title, True, "none in production",
                             "No version is in production yet, so there is nothing to fall behind.")
    if production.pk == version.pk:
        return GateCondition("production", title, True, "this version", "This version is the one in production.")
    result.production = production
    result.production_run = gate_run(prompt_version=production, model_sha256=result.model_sha256)
    if result.production_run is None:
        return GateCondition(
            "production", title, False, "production not evaluated",
            f"The production version {production.number} has no complete evaluation of the whole frozen test split "
            "with the current student model, so the two cannot be compared. Evaluate it too.",
        )
    if result.candidate_run is None:
        return GateCondition("production", title, False, "—", "Without an evaluation the versions cannot be compared.")
    candidate, current = result.candidate_macro_f1, result.production_macro_f1
    assert candidate is not None and current is not None
    if result.candidate_run.data_sha256 != result.production_run.data_sha256:
        result.notes.append("The two runs scored different examples (their limit or seed differ).")
    figure = f"{candidate:.3f} vs {current:.3f} (margin {result.margin:.3f})"
    if candidate < current - result.margin:
        return GateCondition(
            "production", title, False, figure,
            f"Macro-F1 {candidate:.3f} is below the production version's {current:.3f}"
            + (f" minus the margin {result.margin:.3f}." if result.margin else "."),
        )
    return GateCondition(
        "production", title, True, figure,
        f"Macro-F1 {candidate:.3f} is not below the production version {production.number}'s {current:.3f}"
        + (f" minus the margin {result.margin:.3f}." if result.margin else "."),
    )


def gate_evidence(
    *, prompt_version: PromptVersion, model_sha256: str | None = None
) -> tuple[FrozenTestSplit | None, str, int, list[GateRunRow]]:
    """Return, without writing anything, the task's frozen test split, the split's hash and size now, and
    every run of the version on the test split with the one the gate judges marked (the report shows these)."""
    task = prompt_version.task
    frozen = frozen_test_split(task)
    now, n_now = split_sha256(task=task)
    rows = gate_run_rows(
        prompt_version=prompt_version, model_sha256=model_sha256 or student_model_sha256(),
        split_sha=frozen.sha256 if frozen is not None else now,
    )
    return frozen, now, n_now, rows


def promotion_gate(*, prompt_version: PromptVersion, user: AbstractBaseUser | None = None) -> GateResult:
    """Check whether a version may go to production without an override, and collect the evidence.

    The first gating of any version of a task freezes the task's test split (``rules.datasets.frozen_split``).
    """
    sha = student_model_sha256()
    result = GateResult(prompt_version=prompt_version, model_sha256=sha, margin=settings.PLD_PROMOTION_MARGIN)
    split_freeze(task=prompt_version.task, user=user, prompt_version=prompt_version)
    result.frozen, result.split_sha256_now, result.n_test_examples, result.runs = gate_evidence(
        prompt_version=prompt_version, model_sha256=sha
    )
    if not result.split_changed:
        result.candidate_run = next((row.run for row in result.runs if row.judged), None)
    result.conditions = [
        _evaluated_condition(result),
        _test_split_condition(result),
        _baselines_condition(result),
        _adherence_condition(result),
        _production_condition(result),
    ]
    return result


@transaction.atomic
def gate_baseline_start(*, prompt_version: PromptVersion, user: AbstractBaseUser) -> EvaluationRun:
    """Start the zero-shot run the gate needs, on the candidate run's examples; return it (or the one running)."""
    from evaluation.runs.services import evaluation_run_start

    if not user.has_perm("evaluation.run_evaluation"):
        raise PermissionDenied("Only users who may run evaluations start a baseline.")
    run = gate_run(prompt_version=prompt_version, model_sha256=student_model_sha256())
    if run is None:
        raise ValidationError(f"Version {prompt_version.number} has no test evaluation yet; evaluate it first.")
    existing = zero_shot_baseline(run=run) or zero_shot_baseline_in_progress(run=run)
    if existing is not None:
        return existing
    # Same split, limit and seed select the same examples; the gate then checks they really are the same.
    baseline = evaluation_run_start(
        user=user, task=run.task, mode=EvaluationRun.Mode.ZERO_SHOT, split=run.split, limit=run.limit,
        seed=run.seed,
    )
    if set(baseline.options.get("example_ids", [])) != set(_predicted(run)):
        raise ValidationError(
            "The test split changed since the version was evaluated, so a zero-shot run cannot cover the same "
            "examples. Evaluate the version again first."
        )
    return baseline


@dataclass(frozen=True)
class Flip:
    """An example one version gets right and the other wrong."""

    example_id: int
    gold_label: str
    old_label: str
    new_label: str
    fixed: bool


def flipped_examples(*, old_run: EvaluationRun, new_run: EvaluationRun, limit: int = 50) -> list[Flip]:
    """Return the examples whose correctness differs between two runs (fixed ones first)."""
    old = {p.example_id: p for p in Prediction.objects.filter(run=old_run).only("example_id", "label", "correct")}
    new = {p.example_id: p for p in Prediction.objects.filter(run=new_run).select_related("example")}
    flips = correctness_flips({i: p.correct for i, p in old.items()}, {i: p.correct for i, p in new.items()})
    return [
        Flip(example_id=i, gold_label=new[i].example.gold_label, old_label=old[i].label, new_label=new[i].label,
             fixed=fixed)
        for fixed, ids in ((True, flips.wrong_to_right), (False, flips.right_to_wrong))
        for i in sorted(ids)
    ][:limit]


def earlier_promotions(prompt_version: PromptVersion) -> list[Promotion]:
    """Return every promotion that put this version into production before, newest first, with who signed and
    whether a gate override took it there (a rollback to it shows them and leaves them standing)."""
    return list(Promotion.objects.filter(prompt_version=prompt_version)
                .select_related("promoted_by", "override_requested_by", "signature", "evaluation_run", "from_version")
                .order_by("-created_at", "-id"))


def _is_rollback(version: PromptVersion, previous: PromptVersion | None) -> bool:
    # A rollback goes back to a version that was in production before: its earlier promotion passed the gate or
    # was overridden by two Admins then, and that record stands. An older version never in production is new to
    # production, whatever its number, and goes through the gate.
    return previous is not None and previous.pk != version.pk and Promotion.objects.filter(
        prompt_version=version).exists()


def is_rollback(prompt_version: PromptVersion) -> bool:
    """Say whether putting this version into production now is a rollback: it was in production before."""
    return _is_rollback(prompt_version, production_prompt_version(prompt_version.task))


def promotion_meaning(prompt_version: PromptVersion) -> str:
    """Return what putting this version into production means now: "Promoted to production" or "Rolled back"."""
    return Meaning.ROLLED_BACK if is_rollback(prompt_version) else Meaning.PROMOTED


def _save_version_status(version: PromptVersion, *, status: str, user: AbstractBaseUser, reason: str) -> None:
    version.status = status
    # Only the status is written: every other column of a prompt version is immutable (database triggers).
    audited_save(version, user=user, reason=reason, update_fields=["status"])


def _require_admin(user: AbstractBaseUser) -> None:
    if not user.has_perm("evaluation.promote_prompt"):
        raise PermissionDenied("Only Admins promote prompt versions.")


def _lock_version(prompt_version: PromptVersion) -> PromptVersion:
    # One promotion of a task at a time: the second waits, then sees the first's result.
    Task.objects.select_for_update().get(pk=prompt_version.task_id)
    version = PromptVersion.objects.select_related("task").get(pk=prompt_version.pk)
    if version.status == PromptVersion.Status.PRODUCTION:
        raise ValidationError(f"Version {version.number} is already in production.")
    return version


def _promote(
    *, version: PromptVersion, user: AbstractBaseUser, reason: str, gate: GateResult,
    signature: Signature | None, override: PromotionOverride | None = None,
) -> Promotion:
    previous = gate.production or production_prompt_version(version.task)
    rollback = _is_rollback(version, previous)
    if override is None:
        meaning = Meaning.ROLLED_BACK if rollback else Meaning.PROMOTED
        signature_check(signature, user=user, meanings=meaning,
                        content_sha256=prompt_version_content_sha256(version.text))
    evidence = gate.as_dict()
    evidence["overridden"] = override is not None
    earlier = earlier_promotions(version)[0] if rollback else None
    if earlier is not None:
        # The gate's verdict today is kept for the record; the version's standing evidence is its earlier promotion.
        evidence["rollback_of_promotion"] = earlier.pk
        evidence["gate_required"] = False
    what = "Rolled back to" if rollback else "Promoted"
    if previous is not None:
        _save_version_status(
            previous, status=PromptVersion.Status.RETIRED, user=user,
            reason=f"Retired: v{version.number} went to production",
        )
    suffix = f" (gate overridden, requested by {override.requested_by})" if override is not None else ""
    _save_version_status(
        version, status=PromptVersion.Status.PRODUCTION, user=user, reason=f"{what}: {reason}{suffix}"
    )
    promotion = Promotion(
        task=version.task,
        prompt_version=version,
        from_version=previous,
        # A rollback names the run that gated the version when it was first promoted (drift compares against it).
        evaluation_run=(earlier.evaluation_run if earlier is not None else None) or gate.candidate_run,
        is_rollback=rollback,
        reason=reason,
        override_justification=override.justification if override is not None else "",
        override=override,
        override_requested_by=override.requested_by if override is not None else None,
        gate=evidence,
        promoted_by=user,
        signature=signature,
    )
    audited_save(promotion, user=user, reason=f"{what} v{version.number}{suffix}")
    transaction.on_commit(lambda: _warm_state_save_start(promotion))
    return promotion


def _warm_state_save_start(promotion: Promotion) -> None:
    """Queue the job that saves the promoted version's warm-start state, so API processes restore it (seconds)."""
    job_start(
        kind=WARM_JOB_KIND,
        title=f"Save the student's warm-start state for {promotion.prompt_version}",
        params={"prompt_version_id": promotion.prompt_version_id},
    )


@transaction.atomic
def prompt_version_promote(
    *, prompt_version: PromptVersion, user: AbstractBaseUser, reason: str, signature: Signature | None = None,
) -> Promotion:
    """Put a version that passes the gate into production, or roll back to one that was in production before,
    retiring the previous one; return the audit record.

    It is a signing: the Admin's signature must mean "Promoted to production" (or "Rolled back") and be
    over the version's text. A rollback is this one signed action whatever the gate says today: the version's
    earlier promotion (gate passed, or overridden by two Admins) stands. Only a version never in production needs
    the gate or the two-Admin override.
    """
    _require_admin(user)
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why this version should go to production."})
    version = _lock_version(prompt_version)
    gate = promotion_gate(prompt_version=version, user=user)
    if not gate.passed and not _is_rollback(version, gate.production or production_prompt_version(version.task)):
        raise ValidationError({"override_justification": [*gate.problems, TWO_ADMINS]})
    return _promote(version=version, user=user, reason=reason, gate=gate, signature=signature)


def pending_override(prompt_version: PromptVersion) -> PromotionOverride | None:
    """Return the override request of a version that waits for a second Admin, if there is one."""
    return (
        PromotionOverride.objects.select_related("requested_by")
        .filter(prompt_version=prompt_version, status=PromotionOverride.Status.PENDING)
        .first()
    )


@transaction.atomic
def promotion_override_request(
    *, prompt_version: PromptVersion, user: AbstractBaseUser, reason: str, justification: str,
    signature: Signature | None = None,
) -> PromotionOverride:
    """Ask a second Admin to promote a version whose gate fails, with the failing figures and a justification.

    It is a signing: the requester's signature means "Gate override requested", over the version's text.
    """
    _require_admin(user)
    reason, justification = reason.strip(), justification.strip()
    errors = {}
    if not reason:
        errors["reason"] = "Say why this version should go to production."
    if not justification:
        errors["override_justification"] = "Say why promoting against the failing gate is right."
    if errors:
        raise ValidationError(errors)
    version = _lock_version(prompt_version)
    if is_rollback(version):
        raise ValidationError(
            f"Version {version.number} was in production before: roll back to it with one signature, no override."
        )
    signature_check(signature, user=user, meanings=Meaning.GATE_OVERRIDE_REQUESTED,
                    content_sha256=prompt_version_content_sha256(version.text))
    waiting = pending_override(version)
    if waiting is not None:
        raise ValidationError(
            f"{waiting.requested_by} already asked to override the gate for version {version.number}; "
            "a different Admin confirms or withdraws that request."
        )
    gate = promotion_gate(prompt_version=version, user=user)
    if gate.passed:
        raise ValidationError("The gate passes: promote the version without an override.")
    override = PromotionOverride(
        task=version.task, prompt_version=version, reason=reason, justification=justification,
        gate=gate.as_dict(), requested_by=user, request_signature=signature,
    )
    audited_save(override, user=user, reason=f"Override of the gate for v{version.number} requested")
    return override


@transaction.atomic
def promotion_override_confirm(
    *, override: PromotionOverride, user: AbstractBaseUser, signature: Signature | None = None,
) -> Promotion:
    """Confirm another Admin's override request as a second Admin and promote the version; return the record.

    It is a signing: the confirmer's signature means "Gate override confirmed", over the version's text; the
    promotion it makes carries the same signature.
    """
    _require_admin(user)
    override = PromotionOverride.objects.select_for_update().select_related("requested_by").get(pk=override.pk)
    if override.status != PromotionOverride.Status.PENDING:
        raise ValidationError(f"This override request is {override.get_status_display().lower()}; ask again.")
    if override.requested_by_id == user.pk:
        raise ValidationError(
            "You requested this override yourself; a different Admin must confirm it (four eyes)."
        )
    if cooldown := second_person_refusal(user):
        raise ValidationError(cooldown)
    version = _lock_version(override.prompt_version)
    signature_check(signature, user=user, meanings=Meaning.GATE_OVERRIDE_CONFIRMED,
                    content_sha256=prompt_version_content_sha256(version.text))
    gate = promotion_gate(prompt_version=version, user=user)
    if gate.passed:
        raise ValidationError("The gate passes now: promote the version without an override.")
    override.status = PromotionOverride.Status.CONFIRMED
    override.confirmed_by = user
    override.confirmed_at = timezone.now()
    override.confirm_signature = signature
    audited_save(override, user=user, reason=f"Override of the gate for v{version.number} confirmed")
    return _promote(version=version, user=user, reason=override.reason, gate=gate, override=override,
                    signature=signature)


@transaction.atomic
def promotion_override_withdraw(*, override: PromotionOverride, user: AbstractBaseUser) -> PromotionOverride:
    """Withdraw a pending override request (any Admin may), so the version can be asked for again."""
    _require_admin(user)
    override = PromotionOverride.objects.select_for_update().get(pk=override.pk)
    if override.status != PromotionOverride.Status.PENDING:
        raise ValidationError(f"This override request is already {override.get_status_display().lower()}.")
    override.status = PromotionOverride.Status.WITHDRAWN
    override.withdrawn_by = user
    override.withdrawn_at = timezone.now()
    audited_save(override, user=user, reason="Override request withdrawn")
    return override
