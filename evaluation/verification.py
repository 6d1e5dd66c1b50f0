"""Verify a report file: the same five checks for the command line and the upload page.

The checks run in a fixed order and stop at the first failure, so the verdict names exactly one
reason: a file that is not a signed PDF, a broken signature, a change after signing, a signer
that is not this instance, or a file this instance never issued.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from django.conf import settings

from evaluation.models import Report
from evaluation.signing import SignatureCheck, SigningError, pdf_signature_validate, signing_identity_load
from pldreview.ledger import ledger_anchor_parse
from pldreview.ledger_verify import ledger_chain_through


@dataclass(frozen=True)
class Check:
    """One named check of a verdict and whether it passed."""

    key: str
    title: str
    passed: bool | None  # None: not reached because an earlier check failed
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one file."""

    ok: bool
    message: str
    sha256: str
    checks: list[Check] = field(default_factory=list)
    report: Report | None = None
    signature: SignatureCheck | None = None

    @property
    def failed_check(self) -> Check | None:
        return next((check for check in self.checks if check.passed is False), None)


CHECKS = [
    ("signed_pdf", "The file is a PDF with a signature"),
    ("intact", "The signature is cryptographically valid"),
    ("unmodified", "The document is unmodified since signing"),
    ("signer", "It was signed with this PLD Review installation's certificate"),
    ("issued", "The file matches a report this installation issued"),
]
LEDGER_CHECK = ("ledger", "The ledger still holds the entry the report was anchored to")

FAILURE_MESSAGES = {
    "signed_pdf": "Not a signed PDF: {detail}",
    "intact": "The signature is not valid: the signed content was changed or the signature is damaged. {detail}",
    "unmodified": "The document was modified after it was signed: {detail}",
    "signer": "The signer is not this instance's signing identity: {detail}",
    "issued": "Not issued by this instance: no report with SHA-256 {sha256} was issued here.",
    "ledger": "The ledger was changed after this report was signed: {detail}",
}


def _verdict(
    sha256: str, results: dict[str, tuple[bool, str]], *, signature: SignatureCheck, report: Report | None = None
) -> Verdict:
    checks = []
    failed: Check | None = None
    for key, title in CHECKS + ([LEDGER_CHECK] if "ledger" in results else []):
        if failed is not None or key not in results:
            checks.append(Check(key=key, title=title, passed=None))
            continue
        passed, detail = results[key]
        check = Check(key=key, title=title, passed=passed, detail=detail)
        checks.append(check)
        if passed is False:
            failed = check
    if failed is None:
        message = (
            f"Verified: report {report.pk} on {report.prompt_version}, issued by this instance and unmodified "
            "since signing."
            if report is not None
            else "Verified."
        )
        return Verdict(ok=True, message=message, sha256=sha256, checks=checks, signature=signature, report=report)
    message = FAILURE_MESSAGES[failed.key].format(detail=failed.detail, sha256=sha256).strip()
    return Verdict(ok=False, message=message, sha256=sha256, checks=checks, signature=signature, report=report)


def signed_reason(data: bytes) -> str:
    """Return the reason stated in a PDF's last signature (covered by it), or "" if there is none."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        signatures = PdfFileReader(io.BytesIO(data), strict=False).embedded_regular_signatures
        return str(signatures[-1].sig_object.get("/Reason", "")) if signatures else ""
    except Exception:  # an unreadable file has already failed the signature checks
        return ""


def ledger_anchor_check(*, data: bytes, report: Report) -> tuple[bool | None, str]:
    """Check that the ledger, recomputed from its start, still ends the report's anchor entry with its hash.

    The anchor is read from the signed content (the signature's reason), so rewriting the report
    record does not help; the record's copy is the fallback for a reason that does not state it.
    None: the report states no anchor, so there is nothing to check.
    """
    anchor = ledger_anchor_parse(signed_reason(data))
    if anchor is None and report.ledger_sequence is not None:
        anchor = (report.ledger_sequence, report.ledger_hash)
    if anchor is None:
        return None, "the report states no ledger head (it was signed before the ledger existed)"
    sequence, expected = anchor
    computed, problem = ledger_chain_through(sequence)
    if problem is not None:
        return False, f"entry #{problem.sequence} before the anchor #{sequence} is broken: {problem.detail}"
    if computed != expected:
        return False, (f"entry #{sequence} now hashes to {computed}, but the report was signed at "
                       f"#{sequence} {expected}")
    return True, f"entry #{sequence} still has hash {expected}, and every entry before it chains to it"


def report_verify(*, data: bytes, ledger: bool = False, require_anchor: bool = False) -> Verdict:
    """Check a report file against this instance's signing identity, its issued reports and (if asked) ledger.

    ``require_anchor`` fails a report that states no ledger head instead of skipping the ledger check.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    results: dict[str, tuple[bool, str]] = {}
    try:
        identity = signing_identity_load(p12_path=settings.PLD_SIGNING_P12, passphrase=settings.PLD_SIGNING_PASSPHRASE)
    except SigningError:
        identity = None  # still say what we can about the file; the signer check fails below
    signature = pdf_signature_validate(data, trust=identity.certificate if identity else None)
    if not signature.has_signature:
        results["signed_pdf"] = (False, signature.problem)
        return _verdict(sha256, results, signature=signature)
    results["signed_pdf"] = (True, f"signed by {signature.signer_subject or 'an unnamed signer'}")
    if signature.problem or not signature.valid:
        summary = signature.details.get("summary", "")
        detail = f"the signature does not match the signed content (validator: {summary})"
        results["intact"] = (False, signature.problem or detail)
        return _verdict(sha256, results, signature=signature)
    results["intact"] = (True, "digest and signature value match")
    if not signature.unmodified:
        detail = (
            "bytes were added after the signed revision"
            if not signature.entire_file
            else f"modification level {signature.modification_level}"
        )
        results["unmodified"] = (False, detail)
        return _verdict(sha256, results, signature=signature)
    results["unmodified"] = (True, "the signature covers the entire file")
    if identity is None:
        results["signer"] = (False, f"this instance has no signing identity at {settings.PLD_SIGNING_P12}")
        return _verdict(sha256, results, signature=signature)
    if not (signature.trusted and signature.signer_fingerprint == identity.fingerprint):
        results["signer"] = (
            False,
            signature.details.get("validity")
            or f"signed by {signature.signer_subject} (certificate SHA-256 {signature.signer_fingerprint}); "
            f"this instance signs as {identity.subject} ({identity.fingerprint})",
        )
        return _verdict(sha256, results, signature=signature)
    results["signer"] = (True, f"{identity.subject}, certificate SHA-256 {identity.fingerprint}")
    report = (
        Report.objects.select_related("prompt_version__task", "generated_by")
        .filter(sha256=sha256, status=Report.Status.READY)
        .first()
    )
    if report is None:
        results["issued"] = (False, "")
        return _verdict(sha256, results, signature=signature)
    results["issued"] = (
        True,
        f"report {report.pk} on {report.prompt_version}, generated {report.created_at:%Y-%m-%d %H:%M} UTC "
        f"by {report.generated_by}",
    )
    if ledger:
        passed, detail = ledger_anchor_check(data=data, report=report)
        results["ledger"] = (False if passed is None and require_anchor else passed, detail)
    return _verdict(sha256, results, signature=signature, report=report)
