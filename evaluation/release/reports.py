"""Signed PDF audit reports for a prompt version: gather, render with WeasyPrint, sign, check, store.

The report states what is in a prompt version, who decided on every rule in it and why, how it
performed against the baselines, and how it reached production. It is rendered from
``templates/evaluation/report_pdf.html``, signed with the instance's identity (see ``signing.py``),
validated again right after signing, and kept under ``MEDIA_ROOT/reports/`` with its SHA-256 so a
copy handed out months ago can be matched. A report is never overwritten: regenerating makes a
new record.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.template.loader import render_to_string

from evaluation.models import EvaluationRun, Promotion, Report, ServingStop
from evaluation.production.serving_stops import task_stops
from evaluation.release.pdf_signing import (
    SIGN_OFF_FIELD,
    SigningError,
    SigningIdentity,
    pdf_sign,
    pdf_signature_validate,
    pdf_signatures_validate,
    signing_identity_load,
    signing_passphrase,
)
from evaluation.release.promotion import GateRunRow, gate_evidence
from evaluation.release.trends import task_trend, trend_chart
from evaluation.runs.metrics import confusion_rows
from pldreview.jobs import JobCancelled, JobProgress, job_start
from pldreview.ledger import LEDGER_ANCHOR_LABEL, ledger_head
from pldreview.models import Signature
from pldreview.signatures import Meaning, report_content_sha256, signature_check
from rules.audit import audited_save
from rules.membership import task_is_visible
from rules.models import Decision, PromptVersion, PromptVersionRule, Rule, RuleRevision, Split
from rules.student_model import ModelFileError, student_model_sha256

logger = logging.getLogger(__name__)

JOB_KIND = "report"
REPORTS_DIR = "reports"
BASELINE_MODES = (EvaluationRun.Mode.ZERO_SHOT, EvaluationRun.Mode.FEW_SHOT, EvaluationRun.Mode.COT)


class ReportError(Exception):
    """A report could not be produced or failed its own signature check."""


# --- gathering ---------------------------------------------------------------------------------


def _user_display(user: Any) -> str:
    if user is None:
        return "—"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _decision_signature(decision: Decision) -> str:
    """Return the decision's signature manifestation, or say why it has none."""
    if decision.signature_id:
        return decision.signature.manifestation
    if decision.action in Decision.SIGNED_ACTIONS:
        return "No electronic signature: recorded before signatures were required."
    return ""


def _rule_history(rule: Rule) -> list[dict[str, Any]]:
    """Return the rule's proposal, revisions and decisions as one timeline, oldest first."""
    revisions = list(rule.revisions.all())
    decisions = list(rule.decisions.all())
    edited_revision_ids = {d.revision_id for d in decisions if d.action == Decision.Action.EDIT}
    has_create = any(d.action == Decision.Action.CREATE for d in decisions)
    events: list[dict[str, Any]] = []
    for revision in revisions:
        is_first = revision.number == 1
        if (is_first and has_create) or revision.pk in edited_revision_ids:
            continue  # the decision row tells the same event, with the reviewer
        events.append(
            {
                "when": revision.created_at,
                "action": "Proposed" if is_first else f"Revised (r{revision.number})",
                "who": _user_display(revision.author) if revision.author_id else "",
                "model": revision.author_model,
                "reason": revision.reason,
                "revision": revision.number,
                "text": revision.text,
                "label": revision.label,
                "status_change": "",
            }
        )
    for decision in decisions:
        revision = decision.revision
        shows_text = decision.action in (Decision.Action.EDIT, Decision.Action.CREATE)
        status_change = ""
        if decision.status_before != decision.status_after:
            status_change = f"{decision.status_before or 'new'} → {decision.status_after}"
        action = decision.get_action_display()
        if decision.action == Decision.Action.EDIT and revision is not None:
            action = f"Edited (r{revision.number})"
        if decision.undoes_id:
            action = f"Undid decision #{decision.undoes_id}"
        events.append(
            {
                "when": decision.created_at,
                "action": action,
                "who": _user_display(decision.reviewer),
                "model": "",
                "reason": decision.reason,
                "signature": _decision_signature(decision),
                "revision": revision.number if revision is not None else None,
                "text": revision.text if shows_text and revision is not None else "",
                "label": revision.label if shows_text and revision is not None else "",
                "status_change": status_change,
            }
        )
    events.sort(key=lambda e: e["when"])
    return events


