"""The demo step: one login per role and the two fixture tasks, idempotent."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.test import RequestFactory

from evaluation.demo.users import DEMO_USERS, seed_users_and_tasks
from pldreview.roles import role_names
from rules.models import DatasetImport, Example, Task

pytestmark = pytest.mark.django_db


def test_it_creates_a_login_per_role_and_imports_the_fixture_tasks() -> None:
    out = StringIO()
    seed_users_and_tasks(out)
    for username, role, password in DEMO_USERS:
        # django-axes checks every authentication against its lockouts, so it needs the request.
        user = authenticate(RequestFactory().post("/login/"), username=username, password=password)
        assert user is not None and role_names(user) == [role]
        assert f"login {username}" in out.getvalue() and password in out.getvalue()
    assert Task.objects.get(name="nda-demo").examples.count() == 90
    assert Task.objects.get(name="escalation").examples.count() == 72
    assert set(Example.objects.values_list("split", flat=True)) == {"train", "dev", "test"}


def test_a_second_run_changes_nothing() -> None:
    seed_users_and_tasks(StringIO())
    before = (Example.objects.count(), DatasetImport.objects.count(), list(Example.objects.values_list("id", "split")))
    out = StringIO()
    seed_users_and_tasks(out)
    after = (Example.objects.count(), DatasetImport.objects.count(), list(Example.objects.values_list("id", "split")))
    assert before == after
    assert "(0 added by this run)" in out.getvalue()


def test_the_demo_users_come_from_the_bootstrap_and_none_waits_out_a_cooldown() -> None:
    from django.contrib.auth.models import User

    from pldreview.accounts.services import second_person_refusal
    from pldreview.models import LedgerEntry

    seed_users_and_tasks(StringIO())
    entry = LedgerEntry.objects.get(event="security.accounts_bootstrapped")
    assert '"command":"seed_demo"' in entry.payload and '"os_user":' in entry.payload
    for username, _role, _password in DEMO_USERS:
        assert second_person_refusal(User.objects.get(username=username)) == ""
    seed_users_and_tasks(StringIO())
    assert LedgerEntry.objects.filter(event="security.accounts_bootstrapped").count() == 1
