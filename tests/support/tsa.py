"""A real RFC 3161 timestamp authority on loopback, for tests of timestamped signatures.

pyHanko's DummyTimeStamper does the token signing; this wraps it in an HTTP server so the app's
HTTP timestamp client is exercised exactly as with a real TSA.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from asn1crypto import keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.certificates import self_signed
from tests.support.servers import serve_in_thread, server_url


def _tsa_identity() -> tuple[asn1_x509.Certificate, keys.PrivateKeyInfo]:
    key, cert = self_signed(
        "Test TSA", valid_from=dt.timedelta(minutes=-5), valid_until=dt.timedelta(days=30),
        extensions=((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),),
    )
    der_key = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        keys.PrivateKeyInfo.load(der_key),
    )


@contextmanager
def loopback_tsa() -> Iterator[str]:
    """Serve a timestamp authority on 127.0.0.1 and yield its URL."""
    from pyhanko.sign.timestamps import DummyTimeStamper

    cert, key = _tsa_identity()
    stamper = DummyTimeStamper(tsa_cert=cert, tsa_key=key)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            response = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(response)))
            self.end_headers()
            self.wfile.write(response)

        def log_message(self, *args: object) -> None:
            pass

    with serve_in_thread(Handler) as server:
        yield server_url(server)
