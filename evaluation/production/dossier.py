"""The decision dossier: everything the record holds about one production decision, in one JSON-ready dict.

Who is responsible for this automated decision? The dossier answers from the record: the input as the task's
retention rule kept it, the label and probabilities, the prompt version and model that decided (with their
hashes and the scoring backend), each rule of that version with the revision it had and every signed decision
on that revision (who, when, meaning), the override if a person overrode it, and the ledger entry that
recorded the call. The page, its JSON export and ``GET /api/v1/decisions/<request_id>`` all show this dict.

``rule_impact`` is each rule's latest measured effect when left out, and ``explanation`` the stored "Why this
label?" answer (evaluation/runs/impact.py); each is None while not measured.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from evaluation.models import ClassifyCall, DecisionFeedback, DecisionOverride
from evaluation.production.decision_log import decision_override_payload
from evaluation.runs.impact import explanation_as_dict, latest_explanation, latest_rule_impact, rule_impact_sentence
from pldreview.ledger import ledger_head
from pldreview.models import LedgerEntry, Signature
from rules.models import Decision, PromptVersionRule

CALL_LEDGER_EVENT = "classify_call.logged"


def _signature(signature: Signature | None) -> dict[str, Any] | None:
    if signature is None:
        return None
    return {
        "name": signature.full_name, "username": signature.username, "signed_at": signature.signed_at.isoformat(),
        "meaning": signature.get_meaning_display(), "content_sha256": signature.content_sha256,
        "manifestation": signature.manifestation,
    }


def _rules(call: ClassifyCall) -> list[dict[str, Any]]:
    decisions = Decision.objects.select_related("reviewer", "signature").prefetch_related("undone_by").order_by(
        "created_at", "id"
    )
    entries = (
        PromptVersionRule.objects.filter(prompt_version_id=call.prompt_version_id)
        .select_related("revision", "rule")
        .prefetch_related(Prefetch("revision__decision_set", queryset=decisions, to_attr="signed_decisions"))
        .order_by("position")
    )
    rules = []
    for entry in entries:
        revision = entry.revision
        rules.append({
            "position": entry.position,
            "rule_id": entry.rule_id,
            "revision": revision.number,
            "text": revision.text,
            "label": revision.label,
            "topic": revision.topic,
            "author": revision.author_display,
            "decisions": [{
                "action": decision.get_action_display(),
                "by": decision.reviewer.get_full_name() or decision.reviewer.get_username(),
                "username": decision.reviewer.get_username(),
                "at": decision.created_at.isoformat(),
                "reason": decision.reason,
                "undone": bool(decision.undone_by.all()),
                "signature": _signature(decision.signature),
            } for decision in revision.signed_decisions],
            "rule_impact": _rule_impact(entry.rule_id, entry.revision_id),
        })
    return rules


def _rule_impact(rule_id: int, revision_id: int) -> dict[str, Any] | None:
    """The latest measured effect of leaving this revision out (docs/attribution.md), or None if not measured."""
    measured = latest_rule_impact(rule_id=rule_id, revision_id=revision_id)
    if measured is None:
        return None
    run, row = measured
    return {"run_id": run.pk, "prompt_version": run.prompt_version.number, "split": run.split,
            "n_examples": run.n_examples, "sentence": rule_impact_sentence(row, n_full=run.n_examples), **row}


def _ledger_entry(call: ClassifyCall) -> dict[str, Any] | None:
    entry = LedgerEntry.objects.filter(
        event=CALL_LEDGER_EVENT, object_type=ClassifyCall._meta.label_lower, object_id=str(call.pk)
    ).first()
    if entry is None:
        return None
    return {"sequence": entry.sequence, "event": entry.event, "time": entry.created_at.isoformat(),
            "hash": entry.hash, "prev_hash": entry.prev_hash}


def _override(call: ClassifyCall) -> dict[str, Any] | None:
    override = DecisionOverride.objects.filter(request_id=call.request_id).select_related("signature").first()
    if override is None:
        return None
    return {**decision_override_payload(override), "signature": _signature(override.signature),
            "feedback_example_id": override.feedback.example_id if override.feedback else None}


def _feedback(call: ClassifyCall) -> dict[str, Any] | None:
    feedback = DecisionFeedback.objects.filter(call=call).select_related("given_by").first()
    if feedback is None:
        return None
    return {"correct_label": feedback.correct_label, "by": feedback.given_by.get_username(),
            "at": feedback.created_at.isoformat(), "reason": feedback.reason, "example_id": feedback.example_id}


def decision_dossier(call: ClassifyCall) -> dict[str, Any]:
    """Return every recorded fact about one logged decision, JSON-ready (see the module's docstring)."""
    version = call.prompt_version
    override = _override(call)
    sequence, head_hash = ledger_head()
    return {
        "request_id": str(call.request_id),
        "task": call.task.name,
        "created_at": call.created_at.isoformat(),
        "source": call.source,
        "api_token": ({"prefix": call.api_token.prefix, "name": call.api_token.name,
                       "owner": call.api_token.user.get_username()} if call.api_token else None),
        "label": call.label,
        "probabilities": call.probabilities,
        "top_probability": call.top_probability,
        # The current outcome: the person's label once overridden, else the student's.
        "outcome_label": override["overridden_label"] if override else call.label,
        "overridden": override is not None,
        "overridden_label": override["overridden_label"] if override else None,
        "overridden_by": override["overridden_by"] if override else None,
        "overridden_at": override["overridden_at"] if override else None,
        "override_reason": override["reason"] if override else None,
        "override": override,
        "feedback": _feedback(call),
        "input": {
            "retention": call.input_retention,
            "fields": call.inputs if call.inputs_kept else None,
            "sha256": call.input_sha256,
        },
        "prompt_version": {
            "id": version.pk, "number": version.number, "sha256": version.sha256,
            "logged_sha256": call.prompt_sha256, "rule_set_hash": version.rule_set_hash,
            "template_version": version.template_version,
        },
        "model_sha256": call.model_sha256,
        "scoring": {"backend": call.student_backend, "base_url": call.student_base_url,
                    "model": call.student_model, "exact": not call.approximation,
                    "approximation": call.approximation},
        "latency_ms": call.latency_ms,
        "rules": _rules(call),
        "explanation": explanation_as_dict(explanation) if (explanation := latest_explanation(call)) else None,
        "ledger_entry": _ledger_entry(call),
        "ledger_head": {"sequence": sequence, "hash": head_hash},
    }
