"""Self-signed certificates for tests (a timestamp authority, an expired signer)."""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def self_signed(
    common_name: str,
    *,
    valid_from: dt.timedelta,
    valid_until: dt.timedelta,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Return a new RSA key and a self-signed certificate valid between now + valid_from and now + valid_until."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid_from)
        .not_valid_after(now + valid_until)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return key, builder.sign(key, hashes.SHA256())
