"""Signing identities and PAdES signatures: create, sign, validate, timestamp."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from evaluation.release.pdf_signing import (
    SigningError,
    pdf_sign,
    pdf_signature_validate,
    signing_identity_create,
    signing_identity_load,
)
from tests.support.tsa import loopback_tsa

PASSPHRASE = "correct horse"


@pytest.fixture(scope="session")
def identity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signing") / "identity.p12"
    signing_identity_create(path=path, passphrase=PASSPHRASE, common_name="PLD Review test signer", years=3)
    return path


@pytest.fixture(scope="session")
def plain_pdf() -> bytes:
    import weasyprint

    return weasyprint.HTML(string="<h1>Audit</h1><p>Nothing but a test page.</p>").write_pdf()


def test_it_creates_a_self_signed_identity_fit_for_document_signing(identity_file: Path) -> None:
    identity = signing_identity_load(p12_path=identity_file, passphrase=PASSPHRASE)
    usage = identity.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    assert not usage.key_cert_sign
    assert identity.is_self_signed
    assert identity.common_name == "PLD Review test signer"
    lifetime = identity.not_valid_after - identity.certificate.not_valid_before_utc
    assert 3 * 365 - 1 <= lifetime.days <= 3 * 365 + 1
    assert len(identity.fingerprint.split(":")) == 32
    assert stat.S_IMODE(identity_file.stat().st_mode) == 0o600


def test_it_refuses_to_overwrite_an_identity_without_force(identity_file: Path, tmp_path: Path) -> None:
    before = identity_file.read_bytes()
    with pytest.raises(SigningError, match="already exists"):
        signing_identity_create(path=identity_file, passphrase=PASSPHRASE, common_name="Someone else")
    assert identity_file.read_bytes() == before


def test_it_refuses_a_wrong_passphrase(identity_file: Path) -> None:
    with pytest.raises(SigningError, match="wrong passphrase"):
        signing_identity_load(p12_path=identity_file, passphrase="not it")


def test_a_signed_pdf_is_intact_trusted_and_covers_the_whole_file(identity_file: Path, plain_pdf: bytes) -> None:
    identity = signing_identity_load(p12_path=identity_file, passphrase=PASSPHRASE)
    signed = pdf_sign(plain_pdf, p12_path=identity_file, passphrase=PASSPHRASE)
    assert signed.startswith(plain_pdf)  # an incremental update: the rendered bytes stay as they were
    check = pdf_signature_validate(signed, trust=identity.certificate)
    assert check.has_signature and check.intact and check.valid and check.trusted
    assert check.entire_file and check.unmodified
    assert check.signer_fingerprint == identity.fingerprint
    assert check.timestamp_time is None


def test_a_signature_is_not_trusted_against_another_certificate(
    identity_file: Path, plain_pdf: bytes, tmp_path: Path
) -> None:
    other = signing_identity_create(path=tmp_path / "other.p12", passphrase="", common_name="Another signer")
    signed = pdf_sign(plain_pdf, p12_path=identity_file, passphrase=PASSPHRASE)
    check = pdf_signature_validate(signed, trust=other.certificate)
    assert check.intact and not check.trusted


def test_bytes_appended_after_signing_leave_the_signature_short_of_the_entire_file(
    identity_file: Path, plain_pdf: bytes
) -> None:
    identity = signing_identity_load(p12_path=identity_file, passphrase=PASSPHRASE)
    signed = pdf_sign(plain_pdf, p12_path=identity_file, passphrase=PASSPHRASE)
    check = pdf_signature_validate(signed + b"%", trust=identity.certificate)
    assert check.intact and not check.entire_file and not check.unmodified


def test_an_unsigned_pdf_and_a_non_pdf_have_no_signature(plain_pdf: bytes) -> None:
    assert pdf_signature_validate(plain_pdf).problem == "The PDF carries no signature."
    assert pdf_signature_validate(b"hello").problem == "The file is not a PDF."


def test_with_a_timestamp_authority_the_signature_carries_a_timestamp(identity_file: Path, plain_pdf: bytes) -> None:
    identity = signing_identity_load(p12_path=identity_file, passphrase=PASSPHRASE)
    with loopback_tsa() as url:
        signed = pdf_sign(plain_pdf, p12_path=identity_file, passphrase=PASSPHRASE, tsa_url=url)
    check = pdf_signature_validate(signed, trust=identity.certificate)
    assert check.valid and check.unmodified
    assert check.timestamp_time is not None


def test_an_unreachable_timestamp_authority_is_a_signing_error(identity_file: Path, plain_pdf: bytes) -> None:
    with loopback_tsa() as url:
        pass  # the server is gone once the block ends: its port refuses connections
    with pytest.raises(SigningError):
        pdf_sign(plain_pdf, p12_path=identity_file, passphrase=PASSPHRASE, tsa_url=url)


def test_the_command_creates_an_identity_exports_its_certificate_and_refuses_to_overwrite_it(
    settings, tmp_path: Path  # noqa: ANN001
) -> None:
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.PLD_SIGNING_PASSPHRASE = "from-settings"
    out, pem = tmp_path / "demo.p12", tmp_path / "signer.pem"
    output = io.StringIO()
    call_command("create_signing_identity", "--out", str(out), "--common-name", "Acme signer", stdout=output)
    identity = signing_identity_load(p12_path=out, passphrase="from-settings")
    assert identity.common_name == "Acme signer"
    assert identity.fingerprint in output.getvalue()

    call_command("create_signing_identity", "--out", str(out), "--export-cert", str(pem), stdout=io.StringIO())
    assert x509.load_pem_x509_certificate(pem.read_bytes()) == identity.certificate

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_signing_identity", "--out", str(out), stdout=io.StringIO())
    call_command("create_signing_identity", "--out", str(out), "--force", "--passphrase", "new", stdout=io.StringIO())
    assert signing_identity_load(p12_path=out, passphrase="new").fingerprint != identity.fingerprint
