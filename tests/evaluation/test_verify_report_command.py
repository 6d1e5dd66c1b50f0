"""``manage.py verify_report``: exit 0 only for an untouched report this instance issued."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.models import Report
from evaluation.release.pdf_signing import pdf_sign, signing_identity_create
from evaluation.release.reports import report_generate, report_path
from rules.models import Task
from tests.support.reports import PASSPHRASE, build_report_story

PYHANKO_CLI = Path(sys.executable).parent / "pyhanko"


@pytest.fixture
def issued(pdf_signing: Path, task: Task, reviewer: User, second_reviewer: User, admin_user: User) -> bytes:
    """Return the bytes of a report this instance issued."""
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    report = report_generate(prompt_version=story.version, user=admin_user)
    assert report.status == Report.Status.READY, report.error
    return report_path(report).read_bytes()


def _small_pdf() -> bytes:
    import weasyprint

    return weasyprint.HTML(string="<h1>Audit report</h1><p>Everything was approved.</p>").write_pdf()


def _verify(data: bytes, tmp_path: Path) -> str:
    """Run the command on the bytes; return its output, raising CommandError as the command does."""
    path = tmp_path / "copy.pdf"
    path.write_bytes(data)
    out = io.StringIO()
    call_command("verify_report", str(path), stdout=out)
    return out.getvalue()


def _flip(data: bytes, offset: int) -> bytes:
    """Change the byte at offset into another byte of the same kind (hex digit stays hex)."""
    old = data[offset : offset + 1]
    new = b"1" if old == b"0" else b"0" if old in b"123456789ABCDEFabcdef" else bytes([data[offset] ^ 0x01])
    return data[:offset] + new + data[offset + 1 :]


def _contents_hex(data: bytes) -> tuple[int, int]:
    """Return where the signature's /Contents hex string starts and how many hex digits its DER uses."""
    start = data.rfind(b"/Contents <") + len(b"/Contents <")
    header = bytes.fromhex(data[start : start + 8].decode())
    assert header[0] == 0x30 and header[1] == 0x82  # a DER SEQUENCE with a two-byte length
    der_length = 4 + int.from_bytes(header[2:4], "big")
    return start, der_length * 2


def _page_content_offset(data: bytes) -> int:
    """Return an offset inside the first page's content stream."""
    from pypdf import PdfReader

    page = PdfReader(io.BytesIO(data)).pages[0]
    ref = page.get("/Contents")
    ref = ref[0] if isinstance(ref, list) else ref
    match = re.search(rb"\n%d 0 obj" % ref.idnum, data)
    assert match is not None
    stream = data.index(b"stream", match.end()) + len(b"stream\n")
    return stream + 10


def test_an_issued_report_verifies(issued: bytes, tmp_path: Path) -> None:
    output = _verify(issued, tmp_path)
    assert "Verified: report" in output
    assert output.count("[pass]") == 5


def test_a_changed_byte_in_the_page_content_breaks_the_signature(issued: bytes, tmp_path: Path) -> None:
    tampered = _flip(issued, _page_content_offset(issued))
    with pytest.raises(CommandError, match="The signature is not valid"):
        _verify(tampered, tmp_path)


def test_a_changed_byte_in_the_signature_value_breaks_the_signature(issued: bytes, tmp_path: Path) -> None:
    start, der_hex = _contents_hex(issued)
    # The RSA signature value is the last field of the CMS; change a digit inside it.
    tampered = _flip(issued, start + der_hex - 20)
    with pytest.raises(CommandError, match="The signature is not valid"):
        _verify(tampered, tmp_path)


def test_a_byte_appended_after_signing_is_a_modification(issued: bytes, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="modified after it was signed"):
        _verify(issued + b"\n", tmp_path)


def test_a_changed_byte_in_the_signature_padding_is_not_an_issued_report(issued: bytes, tmp_path: Path) -> None:
    start, der_hex = _contents_hex(issued)
    # The zeros after the DER are outside the signed byte range and ignored by CMS parsers: only the
    # record of issued reports notices this change.
    tampered = _flip(issued, start + der_hex + 100)
    with pytest.raises(CommandError, match="Not issued by this instance"):
        _verify(tampered, tmp_path)


def test_a_validly_signed_pdf_the_app_never_issued_is_not_issued_by_this_instance(
    pdf_signing: Path, tmp_path: Path
) -> None:
    forged = pdf_sign(_small_pdf(), p12_path=pdf_signing, passphrase=PASSPHRASE)
    with pytest.raises(CommandError, match="Not issued by this instance"):
        _verify(forged, tmp_path)


def test_a_pdf_signed_by_another_identity_fails_the_signer_check(pdf_signing: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.p12"
    signing_identity_create(path=other, passphrase="", common_name="Somebody else")
    stranger = pdf_sign(_small_pdf(), p12_path=other, passphrase="")
    with pytest.raises(CommandError, match="not this instance's signing identity"):
        _verify(stranger, tmp_path)


def test_a_file_that_is_not_a_pdf_is_not_a_signed_pdf(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Not a signed PDF"):
        _verify(b"just text", tmp_path)


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="pdfsig (Debian poppler-utils) is not installed")
def test_pdfsig_reports_the_signature_as_valid_and_a_changed_copy_as_invalid(issued: bytes, tmp_path: Path) -> None:
    good, bad = tmp_path / "report.pdf", tmp_path / "changed.pdf"
    good.write_bytes(issued)
    bad.write_bytes(_flip(issued, _page_content_offset(issued)))

    result = subprocess.run(["pdfsig", str(good)], capture_output=True, text=True, timeout=60)
    assert "Signature Validation: Signature is Valid." in result.stdout
    assert "Total document signed" in result.stdout
    changed = subprocess.run(["pdfsig", str(bad)], capture_output=True, text=True, timeout=60)
    assert "Signature Validation: Digest Mismatch." in changed.stdout


@pytest.mark.skipif(not PYHANKO_CLI.exists(), reason="pyHanko's CLI (pyhanko-cli, in the test extra) is not installed")
def test_pyhankos_own_validator_accepts_the_report_against_our_certificate(
    issued: bytes, pdf_signing: Path, tmp_path: Path
) -> None:
    report, cert = tmp_path / "report.pdf", tmp_path / "signer.pem"
    report.write_bytes(issued)
    call_command("create_signing_identity", "--out", str(pdf_signing), "--export-cert", str(cert), stdout=io.StringIO())

    result = subprocess.run(
        [str(PYHANKO_CLI), "sign", "validate", "--pretty-print", "--no-revocation-check", "--trust-replace",
         "--trust", str(cert), str(report)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The signature is judged VALID" in result.stdout
