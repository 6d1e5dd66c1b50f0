"""A person's sign-off of a report: a second PAdES signature over the issued file, checked by verify_report."""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.models import Report
from evaluation.release.pdf_signing import SIGN_OFF_FIELD, pdf_sign, pdf_signatures_validate
from evaluation.release.reports import report_generate, report_path, report_sign, report_signed_off_path
from evaluation.release.verification import report_verify
from pldreview.models import LedgerEntry
from pldreview.signatures import Meaning
from rules.models import Task
from tests.support.reports import PASSPHRASE, build_report_story
from tests.support.signatures import sign


@pytest.fixture
def signed_off(pdf_signing: Path, task: Task, reviewer: User, second_reviewer: User, admin_user: User,
               auditor: User) -> Report:
    """Return a report issued by the instance and then signed off by the Auditor."""
    auditor.first_name, auditor.last_name = "Aude", "Auclair"
    auditor.save()
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    report = report_generate(prompt_version=story.version, user=admin_user)
    assert report.status == Report.Status.READY, report.error
    signature = sign(auditor, Meaning.REPORT_SIGNED, report.sha256, reason="Read in full")
    return report_sign(report=report, user=auditor, signature=signature)


def _verify(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "copy.pdf"
    path.write_bytes(data)
    out = io.StringIO()
    call_command("verify_report", str(path), "--ledger", stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_a_sign_off_is_a_second_signature_over_the_issued_bytes_and_both_verify(
    signed_off: Report, tmp_path: Path
) -> None:
    issued = report_path(signed_off).read_bytes()
    copy = report_signed_off_path(signed_off).read_bytes()

    assert signed_off.sha256 == hashlib.sha256(issued).hexdigest()  # the issued file is untouched
    assert copy[: len(issued)] == issued and len(copy) > len(issued)
    checks = pdf_signatures_validate(copy)
    assert [c.field_name for c in checks] == ["PLDReviewSignature", SIGN_OFF_FIELD]
    assert all(c.valid for c in checks) and checks[0].revision_end == len(issued)
    assert checks[1].name == "Aude Auclair"
    assert "Report signed by Aude Auclair on " in checks[1].reason and "meaning: Report signed" in checks[1].reason
    assert signed_off.sha256 in checks[1].reason

    output = _verify(copy, tmp_path)
    assert "2 signatures" in output and "signed off by Aude Auclair" in output
    assert "[pass] The ledger still holds" in output
    assert "Verified: report" in _verify(issued, tmp_path)  # the file as issued still verifies on its own
    if shutil.which("pdfsig"):  # poppler-utils: scripts/test installs it
        result = subprocess.run(["pdfsig", str(report_signed_off_path(signed_off))], capture_output=True, text=True,
                                check=False)
        assert result.stdout.count("Signature Validation: Signature is Valid.") == 2, result.stdout
        assert "Signature #2" in result.stdout and "Total document signed" in result.stdout
    # The ledger says what the page says: issued by the instance once, signed by a person once.
    events = LedgerEntry.objects.filter(object_id=str(signed_off.pk), event__startswith="report.")
    assert list(events.filter(event__in=["report.issued", "report.signed"]).values_list("event", flat=True)) == [
        "report.issued", "report.signed"]


@pytest.mark.slow
def test_verify_report_refuses_what_a_sign_off_must_not_be(signed_off: Report, tmp_path: Path, settings) -> None:  # noqa: ANN001
    issued = report_path(signed_off).read_bytes()
    copy = report_signed_off_path(signed_off).read_bytes()

    # A second signature made with the instance's own key but never recorded as a person's sign-off.
    forged = pdf_sign(issued, p12_path=settings.PLD_SIGNING_P12, passphrase=PASSPHRASE, field_name=SIGN_OFF_FIELD,
                      name="Someone Else", reason="Report signed by Someone Else")
    with pytest.raises(CommandError, match="Not issued by this instance"):
        _verify(forged, tmp_path)
    # A byte appended after the sign-off.
    with pytest.raises(CommandError, match="modified after it was signed: bytes were added after signature 2"):
        _verify(copy + b"%appended\n", tmp_path)
    # A byte changed in the issued revision breaks the issuing signature, whatever the sign-off says.
    offset = issued.index(b"stream\n") + 20
    changed = copy[:offset] + bytes([copy[offset] ^ 0x01]) + copy[offset + 1:]
    verdict = report_verify(data=changed)
    assert not verdict.ok and verdict.failed_check.key == "intact"
    # A signed-off copy whose first revision is not the issued file: the issued report's record moved on.
    Report.objects.filter(pk=signed_off.pk).update(sha256="0" * 64)
    verdict = report_verify(data=copy)
    assert not verdict.ok and verdict.failed_check.key == "issued"


@pytest.mark.slow
def test_an_auditor_signs_on_the_page_and_downloads_the_copy_with_two_signatures(
    pdf_signing: Path, task: Task, reviewer: User, second_reviewer: User, admin_user: User, auditor: User, client
) -> None:
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    report = report_generate(prompt_version=story.version, user=admin_user)
    client.force_login(auditor)
    assert "Not signed by a person yet." in client.get(f"/reports/{report.pk}/").content.decode()
    assert not LedgerEntry.objects.filter(event="report.signed", object_id=str(report.pk)).exists()

    response = client.post(f"/reports/{report.pk}/sign/", {"password": "pw-aude", "reason": "Read in full"})

    assert response.status_code == 302
    page = client.get(f"/reports/{report.pk}/").content.decode()
    assert "Not signed by a person yet." not in page and "Download the signed-off PDF (two signatures)" in page
    download = b"".join(client.get(f"/reports/{report.pk}/download/").streaming_content)
    assert len(pdf_signatures_validate(download)) == 2
    issued = b"".join(client.get(f"/reports/{report.pk}/download/?copy=issued").streaming_content)
    assert issued == report_path(report).read_bytes() and download.startswith(issued)
    verify = client.post("/reports/verify/", {"file": _upload(download)})
    body = verify.content.decode()
    assert "✔ Verified" in body and "Sign-off for" in body
    assert LedgerEntry.objects.filter(event="report.signed", object_id=str(report.pk)).count() == 1


def _upload(data: bytes):  # noqa: ANN202
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("report.pdf", data, content_type="application/pdf")
