"""The test identity provider (tests/idp/) as a subprocess on loopback, and a browser-less way through its login.

The app under test reaches it over HTTP only: discovery document, authorization, token and JWKS endpoints.
"""
from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "pld-review-tests"
CLIENT_SECRET = "pld-review-tests-secret-" + "z" * 20
PROVIDER_ID = "idp"
# What the Django test client's requests look like: the provider must allow this redirect too.
TEST_CLIENT_CALLBACK = f"http://testserver/accounts/oidc/{PROVIDER_ID}/login/callback/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class IdentityProvider:
    """A running test provider: its base URL and the process serving it."""

    url: str
    process: subprocess.Popen

    def user(self, username: str, *, groups: list[str], email: str = "", email_verified: bool = True,
             is_active: bool = True, first_name: str = "", last_name: str = "") -> str:
        """Create or change a user at the provider; return their subject identifier. Their password: idp-<name>."""
        response = requests.post(urljoin(self.url, "/fixture/user/"), json={
            "username": username, "groups": groups, "email": email or f"{username}@example.org",
            "email_verified": email_verified, "is_active": is_active,
            "first_name": first_name, "last_name": last_name,
        }, timeout=10)
        response.raise_for_status()
        return response.json()["sub"]

    def allow_redirect(self, uri: str) -> None:
        """Register one more redirect URI for the app's client (the live server's)."""
        requests.post(urljoin(self.url, "/fixture/redirect/"), json={"uri": uri}, timeout=10).raise_for_status()

    def app_settings(self) -> dict:
        """Return SOCIALACCOUNT_PROVIDERS for the app under test, pointed at this provider (PKCE on)."""
        return {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": [{
            "provider_id": PROVIDER_ID, "name": "Test IdP", "client_id": CLIENT_ID, "secret": CLIENT_SECRET,
            "settings": {"server_url": self.url, "token_auth_method": "client_secret_post"},
        }]}}

    def sign_in(self, authorize_url: str, username: str, password: str = "") -> str:
        """Act as the person's browser at the provider: follow ``authorize_url``, log in, return the app's callback URL.

        Only the provider's own pages are visited here; the callback URL is handed back for the app's client.
        """
        with requests.Session() as browser:
            response = browser.get(authorize_url, allow_redirects=False, timeout=10)
            while response.is_redirect and response.headers["Location"].startswith(("/", self.url)):
                response = browser.get(urljoin(self.url, response.headers["Location"]), allow_redirects=False,
                                       timeout=10)
                if response.url.split("?")[0].endswith("/login/") and response.status_code == 200:
                    response = browser.post(response.url, data={
                        "csrfmiddlewaretoken": browser.cookies["idp_csrftoken"], "username": username,
                        "password": password or f"idp-{username}",
                    }, headers={"Referer": response.url}, allow_redirects=False, timeout=10)
            if not response.is_redirect:
                raise AssertionError(f"the provider did not send the browser back: {response.status_code} "
                                     f"{response.text[:300]}")
            return response.headers["Location"]


