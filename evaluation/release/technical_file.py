"""The technical file of a task's system (EU AI Act Art. 11, Annex IV), generated from the record and signed.

Every figure comes from the database, the settings in force or the repository's own documentation; what
the record cannot know (the provider's name, the intended purpose in the provider's words, the
organisation's procedures) is listed as still to be written, never invented. The same facts are written
as JSON (validated against ``docs/schemas/technical_file.schema.json``) and as a PDF rendered and
signed through the report's pipeline (WeasyPrint, then a PAdES signature by the instance's identity);
the PDF states the JSON's SHA-256, so the signature covers both.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from evaluation.models import EvaluationRun, PromotionOverride, ProviderInformation, TechnicalFile
from evaluation.release.pdf_signing import (
    SigningError,
    pdf_sign,
    pdf_signature_validate,
    signing_identity_load,
    signing_passphrase,
)
from evaluation.release.promotion import production_prompt_version
from evaluation.release.reports import (
    _evaluation_runs,
    _gate_data,
    _promotions_data,
    _rules_data,
    _run_data,
    _user_display,
    report_stops,
)
from pldreview.ledger import LEDGER_ANCHOR_LABEL, ledger_head
from pldreview.signatures import Meaning
from rules.audit import audited_save
from rules.models import ClusteringRun, DatasetImport, Example, MicroRule, PromptVersion, Split, Task

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path("docs/schemas/technical_file.schema.json")
TECHNICAL_FILES_DIR = "technical-files"
PROVIDER_LABELS = {
    "provider_name": "Provider (legal entity)",
    "provider_contact": "Contact point",
    "intended_purpose": "Intended purpose, in the provider's words",
    "intended_users": "Intended users (deployer's staff)",
    "affected_persons": "Persons or groups affected by the decisions",
    "deployment_context": "Deployment context (hardware, software, integrations)",
    "instructions_for_use": "Instructions for use (where kept)",
}
# Annex IV items the record cannot hold whatever is configured: always the organisation's to write.
ALWAYS_BY_HAND = [
    "Annex IV 2(b): the design choices and the rationale behind them, in the provider's words",
    "Annex IV 2(e): the assessment of the human oversight measures needed (Art. 14) beyond those configured here",
    "Annex IV 3: the foreseeable unintended outcomes and sources of risk to health, safety and fundamental rights",
    "Annex IV 5: the risk management system of Art. 9 as a whole (this file lists the controls the system enforces)",
    "Annex IV 7: harmonised standards applied in full, or other solutions adopted (this file maps two)",
    "Annex IV 8: a copy of the EU declaration of conformity",
    "Annex IV 9: the post-market monitoring plan of Art. 72 (this file states the drift monitoring configured)",
]


class TechnicalFileError(Exception):
    """A technical file could not be produced."""


def technical_file_rule_impact(prompt_version: PromptVersion) -> list[dict[str, Any]] | None:
    """Return each rule's measured impact on the version's performance, or None while none was measured."""
    return None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _plain(value: Any) -> Any:
    """Return the value with datetimes as ISO strings, so it is JSON and reads the same in the PDF."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _markdown_table(path: Path, heading: str) -> list[dict[str, str]]:
    """Return the rows of the first table under a heading of a Markdown document, code marks and links removed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    start = next((i for i, line in enumerate(lines) if line.startswith("#") and heading in line), None)
    if start is None:
        return []
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", cell).replace("`", "").strip()
                 for cell in line.strip().strip("|").split("|")]
        if all(set(cell) <= set("-: ") for cell in cells):
            continue
        rows.append(cells)
    if len(rows) < 2:
        return []
    header = [cell.lower() for cell in rows[0]]
    return [dict(zip(header, row, strict=False)) for row in rows[1:]]


def _standards() -> dict[str, Any]:
    docs = Path(settings.BASE_DIR) / "docs"
    part11 = [{"clause": row.get("clause", ""), "asks": row.get("what it asks", ""), "how": row.get(
        "how pld review meets it", ""), "evidence": row.get("shown by", "")}
        for row in _markdown_table(docs / "security.md", "21 CFR Part 11")]
    asvs = [{"clause": row.get("requirement", ""), "asks": "", "how": row.get("how", ""),
             "evidence": row.get("shown by", "")}
            for row in _markdown_table(docs / "security.md", "OWASP ASVS")]
    return {
        "source": "docs/security.md (21 CFR Part 11; OWASP ASVS 4.0.3 level 2), docs/signatures.md",
        "part11": part11,
        "asvs": asvs,
    }


def _provider(task: Task) -> tuple[dict[str, Any], list[str]]:
    info = ProviderInformation.objects.filter(task=task).select_related("updated_by").first()
    fields = []
    missing = []
    for key, label in PROVIDER_LABELS.items():
        value = getattr(info, key, "") if info else ""
        fields.append({"key": key, "label": label, "value": value})
        if not value:
            missing.append(f"Annex IV 1: {label}")
    return {
        "fields": fields,
        "updated_by": _user_display(info.updated_by) if info else None,
        "updated_at": info.updated_at if info else None,
    }, missing


def _datasets(task: Task) -> dict[str, Any]:
    counts = Counter(Example.objects.filter(task=task).values_list("split", flat=True))
    labels = {split: dict(Counter(Example.objects.filter(task=task, split=split).values_list("gold_label", flat=True)))
              for split in counts}
    imports = [
        {"id": imp.pk, "format": imp.format, "source": Path(imp.source_name).name, "sha256": imp.source_sha256,
         "split": imp.split or (f"by seed {imp.split_seed}" if imp.split_seed is not None else ""),
         "records": imp.n_records, "added": imp.n_added, "skipped": imp.n_skipped,
         "by": _user_display(imp.imported_by) if imp.imported_by_id else "—", "at": imp.created_at}
        for imp in DatasetImport.objects.filter(task=task).select_related("imported_by").order_by("created_at", "id")
    ]
    frozen = getattr(task, "frozen_test_split", None)
    return {
        "splits": [{"split": str(Split(split).label), "examples": counts[split], "labels": labels.get(split, {})}
                   for split in Split.values if split in counts],
        "imports": imports,
        "frozen_test_split": {"sha256": frozen.sha256, "examples": frozen.n_examples, "frozen_at": frozen.created_at}
        if frozen else None,
    }


def _teacher(task: Task) -> dict[str, Any]:
    extraction = (
        MicroRule.objects.filter(task=task)
        .values("teacher_endpoint_name", "teacher_model")
        .order_by("teacher_endpoint_name", "teacher_model")
    )
    seen: Counter[tuple[str, str]] = Counter((row["teacher_endpoint_name"], row["teacher_model"]) for row in extraction)
    settings_seen = {
        json.dumps(s, sort_keys=True)
        for s in MicroRule.objects.filter(task=task).values_list("teacher_settings", flat=True)[:500] if s
    }
    clustering = [
        {"id": run.pk, "eps": run.eps, "min_samples": run.min_samples, "embedding": run.embedding,
         "rules": run.n_rules, "clusters": run.n_clusters, "noise": run.n_noise, "at": run.created_at,
         "by": _user_display(run.created_by) if run.created_by_id else "—"}
        for run in ClusteringRun.objects.filter(task=task).select_related("created_by").order_by("created_at", "id")
    ]
    return {
        "extraction": [{"endpoint": name or "—", "model": model, "micro_rules": n}
                       for (name, model), n in seen.items()],
        "extraction_settings": [json.loads(s) for s in sorted(settings_seen)],
        "clustering": clustering,
    }


def _oversight() -> dict[str, Any]:
    """Return the human oversight measures actually configured, from the settings in force."""
    approvals = int(settings.PLD_REQUIRED_APPROVALS)
    return {
        "measures": [
            {"measure": "Four eyes on rules",
             "configured": f"{approvals} approval{'s' if approvals != 1 else ''} by Reviewers other than any author "
                           f"of the rule (PLD_REQUIRED_APPROVALS={approvals})"},
            {"measure": "Electronic signatures",
             "configured": f"Every approval, edit, rejection, promotion, rollback, gate override, token revocation "
                           f"and report sign-off is a signing with the password (PLD_SIGNING_REAUTH="
                           f"{settings.PLD_SIGNING_REAUTH}); meanings: "
                           + ", ".join(str(m.label) for m in Meaning)},
            {"measure": "Second factor at login",
             "configured": ("required of every user (PLD_MFA_REQUIRED on)" if settings.PLD_MFA_REQUIRED else
                            "required of staff and superusers only (PLD_MFA_REQUIRED off)")},
            {"measure": "Promotion gate",
             "configured": f"A version reaches production only when the gate passes (margin PLD_PROMOTION_MARGIN="
                           f"{settings.PLD_PROMOTION_MARGIN}) or two different Admins override it with a "
                           f"justification, each signing"},
            {"measure": "Undo window for review decisions",
             "configured": f"PLD_UNDO_WINDOW_SECONDS={settings.PLD_UNDO_WINDOW_SECONDS}"},
            {"measure": "Retention of logged decisions",
             "configured": f"PLD_DECISION_RETENTION_DAYS={settings.PLD_DECISION_RETENTION_DAYS}, inputs kept as "
                           f"PLD_DECISION_INPUT_RETENTION={settings.PLD_DECISION_INPUT_RETENTION} unless a task's "
                           f"own policy says otherwise"},
            {"measure": "Sessions", "configured": f"idle limit PLD_SESSION_IDLE_MINUTES="
                                                  f"{settings.PLD_SESSION_IDLE_MINUTES}, absolute limit "
                                                  f"PLD_SESSION_MAX_HOURS={settings.PLD_SESSION_MAX_HOURS}"},
            {"measure": "Stop of production serving", "configured": technical_file_stop_measure()},
        ],
    }


def technical_file_stop_measure() -> str:
    """Return how production serving is stopped here (EU AI Act Art. 14(4)(e)), as configured."""
    second = ("a different Admin resumes it" if settings.PLD_REQUIRED_APPROVALS > 1
              else "an Admin resumes it with another signature")
    return ("An Admin stops a task's production serving at once with an electronic signature and a reason; every "
            "API process then answers classify calls with 503 naming the stop, and " + second + "; stops and "
            "resumes are on the ledger and announced to webhooks")


def _task_policy(task: Task) -> dict[str, Any] | None:
    policy = getattr(task, "decision_log_policy", None)
    if policy is None:
        return None
    return {"input_retention": policy.get_input_retention_display(), "retention_days": policy.retention_days}


def _post_market(task: Task) -> dict[str, Any]:
    from evaluation.production.drift import production_watch

    watch = production_watch(task=task)
    return {
        "psi_threshold": float(settings.PLD_DRIFT_PSI_THRESHOLD),
        "min_calls_per_day": int(settings.PLD_DRIFT_MIN_CALLS),
        "reference_run": watch.reference_run.pk if watch.reference_run else None,
        "calls": watch.calls,
        "days_watched": len(watch.days),
        "alerts": [{"day": day.day, "calls": day.calls, "psi": round(day.psi, 4) if day.psi is not None else None}
                   for day in watch.alerts],
    }


def _versions(task: Task) -> list[dict[str, Any]]:
    return [
        {"number": v.number, "status": v.get_status_display(), "sha256": v.sha256, "rule_set_hash": v.rule_set_hash,
         "tokens": v.token_count, "compiled_by": _user_display(v.compiled_by) if v.compiled_by_id else "—",
         "created_at": v.created_at, "rules": v.entries_count}
        for v in _version_queryset(task)
    ]


def _version_queryset(task: Task) -> Any:
    from django.db.models import Count

    return (PromptVersion.objects.filter(task=task).select_related("compiled_by")
            .annotate(entries_count=Count("entries")).order_by("number"))


def _overrides(task: Task) -> list[dict[str, Any]]:
    from evaluation.release.reports import gate_sentences

    return [
        {"version": f"v{o.prompt_version.number}", "status": o.get_status_display(), "reason": o.reason,
         "justification": o.justification, "requested_by": _user_display(o.requested_by),
         "requested_at": o.requested_at,
         "confirmed_by": _user_display(o.confirmed_by) if o.confirmed_by_id else None, "confirmed_at": o.confirmed_at,
         "failing": [c["title"] + (f": {c['figure']}" if c["figure"] else "")
                     for c in gate_sentences(o.gate)["conditions"] if not c["passed"]]}
        for o in PromotionOverride.objects.filter(task=task)
        .select_related("prompt_version", "requested_by", "confirmed_by").order_by("requested_at", "id")
    ]


def technical_file_data(*, task: Task, generated_by: Any, generated_at: Any) -> dict[str, Any]:
    """Return the technical file's facts for a task and its production version, as JSON-ready data."""
    version = production_prompt_version(task)
    provider, missing = _provider(task)
    labels = task.label_names
    performance: dict[str, Any] = {"runs": [], "gate": None, "rule_impact": None}
    rules: list[dict[str, Any]] = []
    if version is not None:
        gate, judged = _gate_data(version)
        pld, baselines = _evaluation_runs(version, judged)
        runs = ([pld] if pld is not None else []) + baselines
        performance = {
            "runs": [_run_data(run, labels) for run in runs],
            "gate_run": gate["judged_run"],
            "test_split_changed": gate["changed"],
            "rule_impact": technical_file_rule_impact(version),
        }
        for rule in _rules_data(version):
            rules.append({
                "position": rule["position"], "rule_id": rule["rule_id"], "revision": rule["revision"],
                "text": rule["text"], "label": rule["label"], "origin": rule["origin"], "proposer": rule["proposer"],
                "teacher_model": rule["proposed_by_model"], "teacher_endpoint": rule["teacher_endpoint"],
                "decisions": [
                    {"when": e["when"], "action": e["action"], "who": e["who"], "reason": e["reason"],
                     "signature": e.get("signature", "")}
                    for e in rule["history"] if e.get("signature") is not None
                ],
            })
    for run in performance["runs"]:
        for key in ("confusion",):
            run.pop(key, None)
    promotions = _promotions_data(version) if version is not None else []
    all_runs = EvaluationRun.objects.filter(task=task).order_by("created_at", "id")
    stops = report_stops(task)
    head_sequence, head_hash = ledger_head()
    standards = _standards()
    # Clauses the documentation itself says are the organisation's: listed, not claimed.
    by_organisation = [f"21 CFR Part 11 {row['clause']} ({row['asks']}): {row['how']}"
                       for row in standards["part11"] if "organisation's" in row["how"]]
    to_write = missing + ALWAYS_BY_HAND + by_organisation
    data = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at,
        "generated_by": _user_display(generated_by),
        "ledger_head": {"sequence": head_sequence, "hash": head_hash},
        "task": {"name": task.name, "title": task.title or task.name, "description": task.description,
                 "labels": [{"name": label["name"], "description": label.get("description", "")}
                            for label in task.labels],
                 "input_fields": list(task.input_fields or [])},
        "production_version": version.number if version is not None else None,
        "sections": {
            "general": {
                "provider": provider,
                "versions": _versions(task),
                "student_model": {
                    "name": performance["runs"][0]["model_name"] if performance["runs"] else "",
                    "sha256": performance["runs"][0]["model_sha256"] if performance["runs"] else "",
                    "quantization": performance["runs"][0]["quantization"] if performance["runs"] else "",
                },
                "prompt_sha256": version.sha256 if version is not None else "",
            },
            "development": {
                "datasets": _datasets(task),
                "teacher": _teacher(task),
                "rules": rules,
                "evaluation_runs": all_runs.count(),
            },
            "oversight": {**_oversight(), "task_policy": _task_policy(task)},
            "performance": performance,
            "risk": {
                "gate_conditions": promotions[-1]["gate"] if promotions else None,
                "overrides": _overrides(task),
                "stops": stops,
            },
            "lifecycle": {
                "promotions": [
                    {"when": p["when"], "from": p["from"], "to": p["to"], "rollback": p["is_rollback"], "by": p["by"],
                     "reason": p["reason"], "gate": p["gate"]["verdict"],
                     "override_justification": p["override_justification"],
                     "signatures": [s for s in (p["override_signature"], p["override_confirm_signature"],
                                                p["signature"]) if s]}
                    for p in promotions
                ],
                "stops": stops,
            },
            "standards": standards,
            "post_market": _post_market(task),
        },
        "to_be_written_by_organisation": to_write,
    }
    return _plain(data)


