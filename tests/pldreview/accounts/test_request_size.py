"""Request size: a body over its limit is refused before anything reads it (CSRF included), on every path.

The slow-client behaviour against a real gunicorn is in tests/pldreview/test_slow_clients.py.
"""
from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SIXTY_MB = 60_000_000


class _Unreadable:
    """A request body that fails the test if anything reads it (a client still sending would block there)."""

    def read(self, *args: object) -> bytes:
        raise AssertionError("the body was read")

    readline = read


def _post_declaring(client: Client, path: str, length: int, **extra: object):
    return client.generic("POST", path, data=b"", content_type="application/x-www-form-urlencoded",
                          CONTENT_LENGTH=str(length), **{"wsgi.input": _Unreadable()}, **extra)


def test_an_anonymous_post_declaring_60_mb_to_login_is_refused_unread() -> None:
    response = _post_declaring(Client(enforce_csrf_checks=True), "/login/", SIXTY_MB)
    assert response.status_code == 413
    assert "at most 2.5 MB" in response.content.decode()


def test_an_upload_page_refuses_over_its_own_limit_unread(client, auditor, settings) -> None:
    client.force_login(auditor)
    assert _post_declaring(client, "/reports/verify/", settings.PLD_UPLOAD_MAX_BYTES + 1).status_code == 413
    assert _post_declaring(client, "/login/", settings.PLD_REQUEST_MAX_BYTES + 1).status_code == 413


def test_an_unknown_path_gets_the_page_limit_unread() -> None:
    assert _post_declaring(Client(), "/no/such/page/", SIXTY_MB).status_code == 413


def test_a_chunked_body_without_a_length_is_refused_with_411_unread() -> None:
    response = Client().generic("POST", "/login/", data=b"", content_type="application/x-www-form-urlencoded",
                                headers={"Transfer-Encoding": "chunked"}, **{"wsgi.input": _Unreadable()})
    assert response.status_code == 411
    assert "Content-Length" in response.content.decode()


def test_a_malformed_content_length_is_a_400_unread() -> None:
    assert _post_declaring(Client(), "/login/", -5).status_code == 400
    response = Client().generic("POST", "/login/", data=b"", CONTENT_LENGTH="lots",
                                **{"wsgi.input": _Unreadable()})
    assert response.status_code == 400


def test_the_refusal_page_carries_the_security_headers() -> None:
    response = _post_declaring(Client(), "/login/", SIXTY_MB)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
