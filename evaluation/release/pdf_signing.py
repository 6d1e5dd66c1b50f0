"""Signing identities and PAdES signatures on PDF files, with pyHanko.

The identity is a PKCS#12 file (key + certificate) named in settings. ``signing_identity_create``
writes a self-signed one for the demo and tests; a real deployment points ``PLD_SIGNING_P12`` at an
identity issued by its own CA. A signature is an incremental update over the rendered file, so
the bytes WeasyPrint produced stay as they were, and any byte appended later is visible.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings

from pldreview import local_secrets

SIGNATURE_FIELD = "PLDReviewSignature"
# The field of a person's sign-off: a second signature, added as an incremental update over the issued file.
SIGN_OFF_FIELD = "PLDReviewSignOff"
# RSA rather than ECDSA: every PDF reader, pdfsig (NSS) included, validates it.
KEY_SIZE = 3072
# Room for the CMS with the certificate and, when a TSA is configured, its token and chain.
SIGNATURE_BYTES_RESERVED = 32 * 1024


class SigningError(Exception):
    """The signing identity or the timestamp authority could not be used."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class SigningIdentity:
    """The certificate of a PKCS#12 signing identity (the key stays in the file)."""

    path: Path
    certificate: x509.Certificate

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else self.certificate.subject.rfc4514_string()

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.certificate)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def not_valid_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def is_self_signed(self) -> bool:
        return self.certificate.issuer == self.certificate.subject


@dataclass(frozen=True)
class SignatureCheck:
    """What validating the (last) signature of a PDF found; each flag answers one question."""

    has_signature: bool
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    entire_file: bool = False
    unmodified: bool = False
    signer_valid_at_signing: bool = False
    signer_subject: str = ""
    signer_fingerprint: str = ""
    signing_time: dt.datetime | None = None
    timestamp_time: dt.datetime | None = None
    coverage: str = ""
    modification_level: str = ""
    problem: str = ""
    details: dict[str, str] = field(default_factory=dict)
    field_name: str = ""
    name: str = ""
    reason: str = ""
    # The byte where the revision this signature signs ends: the file up to it is what it covers.
    revision_end: int = 0


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """Return the certificate's SHA-256 fingerprint as colon-separated upper-case hex."""
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def signing_passphrase() -> str:
    """Return the signing identity's passphrase: PLD_SIGNING_PASSPHRASE, else the one kept under PLD_VAR_DIR."""
    # Read now, not only when the settings were imported: the demo keeps one in the same process that signs.
    kept = local_secrets.secret_read(Path(settings.VAR_DIR), local_secrets.SIGNING_PASSPHRASE)
    return settings.PLD_SIGNING_PASSPHRASE or kept


def signing_passphrase_keep() -> tuple[str, bool]:
    """Return the passphrase, first keeping a new one under PLD_VAR_DIR when none is set; and whether it is new."""
    current = signing_passphrase()
    if current:
        return current, False
    return local_secrets.secret_keep(Path(settings.VAR_DIR), local_secrets.SIGNING_PASSPHRASE)


def _passphrase_bytes(passphrase: str) -> bytes | None:
    return passphrase.encode("utf-8") if passphrase else None


def signing_identity_create(
    *,
    path: str | Path,
    passphrase: str,
    common_name: str,
    organization: str = "",
    years: int = 5,
    force: bool = False,
) -> SigningIdentity:
    """Write a self-signed PKCS#12 identity fit for document signing (demo and tests)."""
    path = Path(path)
    if path.exists() and not force:
        raise SigningError(
            f"{path} already exists; replace it only on purpose (--force): reports signed with it would then "
            "no longer verify as this instance's"
        )
    if not common_name.strip():
        raise SigningError("A signing identity needs a common name")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name.strip())]
    if organization.strip():
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization.strip()))
    name = x509.Name(attributes)
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation: the signer stands behind the document
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(
        name=common_name.strip().encode("utf-8"), key=key, cert=certificate, cas=None, encryption_algorithm=encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file holds a private key: readable by its owner only.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
    return SigningIdentity(path=path, certificate=certificate)


def signing_identity_load(*, p12_path: str | Path, passphrase: str) -> SigningIdentity:
    """Read the certificate of a PKCS#12 identity, checking the passphrase opens it."""
    path = Path(p12_path)
    if not path.is_file():
        raise SigningError(
            f"No signing identity at {path}; create one with `manage.py create_signing_identity` "
            "or set PLD_SIGNING_P12"
        )
    try:
        _key, certificate, _others = pkcs12.load_key_and_certificates(path.read_bytes(), _passphrase_bytes(passphrase))
    except ValueError as exc:
        unset = "" if passphrase else (
            "; no passphrase is set: set PLD_SIGNING_PASSPHRASE, or keep it in PLD_VAR_DIR/signing/passphrase "
            "(scripts/setup and `manage.py create_signing_identity` make one)"
        )
        raise SigningError(f"Cannot open the signing identity {path}: wrong passphrase or not PKCS#12{unset}") from exc
    if certificate is None:
        raise SigningError(f"The signing identity {path} holds no certificate")
    return SigningIdentity(path=path, certificate=certificate)


def pdf_sign(
    pdf_bytes: bytes,
    *,
    p12_path: str | Path,
    passphrase: str,
    tsa_url: str = "",
    reason: str = "Audit report issued by PLD Review",
    location: str = "",
    field_name: str = SIGNATURE_FIELD,
    name: str = "",
) -> bytes:
    """Return the PDF with a PAdES signature appended as an incremental update.

    ``name`` is the signature dictionary's /Name (the person the signature is made for); earlier
    revisions, and the signatures in them, stay byte for byte as they were.
    """
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps import HTTPTimeStamper

    signing_identity_load(p12_path=p12_path, passphrase=passphrase)  # clear error before pyHanko's
    signer = signers.SimpleSigner.load_pkcs12(pfx_file=str(p12_path), passphrase=_passphrase_bytes(passphrase))
    if signer is None:
        raise SigningError(f"pyHanko could not load the signing identity {p12_path}")
    metadata = signers.PdfSignatureMetadata(
        field_name=field_name,
        name=name or None,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location or None,
    )
    timestamper = HTTPTimeStamper(tsa_url, timeout=20) if tsa_url else None
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf_bytes), strict=False)
    out = io.BytesIO()
    try:
        signers.sign_pdf(
            writer,
            metadata,
            signer=signer,
            timestamper=timestamper,
            output=out,
            bytes_reserved=SIGNATURE_BYTES_RESERVED,
        )
    except Exception as exc:  # pyHanko raises many types; the caller needs one
        transient = bool(tsa_url) and "timestamp" in f"{type(exc).__name__} {exc}".lower()
        raise SigningError(f"Signing failed: {type(exc).__name__}: {exc}", permanent=not transient) from exc
    return out.getvalue()