def _rules_data(prompt_version: PromptVersion) -> list[dict[str, Any]]:
    entries = (
        PromptVersionRule.objects.filter(prompt_version=prompt_version)
        .select_related("revision", "revision__author", "rule", "rule__proposed_by", "rule__clustering_run")
        .prefetch_related(
            Prefetch("rule__revisions", queryset=RuleRevision.objects.select_related("author").order_by("number")),
            Prefetch(
                "rule__decisions",
                queryset=Decision.objects.select_related("reviewer", "revision", "signature")
                .order_by("created_at", "id"),
            ),
        )
        .order_by("position")
    )
    rules = []
    for entry in entries:
        rule, revision = entry.rule, entry.revision
        rules.append(
            {
                "position": entry.position,
                "anchor": f"rule-{entry.position}",
                "rule_id": rule.pk,
                "revision": revision.number,
                "text": revision.text,
                "label": revision.label,
                "topic": revision.topic,
                "precedence_note": revision.precedence_note,
                "origin": rule.get_origin_display(),
                "proposer": rule.proposer_display,
                "proposed_by_model": rule.proposed_by_model,
                "teacher_endpoint": rule.teacher_endpoint,
                "support": rule.support,
                "diagnosis": rule.get_diagnosis_display() if rule.diagnosis else "",
                "status_now": rule.get_status_display(),
                "current_revision": rule.current_revision_id == revision.pk,
                "history": _rule_history(rule),
            }
        )
    return rules


def _shaded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shade each confusion cell for print: the larger its share of the gold label's examples, the darker."""
    for row in rows:
        for cell in row["cells"]:
            cell["alpha"] = f"{0.08 + 0.8 * cell['share']:.2f}" if cell["count"] else "0"
            cell["dark"] = cell["share"] > 0.55
    return rows


def _run_data(run: EvaluationRun, labels: list[str]) -> dict[str, Any]:
    metrics = run.metrics or {}
    ci = metrics.get("macro_f1_ci95") or []
    per_class = metrics.get("per_class") or {}
    run_labels = metrics.get("labels") or labels
    adherence = run.adherence or {}
    chance = adherence.get("chance") or (1.0 / len(labels) if labels else 0.0)
    low_adherence = bool(adherence.get("warning")) or (
        run.rule_adherence is not None and run.rule_adherence <= chance
    )
    return {
        "id": run.pk,
        "mode": run.get_mode_display(),
        "mode_key": run.mode,
        "split": run.get_split_display(),
        "n": metrics.get("n", run.n_examples),
        "macro_f1": metrics.get("macro_f1"),
        "ci_low": ci[0] if len(ci) == 2 else None,
        "ci_high": ci[1] if len(ci) == 2 else None,
        "accuracy": metrics.get("accuracy"),
        "latency_p50": metrics.get("latency_ms_p50"),
        "latency_p95": metrics.get("latency_ms_p95"),
        "n_refused": metrics.get("n_refused"),
        "per_class": [
            {"label": label, **per_class[label]} for label in run_labels if isinstance(per_class.get(label), dict)
        ],
        "confusion": _shaded(confusion_rows(run_labels, metrics.get("confusion") or [])),
        "confusion_labels": run_labels,
        "model_name": run.model_name or Path(run.model_path).name,
        "model_sha256": run.model_sha256,
        "quantization": run.quantization,
        "data_sha256": run.data_sha256,
        "limit": run.limit,
        "seed": run.seed,
        "k_shot": run.k_shot,
        "finished_at": run.finished_at,
        "rule_adherence": run.rule_adherence,
        "adherence_chance": chance,
        "adherence_warning": adherence.get("warning", "") if low_adherence else "",
        "low_adherence": low_adherence,
    }


