"""The overview page and logging in."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_login_page_logs_a_user_in_and_lands_on_the_overview(client, reviewer, task) -> None:
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"login": "rita", "password": "pw-rita"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    body = response.content.decode()
    assert "rita · Reviewer" in body and "NDA clauses" in body


def test_the_overview_lists_tasks_and_says_when_there_are_none(client, auditor) -> None:
    client.force_login(auditor)
    assert b"No tasks yet" in client.get("/").content


def test_a_wrong_password_is_refused(client, reviewer) -> None:
    response = client.post("/login/", {"login": "rita", "password": "nope"})
    assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated
