"""The demo commands: seed_demo runs the named steps and times each; demo_logins prints the logins."""
from __future__ import annotations

from io import StringIO

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from django.core.management import CommandError, call_command

from evaluation.demo.users import DEMO_USERS

pytestmark = pytest.mark.django_db


def test_seed_demo_runs_only_the_chosen_step_and_says_how_long_it_took() -> None:
    out = StringIO()
    call_command("seed_demo", only="evaluation.demo.users.seed_users_and_tasks", allow_production_demo=True, stdout=out)
    text = out.getvalue()
    assert "==> evaluation.demo.users.seed_users_and_tasks" in text
    assert "evaluation.demo.teacher" not in text
    assert " s)" in text and "Demo data is in place." in text


def test_demo_logins_prints_every_login_with_the_given_address() -> None:
    out = StringIO()
    call_command("demo_logins", url="http://127.0.0.1:8011/login/", stdout=out)
    text = out.getvalue()
    assert "http://127.0.0.1:8011/login/" in text
    for username, _role, password in DEMO_USERS:
        assert username in text and password in text


def test_demo_logins_names_the_port_the_demo_runs_on(settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo_logins", codes=True, stdout=out)
    assert "(http://127.0.0.1:8000/login/)" in out.getvalue()

    # PORT=8011 scripts/demo records its address; a later `demo_logins --codes` names it.
    (tmp_path / "demo_url").write_text("http://127.0.0.1:8011\n")
    out = StringIO()
    call_command("demo_logins", codes=True, stdout=out)
    assert "(http://127.0.0.1:8011/login/)" in out.getvalue() and ":8000" not in out.getvalue()


def test_seed_demo_refuses_when_debug_is_off_unless_told_it_is_a_demo(settings) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--allow-production-demo"):
        call_command("seed_demo", only="evaluation.demo.users.seed_users_and_tasks", stdout=StringIO())
    settings.DEBUG = True
    call_command("seed_demo", only="evaluation.demo.users.seed_users_and_tasks", stdout=StringIO())


def test_seed_demo_enrols_the_demo_users_and_demo_logins_prints_their_current_codes() -> None:
    out = StringIO()
    # The rerun adds nothing.
    for step in ("evaluation.demo.users", "second_factors", "second_factors"):
        call_command("seed_demo", only=step, allow_production_demo=True, stdout=out)
    assert Authenticator.objects.filter(type=Authenticator.Type.TOTP).count() == len(DEMO_USERS)
    codes = StringIO()
    call_command("demo_logins", codes=True, stdout=codes)
    for username, _role, _password in DEMO_USERS:
        line = next(line for line in codes.getvalue().splitlines() if f" {username} " in line)
        secret = line.split("secret ")[1].rstrip(")")
        assert f"code now: {pyotp.TOTP(secret).now()}" in line