def _evaluation_runs(
    prompt_version: PromptVersion, judged: EvaluationRun | None = None
) -> tuple[EvaluationRun | None, list[EvaluationRun]]:
    """Return the run the gate judges for this version (else its latest finished pld run, test split first) and
    the latest baselines beside it."""
    finished = EvaluationRun.objects.filter(task=prompt_version.task, status=EvaluationRun.Status.FINISHED)
    own = finished.filter(prompt_version=prompt_version, mode=EvaluationRun.Mode.PLD).order_by("-finished_at", "-id")
    pld = judged or own.filter(split=Split.TEST).first() or own.first()
    split = pld.split if pld is not None else Split.TEST
    baselines = []
    for mode in BASELINE_MODES:
        run = finished.filter(mode=mode, split=split).order_by("-finished_at", "-id").first()
        if run is not None:
            baselines.append(run)
    return pld, baselines


def _gate_data(prompt_version: PromptVersion) -> tuple[dict[str, Any], EvaluationRun | None]:
    """Return the frozen test split, the split now and every run of the version on it, as the gate sees them."""
    try:
        model_sha256 = student_model_sha256()
    except ModelFileError:
        # Without the student model file no run is "the current model's": the runs are listed, none judged.
        model_sha256 = "-"
    frozen, now, n_now, rows = gate_evidence(prompt_version=prompt_version, model_sha256=model_sha256)

    def row_data(row: GateRunRow) -> dict[str, Any]:
        run = row.run
        return {
            "id": run.pk, "started_at": run.created_at, "status": run.get_status_display(),
            "finished_at": run.finished_at, "by": _user_display(run.created_by) if run.created_by_id else "—",
            "seed": run.seed, "limit": run.limit, "n": run.n_examples, "macro_f1": run.macro_f1,
            "model_sha256": run.model_sha256, "judged": row.judged, "note": row.note,
        }

    judged = next((row.run for row in rows if row.judged), None)
    return {
        "frozen": frozen is not None,
        "frozen_sha256": frozen.sha256 if frozen else "",
        "frozen_n": frozen.n_examples if frozen else 0,
        "frozen_at": frozen.created_at if frozen else None,
        "sha256_now": now,
        "n_now": n_now,
        "changed": frozen is not None and frozen.sha256 != now,
        "runs": [row_data(row) for row in rows],
        "judged_run": judged.pk if judged else None,
    }, judged


