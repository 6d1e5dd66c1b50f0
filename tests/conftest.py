"""Shared fixtures: named personas for each role, and a plain task to hang examples on."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from evaluation.release.pdf_signing import signing_identity_create
from rules.models import Task
from tests.support.factories import TaskFactory
from tests.support.idp import SAML_ORG, IdentityProvider, SamlIdentityProvider, idp_start, idp_stop, saml_idp_start
from tests.support.personas import persona, role_group, unsigned_memberships_create
from tests.support.reports import PASSPHRASE


@pytest.fixture(scope="session", autouse=True)
def _flush_through_delete_permit() -> Iterator[None]:
    """Let transactional tests' flush empty the append-only audit tables (pldreview/db_triggers.py)."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    from pldreview.db_triggers import PERMIT_GUARD_DROP_SQL, PERMIT_GUARD_SQL, PERMIT_TABLE, delete_permit

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: list[str]) -> None:
        with delete_permit("test-suite flush", using=self.connection.alias):
            original(self, sql_list)
        # The flush empties the ledger, so the permit it used goes too, or the next test's verify_ledger would
        # report it. Only the tests erase a permit: they lift the permit table's own guard to do it.
        vendor = self.connection.vendor
        with self.connection.cursor() as cursor:
            for sql in [*PERMIT_GUARD_DROP_SQL.get(vendor, []), f"DELETE FROM {PERMIT_TABLE}",
                        *PERMIT_GUARD_SQL.get(vendor, [])]:
                cursor.execute(sql)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    yield
    BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]


# Need-to-know (rules.membership): a Reviewer or Auditor sees only the tasks they are a member of. The personas
# act on whatever task a test makes, as before tasks had members, so every user holding one of these roles is made
# a member of every task, whichever comes first. The users named here never are: the tests' strangers.
NON_MEMBERS = {"nemo", "nils"}
_MEMBER_ROLES = ("Reviewer", "Auditor")


def _memberships_for(tasks: list[Task], users: list[User]) -> None:
    from rules.models import TaskMembership

    memberships = [TaskMembership(task=t, user=u, reason="test persona") for t in tasks for u in users
                   if u.username not in NON_MEMBERS]
    unsigned_memberships_create(memberships)


def _task_made(sender: type, instance: Task, created: bool, raw: bool = False, **kwargs: object) -> None:
    if created and not raw:
        _memberships_for([instance], list(User.objects.filter(groups__name__in=_MEMBER_ROLES).distinct()))


def _role_given(sender: type, instance: object, action: str, pk_set: set[int] | None, **kwargs: object) -> None:
    from django.contrib.auth.models import Group

    if action != "post_add" or not pk_set:
        return
    if isinstance(instance, User):
        if Group.objects.filter(pk__in=pk_set, name__in=_MEMBER_ROLES).exists():
            _memberships_for(list(Task.objects.all()), [instance])
    elif getattr(instance, "name", "") in _MEMBER_ROLES:
        _memberships_for(list(Task.objects.all()), list(User.objects.filter(pk__in=pk_set)))


@pytest.fixture(autouse=True)
def _personas_are_members() -> Iterator[None]:
    from django.db.models.signals import m2m_changed, post_save

    post_save.connect(_task_made, sender=Task, dispatch_uid="tests-task-members")
    m2m_changed.connect(_role_given, sender=User.groups.through, dispatch_uid="tests-role-members")
    yield
    post_save.disconnect(sender=Task, dispatch_uid="tests-task-members")
    m2m_changed.disconnect(sender=User.groups.through, dispatch_uid="tests-role-members")


def _user(username: str, *roles: str) -> User:
    return persona(username, *roles)


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
def non_member_reviewer(db: None) -> User:
    """A Reviewer who is a member of no task (need-to-know)."""
    return _user("nemo", "Reviewer")


@pytest.fixture
def non_member_auditor(db: None) -> User:
    """An Auditor who is a member of no task: sees none when PLD_AUDITORS_SCOPED is on."""
    return _user("nils", "Auditor")


@pytest.fixture
def outsider(db: None) -> User:
    return _user("olga")


@pytest.fixture
def task(db: None) -> Task:
    return TaskFactory(
        name="nda-demo",
        title="NDA clauses",
        description="Does the clause entail, contradict or not mention the hypothesis?",
    )


@pytest.fixture(scope="session")
def identity_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a signing identity (PKCS#12, passphrase ``PASSPHRASE``) made once for the session."""
    path = tmp_path_factory.mktemp("signing") / "identity.p12"
    signing_identity_create(path=path, passphrase=PASSPHRASE, common_name="PLD Review test signer")
    return path


@pytest.fixture
def pdf_signing(settings, identity_file: Path, tmp_path: Path, db: None) -> Path:  # noqa: ANN001 (pytest-django fixture)
    """Sign reports with the session's identity, without a timestamp authority, into a fresh media root."""
    settings.PLD_SIGNING_P12 = str(identity_file)
    settings.PLD_SIGNING_PASSPHRASE = PASSPHRASE
    settings.PLD_TSA_URL = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return identity_file


# The real local teacher server, shared by every test that needs it (teacher helper).
from tests.support.local_teacher import local_teacher  # noqa: E402,F401


def _role_groups() -> None:
    # The mapping grants roles through role_grant, which needs the role groups a transactional test's flush may
    # have removed (tests/support/personas.py).
    from pldreview.roles import ROLES

    for role in ROLES:
        role_group(role)


@pytest.fixture(scope="session")
def idp() -> Iterator[IdentityProvider]:
    """The real OpenID Connect provider (django-oauth-toolkit, tests/idp/) in its own process on loopback."""
    provider = idp_start()
    yield provider
    idp_stop(provider)


@pytest.fixture
def sso(settings, idp: IdentityProvider, db: None) -> IdentityProvider:  # noqa: ANN001 (pytest-django fixture)
    """Point the app at the test provider: groups pld-reviewers, pld-auditors and pld-admins map to the roles."""
    settings.SOCIALACCOUNT_PROVIDERS = idp.app_settings()
    _role_groups()
    settings.PLD_SSO_GROUP_ROLES = {"pld-reviewers": "Reviewer", "pld-auditors": "Auditor", "pld-admins": "Admin"}
    settings.PLD_SSO_AUTO_CREATE = True
    return idp


@pytest.fixture(scope="session")
def saml_idp() -> Iterator[SamlIdentityProvider]:
    """The real SAML 2.0 identity provider (pysaml2, tests/idp/saml_serve.py) in its own process on loopback."""
    provider = saml_idp_start()
    provider.allow_acs(f"http://testserver/accounts/saml/{SAML_ORG}/acs/")
    yield provider
    provider.process.terminate()
    provider.process.wait(timeout=10)


@pytest.fixture
def saml(settings, saml_idp: SamlIdentityProvider, db: None) -> SamlIdentityProvider:  # noqa: ANN001
    """Point the app at the SAML test provider, with the same group mapping as ``sso``."""
    settings.SOCIALACCOUNT_PROVIDERS = {**settings.SOCIALACCOUNT_PROVIDERS, **saml_idp.app_settings()}
    _role_groups()
    settings.PLD_SSO_GROUP_ROLES = {"pld-reviewers": "Reviewer", "pld-auditors": "Auditor", "pld-admins": "Admin"}
    settings.PLD_SSO_AUTO_CREATE = True
    return saml_idp
