"""No one acts alone, not even an Admin (issue 22, attack 1: the puppet Admin).

Each test replays one move of the attack as it was made on the demo (adam alone made an Admin adam2, saw its
password, and used it as the second Admin of his gate override; adam granted himself Reviewer; an Admin reset
another Admin's password and second factor) and shows it refused, through the services, the pages and the
database.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from evaluation.release.promotion import promotion_override_confirm, promotion_override_request
from pldreview.accounts.models import AccountChangeKind as Kind
from pldreview.accounts.models import AccountChangeRequest, AccountState
from pldreview.accounts.services import (
    BootstrapAccount,
    account_change_withdraw,
    accounts_bootstrap,
    role_grant,
    second_person_refusal,
)
from pldreview.env import env_role_pairs
from pldreview.models import LedgerEntry, Signature
from pldreview.roles import ROLES
from rules.models import PromptVersion, Rule
from rules.review.services import rule_approve, rule_approve_refusal, ruleset_reorder_approve, ruleset_reorder_propose
from tests.support.account_changes import account_change_confirmed, account_change_made, account_change_requested
from tests.support.factories import teacher_rule
from tests.support.personas import role_group
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import (
    sign_approval,
    sign_order_approval,
    sign_order_proposal,
    sign_override_confirmation,
    sign_override_request,
)

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Legal needs the court rule today."


def _puppet(admin_user: User) -> AccountChangeRequest:
    """Adam alone asks for an Admin account adam2, as he did on the demo's users page."""
    return account_change_requested(admin_user, Kind.CREATE, username="adam2", first_name="Adam", last_name="Two",
                                    roles=["Admin"], reason="a second Admin for the weekend")


def _usable(user: User, password: str) -> User:
    # The temporary password went to the confirming Admin; the tests sign as "pw-<username>" like every persona.
    user.set_password(password)
    user.save(update_fields=["password"])
    AccountState.objects.filter(user=user).update(must_change_password=False)
    return user


def _made_by_two_admins(admin_user: User, second_admin: User, username: str, role: str) -> User:
    account_change_made(admin_user, second_admin, Kind.CREATE, username=username, first_name=username.title(),
                        last_name="New", roles=[role])
    return _usable(User.objects.get(username=username), f"pw-{username}")


def _cooldown_over(user: User) -> None:
    state = AccountState.objects.get(user=user)
    state.privileged_at = timezone.now() - timedelta(hours=24, minutes=1)
    state.save(update_fields=["privileged_at"])


def _override(version: PromptVersion, admin: User):  # noqa: ANN202 (a PromotionOverride)
    return promotion_override_request(prompt_version=version, user=admin, reason="Ship it",
                                      justification=JUSTIFICATION, signature=sign_override_request(admin, version))


# --- adam alone makes an Admin -------------------------------------------------------------------


def test_an_account_one_admin_asks_for_exists_inactive_without_roles_or_password(admin_user) -> None:
    change = _puppet(admin_user)
    adam2 = change.target
    assert change.status == AccountChangeRequest.Status.PENDING
    assert not adam2.is_active and not adam2.groups.exists() and not adam2.has_usable_password()
    assert not Client().post("/login/", {"login": "adam2", "password": "guess"}).wsgi_request.user.is_authenticated
    entry = LedgerEntry.objects.get(event="security.account_change_requested")
    assert entry.actor == admin_user and entry.object_id == str(change.pk)
    assert change.request_signature.meaning == Signature.Meaning.ACCOUNT_CHANGE_REQUESTED


def test_the_requester_cannot_confirm_his_own_request(admin_user) -> None:
    change = _puppet(admin_user)
    with pytest.raises(PermissionDenied, match="different Admin"):
        account_change_confirmed(change, admin_user)
    change.refresh_from_db()
    assert change.status == AccountChangeRequest.Status.PENDING and not change.target.is_active


def test_a_second_admin_confirms_and_only_then_the_account_works(admin_user, second_admin) -> None:
    change = _puppet(admin_user)
    result = account_change_confirmed(change, second_admin)
    adam2 = User.objects.get(username="adam2")
    assert adam2.is_active and [g.name for g in adam2.groups.all()] == ["Admin"]
    assert result.password and adam2.check_password(result.password)
    assert AccountState.objects.get(user=adam2).must_change_password
    change.refresh_from_db()
    assert (change.status, change.confirmed_by) == (AccountChangeRequest.Status.CONFIRMED, second_admin)
    events = list(LedgerEntry.objects.filter(actor=second_admin).values_list("event", flat=True))
    assert "security.account_change_confirmed" in events and "security.role_granted" in events