def _f1_chart(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Lay out a horizontal bar chart of macro-F1 with its 95% interval, as SVG coordinates."""
    width, left, bar_h, gap = 460, 150, 18, 10
    scale = width - left - 20
    bars = []
    for i, run in enumerate(r for r in runs if r["macro_f1"] is not None):
        y = 10 + i * (bar_h + gap)
        bar = {
            "label": run["mode"],
            "y": y,
            "text_y": y + bar_h - 4,
            "width": round(float(run["macro_f1"]) * scale, 1),
            "value": f"{float(run['macro_f1']):.3f}",
            "value_x": left + round(float(run["macro_f1"]) * scale, 1) + 4,
            "pld": run["mode_key"] == EvaluationRun.Mode.PLD,
        }
        if run["ci_low"] is not None and run["ci_high"] is not None:
            bar.update(
                ci_x1=left + round(float(run["ci_low"]) * scale, 1),
                ci_x2=left + round(float(run["ci_high"]) * scale, 1),
                ci_y=y + bar_h / 2,
            )
        bars.append(bar)
    height = 20 + len(bars) * (bar_h + gap)
    ticks = [{"x": left + round(t * scale, 1), "label": f"{t:.1f}"} for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    return {"width": width, "height": height + 14, "left": left, "bars": bars, "ticks": ticks, "axis_y": height}


def _trend(task: Any) -> dict[str, Any] | None:
    trend = task_trend(task)
    return {"trend": trend, "chart": trend_chart(trend), "task": task} if trend else None


def _figure(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def _ci(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f" (95% CI {float(value[0]):.3f}–{float(value[1]):.3f})"
    return ""


def gate_sentences(gate: Any) -> dict[str, Any]:
    """Return a promotion's stored gate evidence as readable sentences: the verdict, the figures, each condition.

    Never a dump of the stored fields: a field this function does not know is left out, not printed raw.
    """
    if not isinstance(gate, dict) or not gate:
        return {"verdict": "not recorded", "figures": [], "conditions": []}
    verdict = "passed" if gate.get("passed") is True else "failed" if gate.get("passed") is False else "not recorded"
    figures = []
    if gate.get("candidate_macro_f1") is not None:
        run = f", run {gate['candidate_run']}" if gate.get("candidate_run") else ""
        figures.append(f"Candidate macro-F1 {_figure(gate['candidate_macro_f1'])}"
                       f"{_ci(gate.get('candidate_macro_f1_ci95'))}{run}")
    if gate.get("production_macro_f1") is not None:
        figures.append(f"Version in production before: macro-F1 {_figure(gate['production_macro_f1'])}"
                       f"{_ci(gate.get('production_macro_f1_ci95'))}")
    if gate.get("test_split_frozen_sha256"):
        changed = " — changed since it was frozen" if gate.get("test_split_changed") else ""
        figures.append(f"Frozen test split SHA-256 {str(gate['test_split_frozen_sha256'])[:16]}…{changed}")
    conditions = [
        {"passed": bool(c.get("passed")), "title": str(c.get("title") or c.get("key") or "condition"),
         "figure": str(c.get("figure") or ""), "sentence": str(c.get("sentence") or "")}
        for c in gate.get("conditions", []) if isinstance(c, dict)
    ]
    if not conditions:
        conditions = [{"passed": False, "title": str(problem), "figure": "", "sentence": ""}
                      for problem in gate.get("problems", []) or []]
    return {"verdict": verdict, "figures": figures, "conditions": conditions}


def _manifestation(signature: Any) -> str:
    return signature.manifestation if signature is not None else ""


def _promotions_data(prompt_version: PromptVersion) -> list[dict[str, Any]]:
    promotions = (
        Promotion.objects.filter(task=prompt_version.task)
        .select_related(
            "prompt_version", "from_version", "promoted_by", "evaluation_run", "override_requested_by", "signature",
            "override__request_signature", "override__confirm_signature",
        )
        .order_by("created_at", "id")
    )
    rows = []
    for promotion in promotions:
        gate = promotion.gate if isinstance(promotion.gate, dict) else {}
        override = promotion.override if promotion.override_id else None
        rows.append(
            {
                "when": promotion.created_at,
                "to": f"v{promotion.prompt_version.number}",
                "to_id": promotion.prompt_version_id,
                "from": f"v{promotion.from_version.number}" if promotion.from_version else "—",
                "concerns_this": prompt_version.pk in (promotion.prompt_version_id, promotion.from_version_id),
                "is_rollback": promotion.is_rollback,
                "by": _user_display(promotion.promoted_by),
                "signature": _manifestation(promotion.signature) if promotion.signature_id else "",
                "override_signature": (
                    _manifestation(override.request_signature) if override and override.request_signature_id else ""
                ),
                "override_confirm_signature": (
                    _manifestation(override.confirm_signature) if override and override.confirm_signature_id else ""
                ),
                "reason": promotion.reason,
                "override_justification": promotion.override_justification,
                "override_requested_by": (
                    _user_display(promotion.override_requested_by) if promotion.override_requested_by else ""
                ),
                # The figures that failed when a second Admin confirmed the override.
                "failing": [
                    f"{c.get('title')}: {c.get('figure')}. {c.get('sentence')}"
                    for c in gate.get("conditions", []) if isinstance(c, dict) and not c.get("passed")
                ] or list(gate.get("problems", [])),
                "evaluation_run": promotion.evaluation_run_id,
                "gate": gate_sentences(gate),
            }
        )
    return rows


def report_stops(task: Any) -> list[dict[str, Any]]:
    """Return the task's production stops, oldest first: ``since``, ``by``, ``reason``, and ``resumed_at`` (None while
    stopped) and ``resumed_by``; names are the printed names as signed."""
    rows = task_stops(task)
    resumes = {row.lifts_id: row for row in rows if row.action == ServingStop.Action.RESUME}
    stops = []
    for row in rows:
        if row.action != ServingStop.Action.STOP:
            continue
        resume = resumes.get(row.pk)
        stops.append({
            "since": row.created_at, "by": row.signature.full_name, "reason": row.reason,
            "resumed_at": resume.created_at if resume else None,
            "resumed_by": resume.signature.full_name if resume else "",
        })
    return stops


def _cover(prompt_version: PromptVersion, promotions: list[dict[str, Any]], rules: list[dict[str, Any]],
           stops: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Return what the cover states: how the version reached production, the stops and the people's signatures."""
    to_this = [p for p in promotions if p["to_id"] == prompt_version.pk]
    latest = to_this[-1] if to_this else None
    if latest is None:
        production = {"state": "never", "sentence": "Never promoted to production."}
    elif latest["override_justification"]:
        production = {
            "state": "overridden",
            "sentence": (f"The promotion gate failed and two Admins overrode it: requested by "
                         f"{latest['override_requested_by']}, confirmed by {latest['by']} on "
                         f"{latest['when']:%Y-%m-%d %H:%M} UTC."),
            "justification": latest["override_justification"],
            "failing": [c["title"] + (f": {c['figure']}" if c["figure"] else "")
                        for c in latest["gate"]["conditions"] if not c["passed"]],
        }
    elif latest["is_rollback"]:
        production = {"state": "rollback", "sentence": (
            f"Rolled back to this version by {latest['by']} on {latest['when']:%Y-%m-%d %H:%M} UTC; the gate "
            f"evidence of this promotion: {latest['gate']['verdict']}.")}
    elif latest["gate"]["verdict"] == "passed":
        production = {"state": "passed", "sentence": (
            f"The promotion gate passed (every condition held); promoted by {latest['by']} on "
            f"{latest['when']:%Y-%m-%d %H:%M} UTC.")}
    else:
        production = {"state": "unknown", "sentence": (
            f"Promoted by {latest['by']} on {latest['when']:%Y-%m-%d %H:%M} UTC; the gate's verdict was not "
            "recorded with this promotion.")}
    signatures = []
    for promotion in to_this:
        for key in ("override_signature", "override_confirm_signature", "signature"):
            if promotion[key]:
                signatures.append(promotion[key])
    decisions = [event for rule in rules for event in rule["history"] if event.get("signature")]
    signed_decisions = [event for event in decisions if not event["signature"].startswith("No electronic")]
    return {
        "production": production,
        "stops": stops,
        "signatures": signatures,
        "n_decisions": len(decisions),
        "n_signed_decisions": len(signed_decisions),
    }