def idp_start() -> IdentityProvider:
    """Start the provider with a fresh RS256 key and database; wait until its discovery document answers."""
    folder = Path(tempfile.mkdtemp(prefix="pld-test-idp-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    port = _free_port()
    env = {**os.environ, "IDP_DB": str(folder / "idp.sqlite3"), "IDP_KEY": str(folder / "key.pem")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = open(folder / "idp.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.idp.serve", str(port), CLIENT_ID, CLIENT_SECRET, TEST_CLIENT_CALLBACK],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the test IdP exited: {(folder / 'idp.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/o/.well-known/openid-configuration", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the test IdP did not answer within 60 s")
        time.sleep(0.2)
    return IdentityProvider(url=f"{url}/o", process=process)


def idp_stop(idp: IdentityProvider) -> None:
    """Stop the provider's process."""
    idp.process.terminate()
    try:
        idp.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        idp.process.kill()


def sso_sign_in(client, idp: IdentityProvider, username: str, *, next_path: str = "/"):  # noqa: ANN001, ANN201
    """Sign ``client`` (a Django test client) in through the provider as ``username``; return the callback's answer.

    The app's own pages are requested through the client, the provider's through plain HTTP (``sign_in``).
    """
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/?process=login", {"next": next_path})
    assert start.status_code == 302, start.content[:500]
    return client_callback(client, idp.sign_in(start["Location"], username))


def client_callback(client, callback_url: str):  # noqa: ANN001, ANN201
    """Hand the provider's redirect back to the app through the test client."""
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


# --- SAML 2.0: pysaml2's identity provider (tests/idp/saml_serve.py) ---------------------------------------

SAML_ORG = "test-saml"
SAML_SP_ENTITY_ID = "urn:pld-review:tests:sp"


@dataclass
class SamlIdentityProvider:
    """A running SAML test provider: its base URL and the process serving it."""

    url: str
    process: subprocess.Popen

    def user(self, username: str, *, groups: list[str], email: str = "", is_active: bool = True,
             first_name: str = "", last_name: str = "") -> None:
        """Create or change a user at the provider. Their password: idp-<name>."""
        requests.post(f"{self.url}/fixture/user", json={
            "username": username, "groups": groups, "email": email or f"{username}@example.org",
            "is_active": is_active, "first_name": first_name, "last_name": last_name,
        }, timeout=10).raise_for_status()

    def allow_acs(self, acs_url: str) -> None:
        """Register the app's assertion consumer service URL (the provider answers only known ones)."""
        requests.post(f"{self.url}/fixture/sp", json={"entity_id": SAML_SP_ENTITY_ID, "acs_url": acs_url},
                      timeout=30).raise_for_status()

    def app_settings(self) -> dict:
        """Return SOCIALACCOUNT_PROVIDERS' "saml" entry for the app, reading the provider's metadata over HTTP."""
        return {"saml": {"provider_class": "pldreview.accounts.saml.PldSAMLProvider", "APPS": [{
            "name": "Test SAML IdP", "provider_id": "saml-idp", "client_id": SAML_ORG,
            "settings": {
                "attribute_mapping": settings.SAML_ATTRIBUTES,  # the mapping production uses
                "idp": {"entity_id": f"{self.url}/metadata", "metadata_url": f"{self.url}/metadata"},
                "sp": {"entity_id": SAML_SP_ENTITY_ID},
                # The test client's host is "testserver", a name without a dot.
                "advanced": {"want_assertion_signed": True, "want_message_signed": True, "strict": True,
                             "reject_idp_initiated_sso": True, "allow_single_label_domains": True},
            },
        }]}}

    def sign_in(self, sso_url: str, username: str) -> dict[str, str]:
        """Act as the person's browser at the provider: log in; return the form it posts back (action and fields)."""
        with requests.Session() as browser:
            page = browser.get(sso_url, timeout=10).text
            token = re.search(r"name='token' value='([^']+)'", page).group(1)
            answer = browser.post(f"{self.url}/login", data={
                "token": token, "username": username, "password": f"idp-{username}"}, timeout=30).text
        action = html.unescape(re.search(r'action="([^"]+)"', answer).group(1))
        fields = {name: html.unescape(value)
                  for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', answer)}
        return {"action": action, **fields}


def saml_idp_start() -> SamlIdentityProvider:
    """Start the SAML provider with a fresh key and self-signed certificate; wait until its metadata answers."""
    folder = Path(tempfile.mkdtemp(prefix="pld-test-saml-idp-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PLD Review test SAML IdP")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=2)).sign(key, hashes.SHA256()))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    port = _free_port()
    log = open(folder / "idp.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "tests.idp.saml_serve", str(port), str(folder / "key.pem"),
         str(folder / "cert.pem")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the SAML test IdP exited: {(folder / 'idp.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/metadata", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the SAML test IdP did not answer within 60 s")
        time.sleep(0.2)
    return SamlIdentityProvider(url=url, process=process)


def saml_sign_in(client, idp: SamlIdentityProvider, username: str, *, next_path: str = "/"):  # noqa: ANN001, ANN201
    """Sign ``client`` in through the SAML provider as ``username``; return the app's final answer."""
    # python3-saml builds the URLs it checks from the Host header, which the test client sends only when told.
    client.defaults.setdefault("HTTP_HOST", "testserver")
    start = client.post(f"/accounts/saml/{SAML_ORG}/login/?process=login", {"next": next_path})
    assert start.status_code == 302, start.content[:500]
    posted = idp.sign_in(start["Location"], username)
    action = urlsplit(posted.pop("action"))
    return client.post(action.path, posted, follow=True)