def test_the_puppet_cannot_confirm_the_gate_override_within_the_cooldown_and_can_after_it(
    task, admin_user, second_admin, second_reviewer
) -> None:
    account_change_confirmed(_puppet(admin_user), second_admin)
    adam2 = _usable(User.objects.get(username="adam2"), "pw-adam2")
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)  # never evaluated: the gate fails
    override = _override(version, admin_user)
    assert "PLD_PRIVILEGE_COOLDOWN_HOURS" in second_person_refusal(adam2)
    with pytest.raises(ValidationError, match="second person of a two-person control"):
        promotion_override_confirm(override=override, user=adam2, signature=sign_override_confirmation(adam2, version))
    version.refresh_from_db()
    assert version.status == PromptVersion.Status.DRAFT
    _cooldown_over(adam2)
    assert second_person_refusal(adam2) == ""
    promotion = promotion_override_confirm(override=override, user=adam2,
                                           signature=sign_override_confirmation(adam2, version))
    assert promotion.promoted_by == adam2


def test_the_promotion_page_shows_the_cooldown_instead_of_the_confirm_form(
    client, task, admin_user, second_admin, second_reviewer
) -> None:
    account_change_confirmed(_puppet(admin_user), second_admin)
    adam2 = _usable(User.objects.get(username="adam2"), "pw-adam2")
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    override = _override(version, admin_user)
    client.force_login(adam2)
    page = client.get(f"/prompts/{version.pk}/promote/").content.decode()
    assert 'id="override-confirm-refusal"' in page and "PLD_PRIVILEGE_COOLDOWN_HOURS" in page
    response = client.post(f"/prompts/{version.pk}/promote/overrides/{override.pk}/confirm/", {"password": "pw-adam2"})
    assert response.status_code == 400 and "second person of a two-person control" in response.content.decode()
    version.refresh_from_db()
    assert version.status == PromptVersion.Status.DRAFT


def test_a_new_account_cannot_confirm_another_account_change_within_the_cooldown(
    admin_user, second_admin, outsider
) -> None:
    account_change_confirmed(_puppet(admin_user), second_admin)
    adam2 = _usable(User.objects.get(username="adam2"), "pw-adam2")
    grant = account_change_requested(admin_user, Kind.GRANT_ROLE, target=outsider, role="Auditor")
    with pytest.raises(PermissionDenied, match="PLD_PRIVILEGE_COOLDOWN_HOURS"):
        account_change_confirmed(grant, adam2)
    assert not outsider.groups.exists()
    _cooldown_over(adam2)
    account_change_confirmed(grant, adam2)
    assert outsider.groups.filter(name="Auditor").exists()


def test_a_newly_made_reviewer_cannot_approve_a_rule_or_an_order_within_the_cooldown(
    task, admin_user, second_admin, reviewer
) -> None:
    nora = _made_by_two_admins(admin_user, second_admin, "nora", "Reviewer")
    rule = teacher_rule(task)
    assert "PLD_PRIVILEGE_COOLDOWN_HOURS" in rule_approve_refusal(rule, user=nora)
    with pytest.raises(ValidationError, match="second person"):
        rule_approve(rule=rule, user=nora, lock_version=rule.lock_version, signature=sign_approval(nora, rule))
    first, second = rule, teacher_rule(task, text="If y, then Entailment")
    for r in (first, second):
        rule_approve(rule=r, user=reviewer, lock_version=Rule.objects.get(pk=r.pk).lock_version,
                     signature=sign_approval(reviewer, r))
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=[second.pk, first.pk], reason="Narrow first",
                                       signature=sign_order_proposal(reviewer, task, [second.pk, first.pk]))
    with pytest.raises(ValidationError, match="second person"):
        ruleset_reorder_approve(proposal=proposal, user=nora, signature=sign_order_approval(nora, proposal))
    _cooldown_over(nora)
    ruleset_reorder_approve(proposal=proposal, user=nora, signature=sign_order_approval(nora, proposal))
    proposal.refresh_from_db()
    assert proposal.status == proposal.Status.APPROVED


def test_the_rule_page_says_why_a_new_reviewer_may_not_approve(client, task, admin_user, second_admin) -> None:
    nora = _made_by_two_admins(admin_user, second_admin, "nora", "Reviewer")
    rule = teacher_rule(task)
    client.force_login(nora)
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    assert "PLD_PRIVILEGE_COOLDOWN_HOURS" in page


def test_activating_a_deactivated_account_starts_the_cooldown_too(admin_user, second_admin, outsider) -> None:
    from pldreview.accounts.services import user_deactivate

    user_deactivate(actor=admin_user, user=outsider, reason="on leave")
    assert not User.objects.get(pk=outsider.pk).is_active
    account_change_made(admin_user, second_admin, Kind.ACTIVATE, target=outsider, reason="back from leave")
    assert User.objects.get(pk=outsider.pk).is_active and second_person_refusal(outsider)


def test_no_cooldown_when_it_is_set_to_zero(settings, admin_user, second_admin) -> None:
    nora = _made_by_two_admins(admin_user, second_admin, "nora", "Reviewer")
    settings.PLD_PRIVILEGE_COOLDOWN_HOURS = 0
    assert second_person_refusal(nora) == ""


# --- adam and his own account; incompatible roles ------------------------------------------------


def test_adam_cannot_grant_himself_reviewer(admin_user) -> None:
    with pytest.raises(PermissionDenied, match="your own account"):
        account_change_requested(admin_user, Kind.GRANT_ROLE, target=admin_user, role="Reviewer")
    assert not AccountChangeRequest.objects.exists()
    # The effect function refuses it too, whoever calls it.
    with pytest.raises(PermissionDenied):
        role_grant(actor=admin_user, user=admin_user, role="Auditor", reason="x")


def test_reviewer_and_admin_are_refused_in_one_account_at_request_and_at_confirm(
    admin_user, second_admin, outsider, reviewer
) -> None:
    with pytest.raises(ValidationError, match="both Reviewer and Admin"):
        account_change_requested(admin_user, Kind.GRANT_ROLE, target=second_admin, role="Reviewer")
    with pytest.raises(ValidationError, match="both Reviewer and Admin"):
        account_change_requested(admin_user, Kind.GRANT_ROLE, target=reviewer, role="Admin")
    with pytest.raises(ValidationError, match="both Reviewer and Admin"):
        account_change_requested(admin_user, Kind.CREATE, username="both", roles=["Reviewer", "Admin"])
    # Two requests each fine alone: the second to be confirmed meets the first's role and is refused.
    as_reviewer = account_change_requested(admin_user, Kind.GRANT_ROLE, target=outsider, role="Reviewer")
    as_admin = account_change_requested(admin_user, Kind.GRANT_ROLE, target=outsider, role="Admin")
    account_change_confirmed(as_reviewer, second_admin)
    with pytest.raises(ValidationError, match="both Reviewer and Admin"):
        account_change_confirmed(as_admin, second_admin)
    assert [g.name for g in outsider.groups.all()] == ["Reviewer"]
    with pytest.raises(ValidationError, match="both Reviewer and Admin"):
        role_grant(actor=second_admin, user=outsider, role="Admin", reason="side door")


def test_the_incompatible_pairs_come_from_the_setting(settings, admin_user, outsider) -> None:
    settings.PLD_INCOMPATIBLE_ROLES = frozenset()
    change = account_change_requested(admin_user, Kind.CREATE, username="both", roles=["Reviewer", "Auditor"])
    assert change.status == AccountChangeRequest.Status.PENDING
    assert env_role_pairs("X", "Reviewer+Admin, Auditor+Reviewer", roles=ROLES) == {
        frozenset({"Reviewer", "Admin"}), frozenset({"Auditor", "Reviewer"}),
    }
    assert env_role_pairs("X", "", roles=ROLES) == frozenset()
    for bad in ("Reviewer+Admn", "Reviewer", "Admin+Admin", "Reviewer+Admin+Auditor"):
        with pytest.raises(ImproperlyConfigured, match="X"):
            env_role_pairs("X", bad, roles=ROLES)


# --- one Admin and another Admin's password or second factor -----------------------------------


def test_an_admin_cannot_reset_another_admins_password_or_second_factor_alone(admin_user, second_admin) -> None:
    Authenticator.objects.create(user=second_admin, type=Authenticator.Type.TOTP, data={"secret": "x"})
    reset = account_change_requested(admin_user, Kind.RESET_PASSWORD, target=second_admin, reason="phished")
    factor = account_change_requested(admin_user, Kind.RESET_SECOND_FACTOR, target=second_admin, reason="lost")
    second_admin.refresh_from_db()
    assert second_admin.check_password("pw-alex") and Authenticator.objects.filter(user=second_admin).exists()
    for change in (reset, factor):
        with pytest.raises(PermissionDenied, match="different Admin"):
            account_change_confirmed(change, admin_user)
        with pytest.raises(PermissionDenied, match="your own account"):
            account_change_confirmed(change, second_admin)
    second_admin.refresh_from_db()
    assert second_admin.check_password("pw-alex") and Authenticator.objects.filter(user=second_admin).exists()
    assert not LedgerEntry.objects.filter(event__in=["security.password_reset_forced", "security.mfa_reset"]).exists()


def test_the_target_of_a_revocation_cannot_withdraw_it(admin_user, second_admin) -> None:
    change = account_change_requested(admin_user, Kind.REVOKE_ROLE, target=second_admin, role="Admin")
    with pytest.raises(PermissionDenied, match="your own account"):
        account_change_withdraw(change=change, user=second_admin)
    withdrawn = account_change_withdraw(change=change, user=admin_user)
    assert withdrawn.status == AccountChangeRequest.Status.WITHDRAWN
    third = User.objects.create_user("ann", password="pw-ann")
    third.groups.add(role_group("Admin"))
    with pytest.raises(ValidationError, match="withdrawn"):
        account_change_confirmed(change, third)


# --- the pages and their side doors --------------------------------------------------------------


def test_the_users_page_requests_and_a_second_admin_confirms_the_password_shown_only_to_him(
    client, admin_user, second_admin
) -> None:
    client.force_login(admin_user)
    response = client.post("/users/new/", {
        "username": "adam2", "first_name": "Adam", "last_name": "Two", "roles": ["Admin"],
        "reason": "a second Admin for the weekend", "password": "pw-adam",
    }, follow=True)
    body = response.content.decode()
    assert "inactive" in body and 'id="temporary-password"' not in body
    change = AccountChangeRequest.objects.get()
    assert f'id="change-{change.pk}-refusal"' in body and "different Admin must confirm" in body
    refused = client.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-adam"})
    assert refused.status_code == 403 and "different Admin must confirm" in refused.content.decode()
    assert not User.objects.get(username="adam2").is_active

    alex = Client()
    alex.force_login(second_admin)
    assert f'action="/users/changes/{change.pk}/confirm/"' in alex.get("/users/").content.decode()
    wrong = alex.post(f"/users/changes/{change.pk}/confirm/", {"password": "not-his"})
    assert wrong.status_code == 400 and not User.objects.get(username="adam2").is_active
    confirmed = alex.post(f"/users/changes/{change.pk}/confirm/", {"password": "pw-alex"})
    assert confirmed.status_code == 200 and 'id="temporary-password"' in confirmed.content.decode()
    assert User.objects.get(username="adam2").check_password(confirmed.context["password"])


def test_raw_posts_to_confirm_by_the_requester_the_target_or_a_reviewer_are_refused(
    client, admin_user, second_admin, reviewer
) -> None:
    change = account_change_requested(admin_user, Kind.RESET_PASSWORD, target=second_admin, reason="phished")
    for user, password in ((admin_user, "pw-adam"), (second_admin, "pw-alex"), (reviewer, "pw-rita")):
        client.force_login(user)
        response = client.post(f"/users/changes/{change.pk}/confirm/", {"password": password})
        assert response.status_code == 403, user
    client.force_login(reviewer)
    assert client.post(f"/users/changes/{change.pk}/withdraw/").status_code == 403
    client.force_login(second_admin)
    assert client.post(f"/users/changes/{change.pk}/withdraw/").status_code == 403
    change.refresh_from_db()
    assert change.status == AccountChangeRequest.Status.PENDING
    assert User.objects.get(pk=second_admin.pk).check_password("pw-alex")
    assert not Signature.objects.filter(meaning=Signature.Meaning.ACCOUNT_CHANGE_CONFIRMED).exists()


def test_an_admin_may_not_request_a_change_of_his_own_account_through_the_page(client, admin_user) -> None:
    client.force_login(admin_user)
    page = client.get(f"/users/{admin_user.pk}/").content.decode()
    assert 'id="own-account"' in page
    response = client.post(f"/users/{admin_user.pk}/change/",
                           {"action": "grant", "role": "Reviewer", "reason": "I review too", "password": "pw-adam"})
    assert response.status_code == 403 and "your own account" in response.content.decode()
    assert not admin_user.groups.filter(name="Reviewer").exists() and not AccountChangeRequest.objects.exists()