def report_data(
    *, prompt_version: PromptVersion, generated_by: Any, generated_at: Any, report_id: int | None,
    identity: SigningIdentity | None,
) -> dict[str, Any]:
    """Return everything the report states about a prompt version, as plain data for the template."""
    task = prompt_version.task
    labels = task.label_names
    gate, judged = _gate_data(prompt_version)
    pld, baselines = _evaluation_runs(prompt_version, judged)
    pld_data = _run_data(pld, labels) if pld is not None else None
    baseline_data = [_run_data(run, labels) for run in baselines]
    all_runs = ([pld_data] if pld_data else []) + baseline_data
    computed_sha = _sha256_text(prompt_version.text)
    rules = _rules_data(prompt_version)
    promotions = _promotions_data(prompt_version)
    return {
        "report_id": report_id,
        "generated_at": generated_at,
        "generated_by": _user_display(generated_by),
        "task": {
            "name": task.name,
            "title": task.title or task.name,
            "description": task.description,
            "labels": [{"name": label["name"], "description": label.get("description", "")} for label in task.labels],
        },
        "version": {
            "number": prompt_version.number,
            "status": prompt_version.get_status_display(),
            "status_key": prompt_version.status,
            "text": prompt_version.text,
            "sha256": prompt_version.sha256 or computed_sha,
            "sha256_matches": not prompt_version.sha256 or prompt_version.sha256 == computed_sha,
            "computed_sha256": computed_sha,
            "rule_set_hash": prompt_version.rule_set_hash,
            "template_version": prompt_version.template_version,
            "token_count": prompt_version.token_count,
            "tokenizer": Path(prompt_version.tokenizer).name if prompt_version.tokenizer else "",
            "compiled_by": _user_display(prompt_version.compiled_by) if prompt_version.compiled_by_id else "—",
            "created_at": prompt_version.created_at,
        },
        "model": {
            "name": pld_data["model_name"] if pld_data else "",
            "sha256": pld_data["model_sha256"] if pld_data else "",
            "quantization": pld_data["quantization"] if pld_data else "",
        },
        "data_sha256": pld_data["data_sha256"] if pld_data else "",
        "test_split": gate,
        "pld_is_gate_run": judged is not None,
        "rules": rules,
        "pld": pld_data,
        "baselines": baseline_data,
        "runs": all_runs,
        "chart": _f1_chart(all_runs) if all_runs else None,
        "trend": _trend(task),
        "promotions": promotions,
        "cover": _cover(prompt_version, promotions, rules, report_stops(task)),
        "impact": _impact_data(prompt_version),
        "signer": {
            "subject": identity.subject if identity else "",
            "fingerprint": identity.fingerprint if identity else "",
            "fingerprint_plain": identity.fingerprint.replace(":", "").lower() if identity else "",
            "self_signed": identity.is_self_signed if identity else False,
            "not_valid_after": identity.not_valid_after if identity else None,
        },
        "tsa_url": settings.PLD_TSA_URL,
    }


