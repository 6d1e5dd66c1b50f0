"""Verify a report file: the same five checks for the command line and the upload page.

The checks run in a fixed order and stop at the first failure, so the verdict names exactly one
reason: a file that is not a signed PDF, a broken signature, a change after signing, a signer
that is not this instance, or a file this instance never issued.

A report a person signed off carries two signatures: the issuing one over the first revision (the
issued file, byte for byte) and the sign-off over the whole file. Every check then holds for both:
each is valid and by this instance's identity, the sign-off covers the entire file and the issuing
one its whole revision with nothing but a signature added after it, the whole file is the
signed-off copy this instance stored, and its first revision is the issued report.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from django.conf import settings

from evaluation.models import Report
from evaluation.release.pdf_signing import (
    SignatureCheck,
    SigningError,
    pdf_signatures_validate,
    signing_identity_load,
    signing_passphrase,
)
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
    # Every signature of the file, oldest first (the issuing one, then a person's sign-off if any).
    signatures: list[SignatureCheck] = field(default_factory=list)

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
    sha256: str, results: dict[str, tuple[bool, str]], *, signature: SignatureCheck, report: Report | None = None,
    signatures: list[SignatureCheck] | None = None,
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
    every = signatures or [signature]
    if failed is None:
        message = (
            f"Verified: report {report.pk} on {report.prompt_version}, issued by this instance and unmodified "
            "since signing."
            if report is not None
            else "Verified."
        )
        if report is not None and len(every) > 1:
            message = (
                f"Verified: report {report.pk} on {report.prompt_version}, issued by this instance, then signed off "
                f"by {every[-1].name or 'a person'}; both signatures are valid and nothing changed since."
            )
        return Verdict(ok=True, message=message, sha256=sha256, checks=checks, signature=signature, report=report,
                       signatures=every)
    message = FAILURE_MESSAGES[failed.key].format(detail=failed.detail, sha256=sha256).strip()
    return Verdict(ok=False, message=message, sha256=sha256, checks=checks, signature=signature, report=report,
                   signatures=every)


def signed_reason(data: bytes, *, index: int = -1) -> str:
    """Return the reason stated in a PDF's signature (the last by default; covered by it), or "" if there is none."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        signatures = PdfFileReader(io.BytesIO(data), strict=False).embedded_regular_signatures
        return str(signatures[index].sig_object.get("/Reason", "")) if signatures else ""
    except Exception:  # an unreadable file has already failed the signature checks
        return ""


def ledger_anchor_check(*, data: bytes, report: Report) -> tuple[bool | None, str]:
    """Check that the ledger, recomputed from its start, still ends the report's anchor entry with its hash.

    The anchor is read from the signed content (the signature's reason), so rewriting the report
    record does not help; the record's copy is the fallback for a reason that does not state it.
    None: the report states no anchor, so there is nothing to check.
    """
    # The issuing signature states the anchor; a sign-off added later does not move it.
    anchor = ledger_anchor_parse(signed_reason(data, index=0))
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


# After a signature, only these changes may follow it: another signature (form filling) or validation data.
LATER_CHANGES_ALLOWED = {"", "NONE", "LTA_UPDATES", "FORM_FILLING"}


def _which(index: int, count: int) -> str:
    if count == 1:
        return "the signature"
    return "the issuing signature" if index == 0 else f"signature {index + 1} (a person's sign-off)"


def _coverage_problem(signatures: list[SignatureCheck]) -> str:
    """Say how the signatures fail to cover the file; "" when the last covers it all and each earlier its revision."""
    last = signatures[-1]
    if not last.unmodified:
        if not last.entire_file:
            return f"bytes were added after {_which(len(signatures) - 1, len(signatures))}"
        return f"modification level {last.modification_level}"
    for index, check in enumerate(signatures[:-1]):
        if check.coverage != "ENTIRE_REVISION" or check.modification_level not in LATER_CHANGES_ALLOWED:
            return (f"{_which(index, len(signatures))} does not cover its whole revision or was followed by more "
                    f"than a signature (coverage {check.coverage or '?'}, later changes "
                    f"{check.modification_level or '?'})")
    ends = [check.revision_end for check in signatures]
    if ends != sorted(ends) or len(set(ends)) != len(ends):
        return "the signatures do not each cover the revisions before them"
    return ""


