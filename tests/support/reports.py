"""Plain builders for report tests: a prompt version with reviewed rules, evaluations and a promotion."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.contrib.auth.models import User
from django.utils import timezone

from evaluation.models import EvaluationRun, Promotion, PromotionOverride
from rules.models import PromptVersion, PromptVersionRule, Rule, Task
from rules.review.services import rule_approve, rule_edit, rule_propose, rule_reject
from tests.support.certificates import self_signed
from tests.support.signatures import sign_approval, sign_edit, sign_rejection

RULE_TEXT = "If the clause lets the recipient share information with its employees, then the hypothesis holds"
EDIT_REASON = "Narrowed to employees bound by written confidentiality duties"
REJECT_REASON = "Too vague: it names no clause at all"
PROMOTION_REASON = "Beats the few-shot baseline on the test split"
OVERRIDE = "Latency above budget accepted for the pilot quarter"
FAILING_SENTENCE = "Rule adherence 0.20 (4 of 20) is not above chance (0.33) with its 95% interval (0.08–0.42)."
PLD_MACRO_F1 = 0.8123
PASSPHRASE = "test-passphrase"


@dataclass
class ReportStory:
    version: PromptVersion
    rules: list[Rule]
    pld_run: EvaluationRun


def _run(
    task: Task, mode: str, macro_f1: float, *, version: PromptVersion | None = None, **extra: object
) -> EvaluationRun:
    labels = task.label_names
    run = EvaluationRun(
        task=task,
        mode=mode,
        prompt_version=version,
        prompt_text=version.text if version else "",
        model_path="/models/gemma-3-270m-q4_k_m.gguf",
        model_sha256="ab" * 32,
        model_name="gemma-3-270m",
        quantization="Q4_K_M",
        status=EvaluationRun.Status.FINISHED,
        n_examples=60,
        data_sha256="cd" * 32,
        finished_at=timezone.now(),
        metrics={
            "n": 60,
            "labels": labels,
            "macro_f1": macro_f1,
            "macro_f1_ci95": [round(macro_f1 - 0.07, 4), round(macro_f1 + 0.06, 4)],
            "accuracy": round(macro_f1 + 0.02, 4),
            "per_class": {
                label: {"precision": 0.8, "recall": 0.75, "f1": 0.7742, "support": 20} for label in labels
            },
            "confusion": [[15, 3, 2], [4, 14, 2], [1, 2, 17]],
            "latency_ms_p50": 91.5,
            "latency_ms_p95": 240.25,
        },
        **extra,
    )
    run.full_clean()
    run.save()
    return run


def build_report_story(*, task: Task, reviewer: User, second_reviewer: User, admin: User) -> ReportStory:
    """Build a production prompt version of two rules with their decisions, runs and a promotion."""
    kept = rule_propose(
        task=task, text=RULE_TEXT, label="Entailment", origin=Rule.Origin.TEACHER,
        topic="Sharing with employees", proposed_by_model="teacher-model-x", support=7,
    )
    rule_edit(
        rule=kept, user=reviewer, lock_version=kept.lock_version, reason=EDIT_REASON,
        text=RULE_TEXT + " when those employees are bound by written confidentiality duties", label="Entailment",
        topic="Sharing with employees",
            signature=sign_edit(reviewer,
                text=RULE_TEXT + " when those employees are bound by written confidentiality duties",
                label="Entailment", topic="Sharing with employees"),
    )
    kept.refresh_from_db()
    rule_approve(rule=kept, user=second_reviewer, lock_version=kept.lock_version, reason="Matches clause 4.2",
        signature=sign_approval(second_reviewer, kept))
    second = rule_propose(
        task=task, text="If the clause says nothing about return of materials, then it is not mentioned",
        label="NotMentioned", origin=Rule.Origin.TEACHER, proposed_by_model="teacher-model-x", support=3,
    )
    rule_approve(rule=second, user=reviewer, lock_version=second.lock_version,
        signature=sign_approval(reviewer, second))
    rejected = rule_propose(
        task=task, text="Read the contract carefully", label="Contradiction", origin=Rule.Origin.TEACHER,
        proposed_by_model="teacher-model-x",
    )
    rule_reject(rule=rejected, user=reviewer, lock_version=rejected.lock_version, reason=REJECT_REASON,
        signature=sign_rejection(reviewer, rejected))
    kept.refresh_from_db()
    second.refresh_from_db()
    text = "\n".join(
        ["You classify NDA clauses.", f"1. {kept.text} → Entailment", f"2. {second.text} → NotMentioned"]
    )
    version = PromptVersion(
        task=task, number=1, text=text, sha256=hashlib.sha256(text.encode()).hexdigest(), rule_set_hash="ef" * 32,
        template_version="1", token_count=120, status=PromptVersion.Status.PRODUCTION, compiled_by=admin,
    )
    version.full_clean()
    version.save()
    for position, rule in enumerate([kept, second], start=1):
        PromptVersionRule.objects.create(
            prompt_version=version, rule=rule, revision=rule.current_revision, position=position
        )
    pld = _run(task, EvaluationRun.Mode.PLD, PLD_MACRO_F1, version=version, rule_adherence=0.2,
               adherence={"chance": 0.3333, "warning": "The student does not follow its rules better than chance."})
    _run(task, EvaluationRun.Mode.ZERO_SHOT, 0.41)
    _run(task, EvaluationRun.Mode.FEW_SHOT, 0.55, k_shot=3)
    # The gate failed, so two Admins overrode it: a second Admin asked, ``admin`` confirmed.
    requester, _ = User.objects.get_or_create(username="alex", defaults={"email": "alex@example.org"})
    gate = {"passed": False, "candidate_macro_f1": PLD_MACRO_F1, "problems": [FAILING_SENTENCE],
            "conditions": [{"key": "adherence", "title": "Follows its rules better than chance", "passed": False,
                            "figure": "0.20 (4 of 20; 95% CI 0.08–0.42), chance 0.33", "sentence": FAILING_SENTENCE}]}
    override = PromotionOverride(
        task=task, prompt_version=version, reason=PROMOTION_REASON, justification=OVERRIDE, gate=gate,
        requested_by=requester, status=PromotionOverride.Status.CONFIRMED, confirmed_by=admin,
        confirmed_at=timezone.now(),
    )
    override.full_clean()
    override.save()
    promotion = Promotion(
        task=task, prompt_version=version, evaluation_run=pld, reason=PROMOTION_REASON,
        override_justification=OVERRIDE, override=override, override_requested_by=requester, gate=gate,
        promoted_by=admin,
    )
    promotion.full_clean()
    promotion.save()
    return ReportStory(version=version, rules=[kept, second], pld_run=pld)


def pdf_text(data: bytes) -> str:
    """Return the text of every page of a PDF, whitespace collapsed."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def identity_path(directory: Path) -> Path:
    return directory / "identity.p12"


def write_expired_identity(path: Path, passphrase: str) -> None:
    """Write a PKCS#12 identity whose certificate expired yesterday (pyHanko still signs with it)."""
    key, cert = self_signed("Expired signer", valid_from=dt.timedelta(days=-30), valid_until=dt.timedelta(days=-1))
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            name=b"expired", key=key, cert=cert, cas=None,
            encryption_algorithm=serialization.BestAvailableEncryption(passphrase.encode()),
        )
    )