def _impact_data(prompt_version: PromptVersion) -> dict[str, Any] | None:
    """Return the version's latest finished rule impact run (its table is ordered by effect), or None."""
    from evaluation.models import RuleImpactRun

    run = (RuleImpactRun.objects.filter(prompt_version=prompt_version, status=RuleImpactRun.Status.FINISHED)
           .order_by("-finished_at", "-id").first())
    if run is None:
        return None
    return {"run_id": run.pk, "split": run.split, "n_examples": run.n_examples, "model_sha256": run.model_sha256,
            "data_sha256": run.data_sha256, "finished_at": run.finished_at, "results": run.results}


# --- rendering ---------------------------------------------------------------------------------


def report_render_html(data: dict[str, Any]) -> str:
    """Render the report's data to the print HTML."""
    return render_to_string("evaluation/report_pdf.html", {"report": data})


def report_render_pdf(data: dict[str, Any]) -> bytes:
    """Render the report's data to an (unsigned) PDF with WeasyPrint."""
    import weasyprint

    html_text = report_render_html(data)
    document = weasyprint.HTML(string=html_text, base_url=str(settings.BASE_DIR))
    return document.write_pdf()


# --- the service -------------------------------------------------------------------------------


def _identity() -> SigningIdentity:
    return signing_identity_load(p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase())


@transaction.atomic
def report_create(*, prompt_version: PromptVersion, user: AbstractBaseUser, job: Any = None) -> Report:
    """Record a queued report for a prompt version; ``report_build`` produces its file."""
    if not user.has_perm("evaluation.generate_report"):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} may not generate reports")
    if not task_is_visible(prompt_version.task, user):
        # Need-to-know: the form offers only the user's tasks' versions; the service refuses any other door.
        raise PermissionDenied(f"{user} is not a member of the task {prompt_version.task.name}.")
    if not prompt_version.text.strip():
        raise ValidationError("This prompt version has no text to report on.")
    report = Report(prompt_version=prompt_version, generated_by=user, job=job, status=Report.Status.QUEUED)
    audited_save(report, user=user, reason=f"Requested a report on {prompt_version}")
    return report


def _report_fail(report: Report, message: str) -> Report:
    report.status = Report.Status.FAILED
    report.error = message
    with transaction.atomic():
        audited_save(report, user=report.generated_by, reason="Report failed")
    return report


def _store(report: Report, data: bytes, *, kind: str = "report") -> str:
    """Write an issued report under a name no other report can have; never replace an existing file.

    A database id alone is not unique: a fresh database beside an old ``MEDIA_ROOT`` reuses ids.
    The name adds the file's own SHA-256 prefix and a random part, and the exclusive create refuses
    to touch a file that is already there (a new random part is drawn instead).
    """
    version = report.prompt_version
    digest = hashlib.sha256(data).hexdigest()[:16]
    directory = Path(settings.MEDIA_ROOT) / REPORTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        name = f"{version.task.name}-v{version.number}-{kind}-{report.pk}-{digest}-{uuid.uuid4().hex[:8]}.pdf"
        try:
            with (directory / name).open("xb") as handle:
                handle.write(data)
        except FileExistsError:
            continue
        return f"{REPORTS_DIR}/{name}"
    raise ReportError(f"Could not find a free file name for report {report.pk} in {directory}.")