def test_deactivation_stays_a_one_admin_action_and_the_page_says_so(client, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    page = client.get(f"/users/{reviewer.pk}/").content.decode()
    assert "one Admin does it alone" in page
    client.post(f"/users/{reviewer.pk}/change/", {"action": "deactivate", "reason": "left the company"})
    assert not User.objects.get(pk=reviewer.pk).is_active


def test_the_database_refuses_a_confirmation_by_the_requester_or_the_target(admin_user, second_admin) -> None:
    change = account_change_requested(admin_user, Kind.RESET_PASSWORD, target=second_admin, reason="phished")
    signature = Signature.objects.create(
        user=admin_user, username="adam", full_name="adam", meaning=Signature.Meaning.ACCOUNT_CHANGE_CONFIRMED,
        content_sha256=change.content_sha256(), reauth_policy="each", password_checked=True,
    )
    for who in (admin_user, second_admin):
        with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
            AccountChangeRequest.objects.filter(pk=change.pk).update(
                status="confirmed", confirmed_by=who, confirmed_at=timezone.now(), confirm_signature=signature
            )


def test_the_database_refuses_to_rewrite_a_request_or_a_settled_one(admin_user, second_admin, outsider) -> None:
    change = account_change_requested(admin_user, Kind.GRANT_ROLE, target=outsider, role="Auditor")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_accountchangerequest SET params = %s WHERE id = %s",
                       ['{"role": "Admin"}', change.pk])
    account_change_confirmed(change, second_admin)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_accountchangerequest SET status = 'pending' WHERE id = %s", [change.pk])


def test_a_changed_request_row_is_found_by_the_ledger_cross_check(admin_user, outsider) -> None:
    from pldreview.ledger_verify import ledger_verify

    change = account_change_requested(admin_user, Kind.GRANT_ROLE, target=outsider, role="Auditor")
    assert ledger_verify().ok
    # An insider with the database owner's rights sets the trigger aside, as in tests/pldreview/ledgerkit.py.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS pld_account_change_settled")
        else:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # else PostgreSQL refuses for the pending FK checks
            cursor.execute("ALTER TABLE accounts_accountchangerequest DISABLE TRIGGER pld_account_change_settled")
        cursor.execute("UPDATE accounts_accountchangerequest SET reason = 'nothing to see' WHERE id = %s",
                       [change.pk])
    assert not ledger_verify().ok


# --- bootstrapping -------------------------------------------------------------------------------


def test_bootstrap_makes_the_first_admins_and_records_who_ran_it_and_why(capsys) -> None:
    call_command("bootstrap_accounts", "--admin", "ada", "--admin", "abe", "--reason", "New deployment, ticket 7")
    out = capsys.readouterr().out
    for name in ("ada", "abe"):
        user = User.objects.get(username=name)
        assert user.is_active and [g.name for g in user.groups.all()] == ["Admin"]
        assert AccountState.objects.get(user=user).must_change_password and second_person_refusal(user) == ""
        assert f"Admin {name}: temporary password " in out
    entry = LedgerEntry.objects.get(event="security.accounts_bootstrapped")
    assert '"reason":"New deployment, ticket 7"' in entry.payload
    assert '"os_user":' in entry.payload and '"host":' in entry.payload


def test_bootstrap_is_refused_once_an_active_admin_exists(admin_user) -> None:
    with pytest.raises(CommandError, match="An active Admin exists"):
        call_command("bootstrap_accounts", "--admin", "adam2", "--reason", "a puppet")
    assert not User.objects.filter(username="adam2").exists()
    assert not LedgerEntry.objects.filter(event="security.accounts_bootstrapped").exists()
    User.objects.filter(pk=admin_user.pk).update(is_active=False)
    with pytest.raises(ValidationError, match="at least one Admin"):
        accounts_bootstrap(accounts=[BootstrapAccount(username="rev", roles=("Reviewer",))], reason="x",
                           run_by="root", host="h")


def test_the_users_page_runs_the_same_number_of_queries_for_1_and_6_pending_changes(
    client, admin_user, second_admin, django_assert_num_queries
) -> None:
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    _puppet(admin_user)
    client.force_login(second_admin)
    client.get("/users/")
    with CaptureQueriesContext(db) as few:
        body = client.get("/users/").content.decode()
    assert "waiting for a second Admin" in body
    for n in range(5):
        account_change_requested(admin_user, Kind.CREATE, username=f"new-{n}", roles=["Reviewer"])
    with django_assert_num_queries(len(few.captured_queries)):
        body = client.get("/users/").content.decode()
    assert body.count('action="/users/changes/') == 12  # a confirm and a withdraw form for each


def test_a_request_with_a_parameter_its_kind_does_not_take_is_refused(admin_user, outsider) -> None:
    from pldreview.accounts.services import account_change_request

    with pytest.raises(ValidationError, match="canonical form"):
        account_change_request(user=admin_user, kind=Kind.UNLOCK, target=outsider, reason="x",
                               params={"role": "Admin"})
