"""The demo commands: seed_demo runs the named steps and times each; demo_logins prints the logins."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from rules.demo import DEMO_USERS

pytestmark = pytest.mark.django_db


def test_seed_demo_runs_only_the_chosen_step_and_says_how_long_it_took() -> None:
    out = StringIO()
    call_command("seed_demo", only="rules.demo.seed_users_and_tasks", stdout=out)
    text = out.getvalue()
    assert "==> rules.demo.seed_users_and_tasks" in text
    assert "demo_teacher" not in text
    assert " s)" in text and "Demo data is in place." in text


def test_demo_logins_prints_every_login_with_the_given_address() -> None:
    out = StringIO()
    call_command("demo_logins", url="http://127.0.0.1:8011/login/", stdout=out)
    text = out.getvalue()
    assert "http://127.0.0.1:8011/login/" in text
    for username, _role, password in DEMO_USERS:
        assert username in text and password in text
