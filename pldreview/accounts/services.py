"""Account management: every change to who may do what is a service call that writes the ledger.

Users are deactivated, never deleted; a username that has acted cannot change (the database refuses too,
see ``accounts/migrations/0002_identities_immutable.py``).
"""
from __future__ import annotations

import secrets

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction

from pldreview.accounts.lockout import lockout_reset
from pldreview.accounts.models import AccountState
from pldreview.ledger import ledger_append
from pldreview.models import LedgerEntry
from pldreview.roles import ROLES


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason: it is kept in the audit record."})
    return reason


def _user_facts(user: User) -> dict[str, object]:
    # Never the password hash: the ledger is readable by Auditors.
    return {"username": user.get_username(), "full_name": user.get_full_name(), "is_active": user.is_active}


def temporary_password() -> str:
    """Return a random temporary password, shown once to the Admin who set it."""
    return secrets.token_urlsafe(15)


def user_has_acted(user: User) -> bool:
    """Return whether the user has decided anything or appears in the ledger as the actor."""
    return user.decisions.exists() or LedgerEntry.objects.filter(actor_id=user.pk).exists()


def user_must_change_password(user: User) -> bool:
    """Return whether the user has to choose a new password before doing anything else."""
    return AccountState.objects.filter(user=user, must_change_password=True).exists()


def user_sessions_end(*, user: User, keep_session_key: str = "") -> int:
    """End every session of the user (except ``keep_session_key``); return how many ended."""
    ended = 0
    for session in UserSession.objects.filter(user=user).exclude(session_key=keep_session_key):
        session.end()
        ended += 1
    return ended


@transaction.atomic
def user_create(
    *, actor: User, username: str, first_name: str, last_name: str, roles: list[str], reason: str
) -> tuple[User, str]:
    """Create a user with a temporary password to change at first login; return the user and that password."""
    reason = _require_reason(reason)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": "This username exists (users are never deleted, so names are not reused)."})
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValidationError({"roles": f"Unknown roles: {', '.join(sorted(unknown))}"})
    password = temporary_password()
    user = User(username=username, first_name=first_name, last_name=last_name)
    user.set_password(password)
    user.full_clean()
    user.save()
    AccountState.objects.create(user=user, must_change_password=True)
    ledger_append(event="security.user_created", actor=actor, obj=user, facts=_user_facts(user), reason=reason)
    for role in roles:
        role_grant(actor=actor, user=user, role=role, reason=reason)
    return user, password


@transaction.atomic
def user_deactivate(*, actor: User, user: User, reason: str) -> None:
    """Deactivate the user and end their sessions; the account and its history stay."""
    reason = _require_reason(reason)
    if user.pk == actor.pk:
        raise ValidationError("You cannot deactivate your own account.")
    user.is_active = False
    user.save(update_fields=["is_active"])
    user_sessions_end(user=user)
    ledger_append(event="security.user_deactivated", actor=actor, obj=user, facts=_user_facts(user), reason=reason)


@transaction.atomic
def user_activate(*, actor: User, user: User, reason: str) -> None:
    """Activate a deactivated user again."""
    reason = _require_reason(reason)
    user.is_active = True
    user.save(update_fields=["is_active"])
    ledger_append(event="security.user_activated", actor=actor, obj=user, facts=_user_facts(user), reason=reason)


@transaction.atomic
def role_grant(*, actor: User, user: User, role: str, reason: str) -> None:
    """Give the user a role (group membership)."""
    reason = _require_reason(reason)
    if role not in ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    user.groups.add(Group.objects.get(name=role))
    ledger_append(
        event="security.role_granted", actor=actor, obj=user, facts={**_user_facts(user), "role": role}, reason=reason
    )


@transaction.atomic
def role_revoke(*, actor: User, user: User, role: str, reason: str) -> None:
    """Take a role away from the user."""
    reason = _require_reason(reason)
    if role not in ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    user.groups.remove(Group.objects.get(name=role))
    ledger_append(
        event="security.role_revoked", actor=actor, obj=user, facts={**_user_facts(user), "role": role}, reason=reason
    )


@transaction.atomic
def lockout_clear(*, actor: User, reason: str, user: User | None = None, ip_address: str = "") -> int:
    """Lift the waits of a username and/or an address after failed attempts; return how many records went."""
    reason = _require_reason(reason)
    if user is None and not ip_address:
        raise ValidationError("Name a user or an address to unlock.")
    cleared = lockout_reset(username=user.get_username() if user is not None else None, ip_address=ip_address or None)
    facts = {"username": user.get_username() if user else "", "ip_address": ip_address, "failures_cleared": cleared}
    ledger_append(event="security.unlock", actor=actor, obj=user, facts=facts, reason=reason)
    return cleared


@transaction.atomic
def password_reset_force(*, actor: User, user: User, reason: str) -> str:
    """Set a temporary password the user must change at next login; end their sessions; return it (shown once)."""
    reason = _require_reason(reason)
    password = temporary_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    AccountState.objects.update_or_create(user=user, defaults={"must_change_password": True})
    user_sessions_end(user=user)
    ledger_append(
        event="security.password_reset_forced", actor=actor, obj=user, facts=_user_facts(user), reason=reason
    )
    return password


@transaction.atomic
def password_change_recorded(*, user: User) -> None:
    """Record a password change by its owner and lift a forced change."""
    AccountState.objects.filter(user=user).update(must_change_password=False)
    ledger_append(event="security.password_changed", actor=user, obj=user, facts=_user_facts(user))


@transaction.atomic
def mfa_reset(*, actor: User, user: User, reason: str) -> int:
    """Remove the user's second factors (lost phone); they enrol again at next login. Return how many went."""
    reason = _require_reason(reason)
    removed, _ = Authenticator.objects.filter(user=user).delete()
    user_sessions_end(user=user)
    ledger_append(
        event="security.mfa_reset", actor=actor, obj=user, facts={**_user_facts(user), "removed": removed},
        reason=reason,
    )
    return removed


@transaction.atomic
def user_rename(*, actor: User, user: User, new_username: str, reason: str) -> None:
    """Rename a user who has never acted; a username that decided or signed anything stays as it is."""
    reason = _require_reason(reason)
    if user_has_acted(user):
        raise ValidationError({"username": "This user has acted: the username is in the record and cannot change."})
    old = user.get_username()
    user.username = new_username
    user.full_clean()
    user.save(update_fields=["username"])
    ledger_append(
        event="security.user_renamed", actor=actor, obj=user, facts={**_user_facts(user), "old_username": old},
        reason=reason,
    )
