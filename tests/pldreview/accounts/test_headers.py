"""Headers and limits: a CSP without inline scripts on every page, HSTS without preload, request size limits."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.support.personas import role_group
from tests.support.url_walk import endpoints_of, one_of_each_model

pytestmark = pytest.mark.django_db


def _script_sources(policy: str) -> list[str]:
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return directives.get("script-src", directives.get("default-src", "")).split()


def test_every_page_answers_with_a_csp_that_allows_no_inline_script(task) -> None:
    everyone = User.objects.create_user(username="all-roles", password="pw-all-roles-123")
    for role in ("Reviewer", "Auditor", "Admin"):
        everyone.groups.add(role_group(role))
    endpoints = endpoints_of(one_of_each_model())
    extra = ["/login/", "/accounts/password/change/", "/accounts/2fa/", "/accounts/sessions/", "/nowhere/"]
    anonymous, logged_in = Client(), Client()
    logged_in.force_login(everyone)
    missing = []
    for url in [endpoint.url for endpoint in endpoints] + extra:
        for client in (anonymous, logged_in):
            response = client.get(url)
            policy = response.headers.get("Content-Security-Policy", "")
            sources = _script_sources(policy)
            if not policy or "'unsafe-inline'" in sources or "'unsafe-eval'" in sources or "'self'" not in sources:
                missing.append(f"{url} → {response.status_code}: {policy!r}")
    assert len(endpoints) >= 25
    assert not missing, "\n".join(missing)


def test_no_template_carries_an_inline_script() -> None:
    from pathlib import Path

    from django.conf import settings

    offenders = []
    for path in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        for line in path.read_text().splitlines():
            if "<script" in line and "src=" not in line and 'type="application/json"' not in line:
                offenders.append(f"{path}: {line.strip()}")
            if any(f" on{event}=" in line for event in ("click", "change", "submit", "load", "input", "keydown")):
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_hsts_has_no_preload_unless_asked(client, settings) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    header = client.get("/login/", secure=True).headers["Strict-Transport-Security"]
    assert "max-age=31536000" in header and "preload" not in header
    settings.SECURE_HSTS_PRELOAD = True
    # A new client: SecurityMiddleware reads its settings when the handler loads it.
    assert "preload" in Client().get("/login/", secure=True).headers["Strict-Transport-Security"]


def test_a_large_request_is_refused_except_on_the_upload_pages(client, reviewer, auditor, settings) -> None:
    big = "x" * (settings.PLD_REQUEST_MAX_BYTES + 1000)
    client.force_login(reviewer)
    response = client.post("/rules/new/", {"text": big})
    assert response.status_code == 413
    client.force_login(auditor)
    pdf = b"%PDF-1.7\n" + b"0" * 3_000_000  # over 2.5 MB, under the 50 MB the verify upload allows
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post("/reports/verify/", {"file": SimpleUploadedFile("big.pdf", pdf, "application/pdf")})
    assert response.status_code == 200