def technical_file_json(data: dict[str, Any]) -> bytes:
    """Return the technical file's facts as JSON bytes (stable key order, UTF-8)."""
    return (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def technical_file_render_pdf(data: dict[str, Any], *, json_sha256: str) -> bytes:
    """Render the technical file to an unsigned PDF with the report's stylesheet."""
    import weasyprint

    html = render_to_string("evaluation/technical_file_pdf.html", {"tf": data, "json_sha256": json_sha256})
    return weasyprint.HTML(string=html, base_url=str(settings.BASE_DIR)).write_pdf()


def _write_new(directory: Path, stem: str, suffix: str, data: bytes) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        name = f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}{suffix}"
        try:
            with (directory / name).open("xb") as handle:
                handle.write(data)
        except FileExistsError:
            continue
        return f"{TECHNICAL_FILES_DIR}/{name}"
    raise TechnicalFileError(f"Could not find a free file name in {directory}")


@transaction.atomic
def provider_information_save(*, task: Task, user: AbstractBaseUser, values: dict[str, str]) -> ProviderInformation:
    """Record the provider's statements about a task's system (Admins), on the ledger."""
    if not user.has_perm("rules.add_task"):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} may not state the provider's information")
    info = ProviderInformation.objects.select_for_update().filter(task=task).first() or ProviderInformation(task=task)
    for key in ProviderInformation.FIELDS:
        setattr(info, key, (values.get(key) or "").strip())
    info.updated_by = user  # type: ignore[assignment]
    info.updated_at = timezone.now()
    audited_save(info, user=user, reason=f"Provider information of {task.name} stated for its technical file")
    return info


