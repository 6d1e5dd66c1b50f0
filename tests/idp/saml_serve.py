"""A real SAML 2.0 identity provider for the tests: pysaml2's ``Server`` behind a small WSGI app, its own process.

``python -m tests.idp.saml_serve PORT KEY CERT``: serves its metadata at /metadata, the single sign-on service
(HTTP-Redirect) at /sso, a login form, and the tests' fixture doors (/fixture/user, /fixture/sp). Responses and
assertions are signed with KEY/CERT through xmlsec1 (Debian's package). Users live in memory.
"""
from __future__ import annotations

import html
import json
import secrets
import sys
import threading
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_PERSISTENT
from saml2.server import Server

USERS: dict[str, dict[str, Any]] = {}
PENDING: dict[str, dict[str, Any]] = {}
# Who logged in at this provider, per browser cookie, and when: a request without ForceAuthn reuses it.
SESSIONS: dict[str, dict[str, Any]] = {}
STATE: dict[str, Any] = {"sps": {}}
LOCK = threading.Lock()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _sp_metadata(entity_id: str, acs_urls: list[str]) -> str:
    services = "".join(
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{html.escape(url)}" index="{i}"/>'
        for i, url in enumerate(acs_urls)
    )
    return (
        '<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{html.escape(entity_id)}"><md:SPSSODescriptor AuthnRequestsSigned="false" '
        'WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{services}</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def _server(base: str, key: str, cert: str) -> Server:
    inline = [_sp_metadata(entity, sorted(acs)) for entity, acs in STATE["sps"].items()]
    config = IdPConfig()
    config.load({
        "entityid": f"{base}/metadata",
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT)]},
            "policy": {"default": {"lifetime": {"minutes": 15}, "attribute_restrictions": None,
                                   "name_form": NAME_FORMAT_BASIC}},
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            "sign_response": True, "sign_assertion": True,
        }},
        "key_file": key, "cert_file": cert, "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"inline": inline} if inline else {},
        "attribute_map_dir": None,
    })
    return Server(config=config)


def _page(start_response: Any, body: str, *, status: str = "200 OK", headers: list | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/html; charset=utf-8"), *(headers or [])])
    return [body.encode()]


def _login_form(token: str, error: str = "") -> str:
    return (
        "<!doctype html><html lang='en'><head><title>Test SAML IdP: sign in</title></head><body>"
        "<h1>Test SAML identity provider</h1>"
        f"<p role='alert'>{html.escape(error)}</p>"
        "<form method='post' action='/login'>"
        f"<input type='hidden' name='token' value='{token}'>"
        "<label for='username'>SAML username</label> <input id='username' name='username'>"
        "<label for='password'>SAML password</label> <input id='password' name='password' type='password'>"
        "<button type='submit'>Sign in at the SAML IdP</button></form></body></html>"
    )


def _respond(start_response: Any, pending: dict[str, Any], username: str, authn_instant: int) -> list[bytes]:
    user = USERS[username]
    idp = STATE["server"]
    identity = {
        "uid": [username], "mail": [user["email"]], "givenName": [user["first_name"]], "sn": [user["last_name"]],
        "groups": list(user["groups"]),
    }
    response = idp.create_authn_response(
        identity, userid=username,
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
               "authn_instant": authn_instant},
        sign_response=True, sign_assertion=True, sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        digest_alg="http://www.w3.org/2001/04/xmlenc#sha256", **pending["args"],
    )
    http_args = idp.apply_binding(BINDING_HTTP_POST, str(response), pending["args"]["destination"],
                                  pending["relay_state"], response=True)
    return _page(start_response, http_args["data"])


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Serve the provider."""
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    browser = cookies["saml_idp_session"].value if "saml_idp_session" in cookies else ""
    if path == "/metadata":
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [str(entity_descriptor(STATE["server"].config)).encode()]
    if path == "/fixture/user" and method == "POST":
        data = json.loads(body)
        USERS[data["username"]] = data
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]
    if path == "/fixture/sp" and method == "POST":
        data = json.loads(body)
        with LOCK:
            STATE["sps"].setdefault(data["entity_id"], set()).add(data["acs_url"])
            STATE["server"] = _server(STATE["base"], STATE["key"], STATE["cert"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]
    if path == "/sso":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        info = STATE["server"].parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        request = info.message
        token = secrets.token_urlsafe(16)
        PENDING[token] = {
            "args": STATE["server"].response_args(request, [BINDING_HTTP_POST]),
            "relay_state": query.get("RelayState", [""])[0],
            "force_authn": str(request.force_authn).lower() in ("true", "1"),
        }
        known = SESSIONS.get(browser)
        if known and not PENDING[token]["force_authn"]:
            return _respond(start_response, PENDING.pop(token), known["username"], known["at"])
        return _page(start_response, _login_form(token))
    if path == "/login" and method == "POST":
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        pending = PENDING.get(form.get("token", ""))
        user = USERS.get(form.get("username", ""))
        if pending is None:
            return _page(start_response, "<p>No sign-in in progress.</p>", status="400 Bad Request")
        if user is None or not user.get("is_active", True) or form.get("password") != f"idp-{user['username']}":
            return _page(start_response, _login_form(form["token"], "Wrong username or password."))
        PENDING.pop(form["token"])
        now = int(datetime.now(UTC).timestamp())
        session = secrets.token_urlsafe(16)
        SESSIONS[session] = {"username": user["username"], "at": now}
        start = start_response

        def with_cookie(status: str, headers: list, *args: Any) -> Any:
            return start(status, [*headers, ("Set-Cookie", f"saml_idp_session={session}; Path=/; HttpOnly")], *args)

        return _respond(with_cookie, pending, user["username"], now)
    return _page(start_response, "<p>Not found</p>", status="404 Not Found")


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    port, key, cert = sys.argv[1:4]
    STATE.update(base=f"http://127.0.0.1:{port}", key=key, cert=cert)
    STATE["server"] = _server(STATE["base"], key, cert)
    make_server("127.0.0.1", int(port), app, server_class=_Threading, handler_class=_Quiet).serve_forever()


if __name__ == "__main__":
    main()