def _as_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _embedded_signatures(pdf_bytes: bytes) -> tuple[list, SignatureCheck | None]:
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not pdf_bytes.lstrip()[:5] == b"%PDF-":
        return [], SignatureCheck(has_signature=False, problem="The file is not a PDF.")
    try:
        reader = PdfFileReader(io.BytesIO(pdf_bytes), strict=False)
        signatures = list(reader.embedded_regular_signatures)
    except Exception as exc:  # a damaged file fails in many ways; all mean "cannot be read"
        return [], SignatureCheck(has_signature=False, problem=f"The PDF cannot be read: {type(exc).__name__}: {exc}")
    if not signatures:
        return [], SignatureCheck(has_signature=False, problem="The PDF carries no signature.")
    return signatures, None


def pdf_signature_validate(pdf_bytes: bytes, *, trust: x509.Certificate | None = None) -> SignatureCheck:
    """Validate the last signature of a PDF, trusting only the given certificate."""
    signatures, failure = _embedded_signatures(pdf_bytes)
    if failure is not None:
        return failure
    return _signature_validate(signatures[-1], trust)


def pdf_signatures_validate(pdf_bytes: bytes, *, trust: x509.Certificate | None = None) -> list[SignatureCheck]:
    """Validate every signature of a PDF, oldest first; one failed check when the file has none."""
    signatures, failure = _embedded_signatures(pdf_bytes)
    if failure is not None:
        return [failure]
    return [_signature_validate(embedded, trust) for embedded in signatures]


def _text(value: object) -> str:
    return str(value) if value is not None else ""


def _signature_validate(embedded: object, trust: x509.Certificate | None) -> SignatureCheck:
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    sig_object = embedded.sig_object  # type: ignore[attr-defined]
    byte_range = list(sig_object.get("/ByteRange", []) or [])
    described = {
        "field_name": _text(embedded.field_name),  # type: ignore[attr-defined]
        "name": _text(sig_object.get("/Name")),
        "reason": _text(sig_object.get("/Reason")),
        "revision_end": int(byte_range[2]) + int(byte_range[3]) if len(byte_range) == 4 else 0,
    }
    trust_roots = [_as_asn1(trust)] if trust is not None else []
    # Offline on purpose: a verdict must not depend on the network; our certificate is the only root.
    context = ValidationContext(trust_roots=trust_roots, allow_fetching=False, revocation_mode="soft-fail")
    try:
        status = validate_pdf_signature(embedded, context)
    except Exception as exc:  # a broken CMS blob (e.g. a changed byte in /Contents) lands here
        return SignatureCheck(
            has_signature=True, problem=f"The signature cannot be checked: {type(exc).__name__}: {exc}", **described
        )
    signer_cert = status.signing_cert
    subject = signer_cert.subject.human_friendly if signer_cert is not None else ""
    fingerprint = ""
    if signer_cert is not None:
        digest = hashlib.sha256(signer_cert.dump()).hexdigest().upper()
        fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    modification = status.modification_level
    timestamp = status.timestamp_validity
    signed_at = timestamp.timestamp if timestamp is not None else status.signer_reported_dt
    # certvalidator takes a trust anchor as it is, expired or not; a signature made outside the
    # certificate's validity must not count as trusted.
    in_validity = signer_cert is not None and (
        signed_at is None or signer_cert.not_valid_before <= signed_at <= signer_cert.not_valid_after
    )
    problem = "" if in_validity else (
        f"the signer's certificate was not valid when it signed ({signed_at:%Y-%m-%d %H:%M} UTC; valid "
        f"{signer_cert.not_valid_before:%Y-%m-%d} to {signer_cert.not_valid_after:%Y-%m-%d})"
        if signer_cert is not None and signed_at is not None
        else "no signer certificate"
    )
    return SignatureCheck(
        has_signature=True,
        intact=bool(status.intact),
        valid=bool(status.intact and status.valid),
        trusted=bool(status.trusted) and in_validity,
        signer_valid_at_signing=in_validity,
        entire_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        unmodified=status.coverage == SignatureCoverageLevel.ENTIRE_FILE
        and modification in (None, ModificationLevel.NONE),
        signer_subject=subject,
        signer_fingerprint=fingerprint,
        signing_time=status.signer_reported_dt,
        timestamp_time=timestamp.timestamp if timestamp is not None else None,
        coverage=status.coverage.name if status.coverage is not None else "",
        modification_level=modification.name if modification is not None else "",
        details={"summary": status.summary(), **({"validity": problem} if problem else {})},
        **described,
    )
