"""Sessions end when idle, after a working day, and at browser close; a user sees and ends their other sessions."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from pldreview.accounts.handlers import AUTHENTICATED_AT, LAST_SEEN

pytestmark = pytest.mark.django_db


def _log_in(username: str) -> Client:
    client = Client()
    response = client.post("/login/", {"login": username, "password": f"pw-{username}"})
    assert response.status_code == 302
    return client


def _age_session(client: Client, key: str, minutes: float) -> None:
    session = client.session
    session[key] = timezone.now().timestamp() - minutes * 60
    session.save()


def test_an_idle_session_is_logged_out(reviewer, task) -> None:
    client = _log_in("rita")
    assert client.get("/").status_code == 200
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES + 1)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get("/").status_code == 302  # logged out for good, not just redirected once


def test_a_session_active_within_the_idle_window_stays(reviewer, task) -> None:
    client = _log_in("rita")
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES - 1)
    assert client.get("/").status_code == 200


def test_a_session_ends_after_its_absolute_lifetime_even_when_active(reviewer, task) -> None:
    client = _log_in("rita")
    _age_session(client, AUTHENTICATED_AT, settings.PLD_SESSION_MAX_HOURS * 60 + 1)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_session_cookie_ends_with_the_browser(reviewer) -> None:
    client = Client()
    response = client.post("/login/", {"login": "rita", "password": "pw-rita"})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["expires"] == "" and cookie["max-age"] == ""
    assert cookie["httponly"]


def test_a_user_sees_and_ends_their_other_sessions(reviewer, task) -> None:
    laptop = _log_in("rita")
    phone = _log_in("rita")
    page = laptop.get("/accounts/sessions/")
    assert page.status_code == 200
    assert page.content.decode().count("<tr") >= 3  # a header row and the two sessions
    laptop.post("/accounts/sessions/", {})
    assert laptop.get("/").status_code == 200
    assert phone.get("/").status_code == 302


def _poll_badge(client: Client):  # noqa: ANN202 - the test client's response
    return client.get("/review/waiting/badge/?poll=1", HTTP_HX_REQUEST="true")


def test_a_session_that_only_polls_expires_after_the_idle_time(reviewer, task) -> None:
    client = _log_in("rita")
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES - 1)
    seen = client.session[LAST_SEEN]
    assert _poll_badge(client).status_code == 200
    assert client.session[LAST_SEEN] == seen  # answered, but nobody was there
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES + 1)
    ended = _poll_badge(client)
    assert ended.status_code == 200 and ended["HX-Redirect"].startswith("/login/")
    assert client.get("/").status_code == 302


def test_a_session_where_the_person_clicks_between_polls_stays(reviewer, task) -> None:
    client = _log_in("rita")
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES - 1)
    assert client.get("/review/").status_code == 200  # the person opens the queue
    assert client.session[LAST_SEEN] > timezone.now().timestamp() - 60
    # An htmx action the person triggers counts too; only ?poll=1 does not.
    _age_session(client, LAST_SEEN, settings.PLD_SESSION_IDLE_MINUTES - 1)
    assert client.get("/review/?status=all", HTTP_HX_REQUEST="true").status_code == 200
    assert client.session[LAST_SEEN] > timezone.now().timestamp() - 60
    assert _poll_badge(client).status_code == 200 and "HX-Redirect" not in _poll_badge(client)


def test_every_background_poll_in_the_templates_is_marked_as_one() -> None:
    import re
    from pathlib import Path

    tags = []
    for path in (Path(settings.BASE_DIR) / "templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        tags += [(path.name, tag) for tag in re.findall(r"<[^<>]*hx-trigger=\"[^\"]*\b(?:every|load)\b[^<>]*>", text)]
    assert len(tags) >= 5, tags  # the badge, job list and page, run progress, report
    unmarked = [(name, tag) for name, tag in tags if "poll=1" not in tag]
    assert not unmarked, unmarked