def report_verify(*, data: bytes, ledger: bool = False, require_anchor: bool = False) -> Verdict:
    """Check a report file against this instance's signing identity, its issued reports and (if asked) ledger.

    ``require_anchor`` fails a report that states no ledger head instead of skipping the ledger check.
    A file with a person's sign-off (two signatures) must pass every check with both.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    results: dict[str, tuple[bool, str]] = {}
    try:
        identity = signing_identity_load(p12_path=settings.PLD_SIGNING_P12, passphrase=signing_passphrase())
    except SigningError:
        identity = None  # still say what we can about the file; the signer check fails below
    signatures = pdf_signatures_validate(data, trust=identity.certificate if identity else None)
    signature = signatures[-1]
    count = len(signatures)

    def verdict(report: Report | None = None) -> Verdict:
        return _verdict(sha256, results, signature=signature, report=report, signatures=signatures)

    if not signature.has_signature:
        results["signed_pdf"] = (False, signature.problem)
        return verdict()
    if count == 1:
        results["signed_pdf"] = (True, f"signed by {signature.signer_subject or 'an unnamed signer'}")
    else:
        named = ", ".join(f"{check.field_name or '?'}" + (f" for {check.name}" if check.name else "")
                          for check in signatures)
        results["signed_pdf"] = (True, f"{count} signatures: {named}")
    for index, check in enumerate(signatures):
        if check.problem or not check.valid:
            summary = check.details.get("summary", "")
            detail = f"the signature does not match the signed content (validator: {summary})"
            prefix = "" if count == 1 else f"{_which(index, count)}: "
            results["intact"] = (False, prefix + (check.problem or detail))
            return verdict()
    results["intact"] = (True, "digest and signature value match" if count == 1
                         else f"all {count} signatures: digest and signature value match")
    problem = _coverage_problem(signatures)
    if problem:
        results["unmodified"] = (False, problem)
        return verdict()
    results["unmodified"] = (True, "the signature covers the entire file" if count == 1 else
                             "the last signature covers the entire file; each earlier one its whole revision, "
                             "followed only by a signature")
    if identity is None:
        results["signer"] = (False, f"this instance has no signing identity at {settings.PLD_SIGNING_P12}")
        return verdict()
    for index, check in enumerate(signatures):
        if not (check.trusted and check.signer_fingerprint == identity.fingerprint):
            prefix = "" if count == 1 else f"{_which(index, count)}: "
            results["signer"] = (
                False,
                prefix + (check.details.get("validity")
                          or f"signed by {check.signer_subject} (certificate SHA-256 {check.signer_fingerprint}); "
                          f"this instance signs as {identity.subject} ({identity.fingerprint})"),
            )
            return verdict()
    results["signer"] = (True, f"{identity.subject}, certificate SHA-256 {identity.fingerprint}")
    reports = Report.objects.select_related("prompt_version__task", "generated_by", "signature").filter(
        status=Report.Status.READY
    )
    if count == 1:
        report = reports.filter(sha256=sha256).first()
    else:
        report = reports.filter(signed_off_sha256=sha256).first()
        first_revision = hashlib.sha256(data[: signatures[0].revision_end]).hexdigest()
        if report is not None and (count != 2 or first_revision != report.sha256):
            report = None  # the stored copy's first revision must be the issued report, byte for byte
    if report is None:
        results["issued"] = (False, "")
        return verdict()
    detail = (f"report {report.pk} on {report.prompt_version}, generated {report.created_at:%Y-%m-%d %H:%M} UTC "
              f"by {report.generated_by}")
    if count > 1 and report.signature is not None:
        detail += (f"; signed off: {report.signature.manifestation}; its first revision is the issued file "
                   f"(SHA-256 {report.sha256})")
    results["issued"] = (True, detail)
    if ledger:
        passed, detail = ledger_anchor_check(data=data, report=report)
        results["ledger"] = (False if passed is None and require_anchor else passed, detail)
    return verdict(report)
