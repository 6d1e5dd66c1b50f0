"""Shared fixtures: named personas for each role, and a plain task to hang examples on."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from rules.models import Task

SHARED_DATASETS = Path(settings.PLD_DATASETS_DIR)
FIXTURES_DIR = Path(settings.BASE_DIR) / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _flush_through_delete_permit() -> Iterator[None]:
    """Let transactional tests' flush empty the append-only audit tables (pldreview/db_triggers.py)."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    from pldreview.db_triggers import delete_permit

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: list[str]) -> None:
        with delete_permit("test-suite flush", using=self.connection.alias):
            original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    yield
    BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]


def _role(name: str) -> Group:
    """Return the role's group; a transactional test's flush may have removed the migration's groups."""
    from django.contrib.auth.models import Permission

    from pldreview.roles import ROLE_PERMISSIONS

    group, created = Group.objects.get_or_create(name=name)
    if created:
        for dotted in ROLE_PERMISSIONS[name]:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def _user(username: str, *roles: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, email=f"{username}@example.org")
    for role in roles:
        user.groups.add(_role(role))
    return user


@pytest.fixture
def reviewer(db: None) -> User:
    return _user("rita", "Reviewer")


@pytest.fixture
def second_reviewer(db: None) -> User:
    return _user("ravi", "Reviewer")


@pytest.fixture
def third_reviewer(db: None) -> User:
    return _user("rhea", "Reviewer")


@pytest.fixture
def auditor(db: None) -> User:
    return _user("aude", "Auditor")


@pytest.fixture
def admin_user(db: None) -> User:
    return _user("adam", "Admin")


@pytest.fixture
def second_admin(db: None) -> User:
    return _user("alex", "Admin")


@pytest.fixture
def outsider(db: None) -> User:
    return _user("olga")


@pytest.fixture
def task(db: None) -> Task:
    task = Task(
        name="nda-demo",
        title="NDA clauses",
        description="Does the clause entail, contradict or not mention the hypothesis?",
        labels=[
            {"name": "Entailment", "description": "The clause says the hypothesis holds."},
            {"name": "Contradiction", "description": "The clause says the opposite."},
            {"name": "NotMentioned", "description": "The clause says nothing about it."},
        ],
        input_fields=["premise", "hypothesis"],
    )
    task.full_clean()
    task.save()
    return task


def requires_shared_datasets(*parts: str) -> pytest.MarkDecorator:
    """Skip a test with a clear reason when ../shared/datasets (or a file in it) is absent."""
    path = SHARED_DATASETS.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (the real datasets are never committed)")


# The real local teacher server, shared by every test that needs it (teacher helper).
from tests.support.local_teacher import local_teacher  # noqa: E402,F401