def report_build(*, report: Report, progress: JobProgress | None = None) -> Report:
    """Render, sign and self-check a queued report, then store it; a failed check leaves no file.

    Runs outside one long transaction on purpose: rendering takes seconds and must not hold the
    database's write lock.
    """
    if report.status != Report.Status.QUEUED:
        return report
    version = PromptVersion.objects.select_related("task", "compiled_by").get(pk=report.prompt_version_id)

    def note(message: str) -> None:
        if progress is not None:
            progress.advance(message=message)

    try:
        identity = _identity()
        data = report_data(
            prompt_version=version, generated_by=report.generated_by, generated_at=report.created_at,
            report_id=report.pk, identity=identity,
        )
        # The anchor: everything the report states is at or before this entry of the ledger.
        anchor_sequence, anchor_hash = ledger_head()
        data["ledger"] = {"sequence": anchor_sequence, "hash": anchor_hash}
        note("Gathered rules, decisions, evaluations and promotions")
        pdf = report_render_pdf(data)
        note(f"Rendered {len(pdf) // 1024} KiB; signing")
        signed = pdf_sign(
            pdf, p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase(),
            tsa_url=settings.PLD_TSA_URL,
            reason=f"Audit report {report.pk} on {version}; {LEDGER_ANCHOR_LABEL} #{anchor_sequence} {anchor_hash}",
        )
    except JobCancelled:
        raise  # the report stays queued; retrying the job resumes it
    except SigningError as exc:
        return _report_fail(report, str(exc))
    except Exception as exc:  # a rendering failure must not leave the record queued forever
        logger.exception("Report %s could not be rendered", report.pk)
        return _report_fail(report, f"Rendering failed: {type(exc).__name__}: {exc}")
    check = pdf_signature_validate(signed, trust=identity.certificate)
    if not (check.valid and check.trusted and check.unmodified and check.signer_fingerprint == identity.fingerprint):
        summary = "; ".join(part for part in (check.problem, *check.details.values()) if part)
        return _report_fail(report, f"The signed report failed its own signature check ({summary}); not issued.")
    note("Signature checked")
    report.file = _store(report, signed)
    report.sha256 = hashlib.sha256(signed).hexdigest()
    report.size = len(signed)
    report.signer = f"{identity.subject} (SHA-256 {identity.fingerprint})"[:300]
    report.status = Report.Status.READY
    report.error = ""
    report.ledger_sequence, report.ledger_hash = anchor_sequence, anchor_hash
    with transaction.atomic():
        # "report.issued", not "report.signed": the instance signed it; a person's sign-off is "report.signed".
        audited_save(report, user=report.generated_by, reason=f"Issued, SHA-256 {report.sha256[:16]}…",
                     event="report.issued")
    return report


def report_generate(*, prompt_version: PromptVersion, user: AbstractBaseUser, job: Any = None) -> Report:
    """Produce a new signed report on a prompt version (a new record every time)."""
    report = report_create(prompt_version=prompt_version, user=user, job=job)
    return report_build(report=report)


def report_path(report: Report) -> Path:
    """Return where an issued report's file is stored."""
    if not report.file:
        raise ReportError(f"Report {report.pk} has no file ({report.get_status_display().lower()})")
    return Path(settings.MEDIA_ROOT) / report.file


def report_signed_content(report: Report) -> str:
    """Return the SHA-256 a person signs a report over: its stored file's bytes, refused if they changed."""
    if report.status != Report.Status.READY:
        raise ValidationError("Only an issued report can be signed.")
    try:
        data = report_path(report).read_bytes()
    except (ReportError, OSError) as exc:
        raise ValidationError("The report's file is missing from storage, so it cannot be signed.") from exc
    sha = report_content_sha256(data)
    if sha != report.sha256:
        raise ValidationError("The report file no longer matches the SHA-256 it was issued with; it cannot be signed.")
    return sha


