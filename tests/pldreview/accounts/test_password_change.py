"""Changing one's own password: a confirmation afterwards, and no offer of a reset that does not exist."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_change_page_says_who_resets_a_forgotten_password(client, reviewer) -> None:
    client.force_login(reviewer)
    page = client.get("/accounts/password/change/").content.decode()
    assert "Forgot your password?" not in page
    assert "Ask an Admin to reset it" in page


def test_a_changed_password_is_confirmed_on_the_overview(client, reviewer) -> None:
    client.post("/login/", {"login": "rita", "password": "pw-rita"})
    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": "pw-rita", "password1": "a-long-enough-passphrase", "password2": "a-long-enough-passphrase"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/"
    assert "Password successfully changed." in response.content.decode()
    reviewer.refresh_from_db()
    assert reviewer.check_password("a-long-enough-passphrase")