def technical_file_generate(*, task: Task, user: AbstractBaseUser) -> tuple[TechnicalFile, bytes, bytes]:
    """Generate, sign, check and store a technical file; return its record, the signed PDF and the JSON."""
    if not user.has_perm("evaluation.generate_report"):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} may not generate technical files")
    now = timezone.now()
    data = technical_file_data(task=task, generated_by=user, generated_at=now)
    json_bytes = technical_file_json(data)
    json_sha256 = hashlib.sha256(json_bytes).hexdigest()
    head = data["ledger_head"]
    try:
        identity = signing_identity_load(p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase())
        pdf = technical_file_render_pdf(data, json_sha256=json_sha256)
        signed = pdf_sign(
            pdf, p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase(),
            tsa_url=settings.PLD_TSA_URL,
            reason=(f"Technical file on task {task.name}; JSON SHA-256 {json_sha256}; "
                    f"{LEDGER_ANCHOR_LABEL} #{head['sequence']} {head['hash']}"),
        )
    except SigningError as exc:
        raise ValidationError(str(exc)) from exc
    check = pdf_signature_validate(signed, trust=identity.certificate)
    if not (check.valid and check.trusted and check.unmodified and check.signer_fingerprint == identity.fingerprint):
        raise ValidationError("The signed technical file failed its own signature check; not issued.")
    directory = Path(settings.MEDIA_ROOT) / TECHNICAL_FILES_DIR
    stem = f"{task.name}-technical-file"
    version = production_prompt_version(task)
    record = TechnicalFile(
        task=task, prompt_version=version, file=_write_new(directory, stem, ".pdf", signed),
        sha256=hashlib.sha256(signed).hexdigest(), size=len(signed),
        json_file=_write_new(directory, stem, ".json", json_bytes), json_sha256=json_sha256,
        signer=f"{identity.subject} (SHA-256 {identity.fingerprint})"[:300], generated_by=user, created_at=now,
        ledger_sequence=head["sequence"], ledger_hash=head["hash"],
    )
    audited_save(record, user=user, event="technical_file.issued",
                 reason=f"Technical file on {task.name} issued, SHA-256 {record.sha256[:16]}…")
    return record, signed, json_bytes


def technical_file_path(record: TechnicalFile, *, kind: str) -> Path:
    """Return where an issued technical file's PDF (``pdf``) or JSON (``json``) is stored."""
    return Path(settings.MEDIA_ROOT) / (record.json_file if kind == "json" else record.file)