def report_sign_off_reason(*, report: Report, signature: Signature) -> str:
    """Return the reason the sign-off signature states: who, the meaning, when, and what they signed."""
    reason = f"{signature.manifestation}; electronic signature {signature.pk} over report {report.pk}, " \
        f"SHA-256 {report.sha256}"
    if signature.reason:
        reason += f"; their reason: {signature.reason}"
    return reason


def _sign_off_pdf(report: Report, signature: Signature) -> bytes:
    """Return the issued PDF with a second PAdES signature naming the person, the meaning and the time."""
    original = report_path(report).read_bytes()
    try:
        identity = _identity()
        signed = pdf_sign(
            original, p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase(),
            tsa_url=settings.PLD_TSA_URL, field_name=SIGN_OFF_FIELD, name=signature.full_name,
            reason=report_sign_off_reason(report=report, signature=signature),
        )
    except SigningError as exc:
        raise ValidationError(f"The sign-off could not be added to the PDF: {exc}") from exc
    # The sign-off is an incremental update: the issued bytes must come first, unchanged, and both signatures hold.
    if signed[: len(original)] != original:
        raise ValidationError("The signed-off PDF does not begin with the issued report's bytes; nothing was saved.")
    checks = pdf_signatures_validate(signed, trust=identity.certificate)
    good = len(checks) == 2 and all(c.valid and c.trusted and c.signer_fingerprint == identity.fingerprint
                                     for c in checks) and checks[-1].unmodified
    if not good or checks[0].revision_end != len(original):
        raise ValidationError("The signed-off PDF failed its own signature check; nothing was saved.")
    return signed


@transaction.atomic
def report_sign(*, report: Report, user: AbstractBaseUser, signature: Signature | None) -> Report:
    """Sign an issued report as a person (meaning "Report signed", over the PDF's bytes) and store the signed-off copy.

    The copy is the issued file, byte for byte, followed by a second PAdES signature (an incremental
    update) that names the signer, the meaning and the time; it is a new file with its own SHA-256,
    and the issued file stays as it was.
    """
    if not user.has_perm("evaluation.generate_report"):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} may not sign reports")
    report = Report.objects.select_for_update().get(pk=report.pk)
    if report.signature_id is not None:
        raise ValidationError("This report is already signed; generate a new report to sign again.")
    signature = signature_check(
        signature, user=user, meanings=Meaning.REPORT_SIGNED, content_sha256=report_signed_content(report)
    )
    signed = _sign_off_pdf(report, signature)
    report.signature = signature
    report.signed_off_file = _store(report, signed, kind="signed-off")
    report.signed_off_sha256 = hashlib.sha256(signed).hexdigest()
    report.signed_off_size = len(signed)
    audited_save(
        report, user=user, event="report.signed",
        reason=f"Report signed by {signature.full_name}; signed-off PDF SHA-256 {report.signed_off_sha256[:16]}…",
        update_fields=["signature", "signed_off_file", "signed_off_sha256", "signed_off_size"],
    )
    return report


def report_signed_off_path(report: Report) -> Path | None:
    """Return where the signed-off copy of a report is stored, or None before a person signed it off."""
    return Path(settings.MEDIA_ROOT) / report.signed_off_file if report.signed_off_file else None


def report_filename(report: Report, *, signed_off: bool = False) -> str:
    """Return the file name a downloaded report (or its signed-off copy) is saved under."""
    if signed_off and report.signed_off_file:
        return Path(report.signed_off_file).name
    return Path(report.file).name if report.file else f"report-{report.pk}.pdf"



@transaction.atomic
def report_request(*, prompt_version: PromptVersion, user: AbstractBaseUser) -> Report:
    """Record a queued report and hand its production to the background worker."""
    report = report_create(prompt_version=prompt_version, user=user)
    job = job_start(
        kind=JOB_KIND,
        title=f"Signed report on {prompt_version}",
        params={"report_id": report.pk},
        user=user,
    )
    report.job = job
    audited_save(report, user=user, reason=f"Queued as job {job.pk}")
    return report
