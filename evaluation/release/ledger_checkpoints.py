"""Signing checkpoints of the ledger head with the reports' identity, and reading them back.

A checkpoint is a one-page PDF stating ``{sequence, hash, created_at, entries}``, signed like a report
(PAdES, with an RFC 3161 timestamp when ``PLD_TSA_URL`` is set). The signature's reason repeats
``ledger head #N <hash>``, so the statement is read from signed bytes, and ``pdfsig`` checks it without
this application. Before signing, the chain is recomputed from the previous checkpoint, so a checkpoint
never vouches for a ledger that was already broken.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from evaluation.release.pdf_signing import (
    SigningError,
    pdf_sign,
    pdf_signature_validate,
    signing_identity_load,
    signing_passphrase,
)
from evaluation.release.verification import signed_reason
from pldreview.checkpoints import CheckpointError, CheckpointStatement
from pldreview.ledger import LEDGER_ANCHOR_LABEL, canonical_json, ledger_anchor_parse, ledger_append, row_facts
from pldreview.ledger_verify import ledger_verify
from pldreview.models import LedgerCheckpoint, LedgerEntry

CHECKPOINTS_DIR = "ledger-checkpoints"
CHECKPOINT_EVENT = "ledger.checkpoint"


def _identity() -> Any:
    return signing_identity_load(p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase())


def _verified_head() -> tuple[int, str]:
    """Return the head after recomputing the chain from the last checkpoint, or raise if anything is broken."""
    last = LedgerCheckpoint.objects.order_by("-sequence", "-id").first()
    start = 1
    if last is not None:
        stored = LedgerEntry.objects.filter(sequence=last.sequence).values_list("hash", flat=True).first()
        if stored != last.hash:
            raise CheckpointError(
                f"The ledger no longer holds entry #{last.sequence} with the hash checkpoint {last.pk} signed "
                f"({last.hash}); nothing was signed. Run verify_ledger.")
        start = last.sequence + 1
    verdict = ledger_verify(start=start, check_rows=False)
    if not verdict.ok:
        raise CheckpointError(f"The ledger is broken ({verdict.message}); nothing was signed. Run verify_ledger.")
    if verdict.head_sequence == 0:
        raise CheckpointError("The ledger is empty: there is no head to sign.")
    return verdict.head_sequence, verdict.head_hash


def _store(sequence: int, data: bytes) -> str:
    directory = Path(settings.MEDIA_ROOT) / CHECKPOINTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    name = f"ledger-checkpoint-{sequence}-{hashlib.sha256(data).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}.pdf"
    with (directory / name).open("xb") as handle:
        handle.write(data)
    return f"{CHECKPOINTS_DIR}/{name}"


def ledger_checkpoint_sign(*, user: AbstractBaseUser | None = None, reason: str) -> LedgerCheckpoint:
    """Sign the ledger's verified head with the reports' identity, store the PDF, and append the checkpoint."""
    if user is not None and not user.has_perm("pldreview.view_ledger"):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{user} may not make ledger checkpoints")
    try:
        identity = _identity()
    except SigningError as exc:
        raise CheckpointError(str(exc)) from exc
    sequence, digest = _verified_head()
    created_at = timezone.now()
    statement = {"sequence": sequence, "hash": digest, "created_at": created_at.isoformat(), "entries": sequence}
    html = render_to_string("evaluation/ledger_checkpoint_pdf.html", {
        "statement": statement, "statement_json": canonical_json(statement), "signer": identity.subject,
    })
    import weasyprint  # heavy: only where a PDF is made

    pdf = weasyprint.HTML(string=html, base_url=str(settings.BASE_DIR)).write_pdf()
    try:
        signed = pdf_sign(
            pdf, p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase(),
            tsa_url=settings.PLD_TSA_URL,
            reason=f"PLD Review ledger checkpoint: {LEDGER_ANCHOR_LABEL} #{sequence} {digest}; {sequence} entries; "
                   f"at {created_at.isoformat()}",
        )
    except SigningError as exc:
        raise CheckpointError(str(exc)) from exc
    check = pdf_signature_validate(signed, trust=identity.certificate)
    if not (check.valid and check.trusted and check.unmodified):
        raise CheckpointError(f"The signed checkpoint failed its own signature check ({check.problem}); not stored.")
    checkpoint = LedgerCheckpoint(
        sequence=sequence, hash=digest, created_at=created_at, created_by=user, reason=reason[:200],
        file=_store(sequence, signed), sha256=hashlib.sha256(signed).hexdigest(),
        signer=f"{identity.subject} (SHA-256 {identity.fingerprint})"[:300],
        timestamped=check.timestamp_time is not None,
    )
    checkpoint.full_clean()
    with transaction.atomic():
        checkpoint.save()
        ledger_append(event=CHECKPOINT_EVENT, actor=user, obj=checkpoint, facts=row_facts(checkpoint),
                      reason=reason)
    return checkpoint


def ledger_checkpoint_parse(data: bytes) -> CheckpointStatement:
    """Return what a checkpoint file states, after checking it is signed, unmodified, by this instance."""
    try:
        identity = _identity()
    except SigningError as exc:
        raise CheckpointError(str(exc)) from exc
    check = pdf_signature_validate(data, trust=identity.certificate)
    if not check.has_signature:
        raise CheckpointError(f"Not a signed checkpoint: {check.problem}")
    if not (check.valid and check.unmodified):
        raise CheckpointError("The checkpoint's signature does not cover the file as it is: changed after signing")
    if not (check.trusted and check.signer_fingerprint == identity.fingerprint):
        raise CheckpointError(f"The checkpoint was not signed by this instance's identity ({check.signer_subject})")
    reason = signed_reason(data)
    anchor = ledger_anchor_parse(reason)
    if anchor is None or "ledger checkpoint" not in reason:
        raise CheckpointError("The signed file states no ledger checkpoint")
    created_at = reason.rsplit("; at ", 1)[-1] if "; at " in reason else ""
    return CheckpointStatement(sequence=anchor[0], hash=anchor[1], created_at=created_at,
                               signer=check.signer_subject)


def report_signed_heads() -> list[tuple[int, str, str]]:
    """Return the ledger head each issued report was signed at: the ledger must still hold every one."""
    from evaluation.models import Report

    reports = Report.objects.filter(ledger_sequence__isnull=False).exclude(ledger_hash="").order_by("pk")
    return [(sequence, digest, f"signed report {pk}")
            for pk, sequence, digest in reports.values_list("pk", "ledger_sequence", "ledger_hash")]
