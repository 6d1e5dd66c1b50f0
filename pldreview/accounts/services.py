"""Account management: every change to who may do what is a service call that writes the ledger.

No Admin changes an account alone (separation of duties): one Admin *requests* a change
(``account_change_request``, a signing), a different Admin *confirms* it (``account_change_confirm``, a
signing), and only then does it take effect, through the effect functions below (``role_grant``,
``password_reset_force``…), which nothing else calls. Nobody requests or confirms a change of their own account;
an account never holds two roles ``PLD_INCOMPATIBLE_ROLES`` forbids together; an account that gained power
within ``PLD_PRIVILEGE_COOLDOWN_HOURS`` is never the second person of a two-person control
(``second_person_refusal``). Deactivation removes power, so one Admin does it alone. The first Admins come from
``accounts_bootstrap`` (``manage.py bootstrap_accounts``), which works only while no active Admin exists.

Users are deactivated, never deleted; a username that has acted cannot change (the database refuses too,
see ``accounts/migrations/0002_identities_immutable.py``).
"""
from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AbstractBaseUser, Group, User
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from pldreview.accounts.lockout import lockout_reset
from pldreview.accounts.models import AccountChangeKind, AccountChangeRequest, AccountState
from pldreview.ledger import ledger_append, row_facts
from pldreview.models import LedgerEntry, Signature
from pldreview.roles import ADMIN, ROLES, role_names
from pldreview.signatures import account_change_content_sha256, signature_check

Kind = AccountChangeKind
# The changes that give an account power: after one is confirmed, the cooldown starts.
PRIVILEGING = (Kind.CREATE, Kind.GRANT_ROLE, Kind.ACTIVATE)
# The history table's change-reason column is a CharField(max_length=100), as in rules.audit.
_REASON_MAX_LENGTH = 100


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
    """End every session of the user (except ``keep_session_key``); return how many ended.

    allauth's records first, then any other session in the database that belongs to the user (one made before
    allauth recorded sessions, or by another door), so none survives.
    """
    ended = 0
    for session in UserSession.objects.filter(user=user).exclude(session_key=keep_session_key):
        session.end()
        ended += 1
    for session in Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep_session_key):
        if str(session.get_decoded().get(SESSION_KEY, "")) == str(user.pk):
            session.delete()
            ended += 1
    return ended


# Sent inside user_offboard's transaction with ``user``, ``by`` and ``reason``; a receiver that cuts the user off
# from something (evaluation revokes the API tokens) returns how many things it ended. pldreview.accounts never
# imports the apps above it, so they connect here.
user_offboarded = Signal()


@transaction.atomic
def user_offboard(*, user: User, reason: str, by: User | None, source: str = "admin") -> dict[str, int]:
    """Cut a leaver off at once: deactivate, end every session, revoke every API token; one ledger entry.

    ``by`` is the Admin who deactivated the account, or None when the identity provider refused the user at
    sign-in (``source="sso"``). Safe to call again for an account already deactivated (it ends whatever is left).
    Returns the counts it recorded.
    """
    reason = _require_reason(reason)
    if by is not None and user.pk == by.pk:
        raise ValidationError("You cannot deactivate your own account.")
    user = User.objects.select_for_update().get(pk=user.pk)
    was_active = user.is_active
    if was_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    sessions = user_sessions_end(user=user)
    answers = user_offboarded.send(sender=User, user=user, by=by, reason=reason)
    tokens = sum(answer for _receiver, answer in answers if isinstance(answer, int))
    counts = {"sessions_ended": sessions, "api_tokens_revoked": tokens}
    ledger_append(
        event="security.user_deactivated", actor=by, obj=user, reason=reason,
        facts={**_user_facts(user), "was_active": was_active, "source": source, **counts},
    )
    return counts


def user_deactivate(*, actor: User, user: User, reason: str) -> dict[str, int]:
    """Deactivate the user at once (one Admin): their sessions end and API tokens are revoked (``user_offboard``)."""
    return user_offboard(user=user, reason=reason, by=actor, source="admin")


def _not_oneself(actor: AbstractBaseUser | None, user: User | None) -> None:
    if actor is not None and user is not None and actor.pk == user.pk:
        raise PermissionDenied("No one changes their own account's roles, password, second factor or lock.")


@transaction.atomic
def user_activate(*, actor: User, user: User, reason: str) -> None:
    """Activate a deactivated user again (the effect of a confirmed request)."""
    reason = _require_reason(reason)
    _not_oneself(actor, user)
    user.is_active = True
    user.save(update_fields=["is_active"])
    ledger_append(event="security.user_activated", actor=actor, obj=user, facts=_user_facts(user), reason=reason)


@transaction.atomic
def role_grant(*, actor: User | None, user: User, role: str, reason: str) -> None:
    """Give the user a role (group membership): the effect of a confirmed request, or of the bootstrap."""
    reason = _require_reason(reason)
    if role not in ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    _not_oneself(actor, user)
    incompatible = roles_refusal([*role_names(user), role])
    if incompatible:
        raise ValidationError({"role": incompatible})
    user.groups.add(Group.objects.get(name=role))
    ledger_append(
        event="security.role_granted", actor=actor, obj=user, facts={**_user_facts(user), "role": role}, reason=reason
    )


@transaction.atomic
def role_revoke(*, actor: User, user: User, role: str, reason: str) -> None:
    """Take a role away from the user (the effect of a confirmed request)."""
    reason = _require_reason(reason)
    if role not in ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}"})
    _not_oneself(actor, user)
    user.groups.remove(Group.objects.get(name=role))
    ledger_append(
        event="security.role_revoked", actor=actor, obj=user, facts={**_user_facts(user), "role": role}, reason=reason
    )


@transaction.atomic
def lockout_clear(*, actor: User, reason: str, user: User | None = None, ip_address: str = "") -> int:
    """Lift the waits of a username and/or an address after failed attempts; return how many records went.

    For a user, the effect of a confirmed request.
    """
    reason = _require_reason(reason)
    if user is None and not ip_address:
        raise ValidationError("Name a user or an address to unlock.")
    _not_oneself(actor, user)
    cleared = lockout_reset(username=user.get_username() if user is not None else None, ip_address=ip_address or None)
    facts = {"username": user.get_username() if user else "", "ip_address": ip_address, "failures_cleared": cleared}
    ledger_append(event="security.unlock", actor=actor, obj=user, facts=facts, reason=reason)
    return cleared


@transaction.atomic
def password_reset_force(*, actor: User, user: User, reason: str) -> str:
    """Set a temporary password the user must change at next login; end their sessions; return it (shown once).

    The effect of a confirmed request: the password goes to the confirming Admin only.
    """
    reason = _require_reason(reason)
    _not_oneself(actor, user)
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
    """Remove the user's second factors (lost phone); they enrol again at next login. Return how many went.

    The effect of a confirmed request.
    """
    reason = _require_reason(reason)
    _not_oneself(actor, user)
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


# --- separation of duties ------------------------------------------------------------------------


def roles_refusal(roles: Iterable[str]) -> str:
    """Return why one account may not hold these roles together (PLD_INCOMPATIBLE_ROLES), or '' when it may."""
    held = set(roles)
    for pair in sorted(settings.PLD_INCOMPATIBLE_ROLES, key=lambda p: sorted(ROLES.index(r) for r in p)):
        if pair <= held:
            first, second = sorted(pair, key=ROLES.index)
            return (
                f"One account may not be both {first} and {second} (PLD_INCOMPATIBLE_ROLES): the person who "
                "does one job must not be the one who checks it."
            )
    return ""


def second_person_refusal(user: AbstractBaseUser | None) -> str:
    """Return why the user may not be the second person of a two-person control now, or '' when they may.

    An account created, activated or granted a role by a confirmed request within PLD_PRIVILEGE_COOLDOWN_HOURS
    waits: otherwise one Admin could have a puppet account made and use it as the second person at once.
    """
    hours = settings.PLD_PRIVILEGE_COOLDOWN_HOURS
    if user is None or not user.is_authenticated or hours <= 0:
        return ""
    at = AccountState.objects.filter(user_id=user.pk).values_list("privileged_at", flat=True).first()
    if at is None:
        return ""
    until = at + timedelta(hours=hours)
    if timezone.now() >= until:
        return ""
    return (
        f"Your account gained its access on {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, less than {hours} hours ago "
        f"(PLD_PRIVILEGE_COOLDOWN_HOURS): until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC you cannot be the "
        "second person of a two-person control (confirming an account change or a gate override, approving a "
        "rule or a rule-set order)."
    )


def second_person_eligible(users: QuerySet[User]) -> QuerySet[User]:
    """Return the users who may be the second person of a two-person control now: ``second_person_refusal`` in bulk."""
    hours = settings.PLD_PRIVILEGE_COOLDOWN_HOURS
    if hours <= 0:
        return users
    return users.exclude(account_state__privileged_at__gt=timezone.now() - timedelta(hours=hours))


def account_change_params(
    *, kind: str, role: str = "", roles: Iterable[str] = (), username: str = "", first_name: str = "",
    last_name: str = "",
) -> dict[str, Any]:
    """Return a request's parameters in the one form both its signatures are over."""
    if kind == Kind.CREATE:
        chosen = set(roles)
        return {
            "username": username.strip(), "first_name": first_name.strip(), "last_name": last_name.strip(),
            # Unknown names are kept, so that the request refuses them rather than dropping them silently.
            "roles": [r for r in ROLES if r in chosen] + sorted(chosen - set(ROLES)),
        }
    if kind in (Kind.GRANT_ROLE, Kind.REVOKE_ROLE):
        return {"role": role}
    return {}


def _require_manager(user: AbstractBaseUser) -> None:
    if not (user.is_authenticated and user.is_active and user.has_perm("accounts.manage_users")):
        raise PermissionDenied("Only Admins request, confirm or withdraw account changes.")


def _record(change: AccountChangeRequest, *, actor: AbstractBaseUser, event: str, reason: str) -> None:
    # The same as rules.audit.audited_save, which this layer may not import: who and why on the history record,
    # and the row as saved in the ledger, so verify_ledger finds a later change behind the services' back.
    change.full_clean()
    change._history_user = actor  # type: ignore[attr-defined]
    change._change_reason = reason[:_REASON_MAX_LENGTH]  # type: ignore[attr-defined]
    change.save()
    ledger_append(event=event, actor=actor, obj=change, facts=row_facts(change), reason=reason)


def _pending(target: User) -> Any:
    return AccountChangeRequest.objects.filter(target=target, status=AccountChangeRequest.Status.PENDING)


def _effect_refusal(*, kind: str, target: User, params: dict[str, Any]) -> str:
    """Return why the change cannot take effect on the account as it is now, or '' when it can."""
    held = role_names(target)
    if kind in (Kind.GRANT_ROLE, Kind.REVOKE_ROLE):
        role = params.get("role", "")
        if role not in ROLES:
            return f"Choose the role to {'grant' if kind == Kind.GRANT_ROLE else 'revoke'}."
        if kind == Kind.REVOKE_ROLE:
            return "" if role in held else f"{target.username} does not hold the role {role}."
        if role in held:
            return f"{target.username} already holds the role {role}."
        if not target.is_active:
            return f"{target.username} is deactivated: request the account's activation first."
        return roles_refusal([*held, role])
    if kind == Kind.ACTIVATE and target.is_active:
        return f"{target.username} is already active."
    return ""


def _create_refusal(params: dict[str, Any]) -> dict[str, str]:
    errors = {}
    username = params.get("username", "")
    if not username:
        errors["username"] = "Give the new account's username."
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = "This username exists (users are never deleted, so names are not reused)."
    roles = params.get("roles", [])
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        errors["roles"] = f"Unknown roles: {', '.join(unknown)}"
    elif not roles:
        errors["roles"] = "Choose the account's role."
    elif refusal := roles_refusal(roles):
        errors["roles"] = refusal
    return errors


def account_change_request_refusal(*, user: AbstractBaseUser, kind: str, target: User | None) -> str:
    """Return why the user may not request this kind of change of the account, or '' when they may."""
    if not user.has_perm("accounts.manage_users"):
        return "Only Admins request account changes."
    if target is not None and target.pk == user.pk:
        return (
            "This is your own account: no one requests a change of their own roles, password, second factor or "
            "lock. Ask another Admin."
        )
    return ""


@transaction.atomic
def account_change_request(
    *, user: AbstractBaseUser, kind: str, reason: str, params: dict[str, Any], target: User | None = None,
    signature: Signature | None = None,
) -> AccountChangeRequest:
    """Ask a second Admin to confirm a change of an account; nothing changes until one does.

    It is a signing: the requester's signature means "Account change requested", over the change and the
    account's username. A new account (``kind`` create) is made now, inactive, without roles and without a
    usable password, so its name is taken; it becomes usable only when a different Admin confirms.
    """
    _require_manager(user)
    if kind not in Kind.values:
        raise ValidationError({"kind": f"{kind!r} is not an account change."})
    reason = _require_reason(reason)
    try:
        canonical = account_change_params(kind=kind, **params)
    except TypeError:  # a parameter no change of this kind takes
        canonical = None
    if params != canonical:
        raise ValidationError("The change's parameters are not in their canonical form: nothing was asked.")
    if kind == Kind.CREATE:
        errors = _create_refusal(params)
        if errors:
            raise ValidationError(errors)
        username = params["username"]
    else:
        if target is None:
            raise ValidationError("Name the account to change.")
        target = User.objects.select_for_update().get(pk=target.pk)
        username = target.get_username()
    refusal = account_change_request_refusal(user=user, kind=kind, target=target)
    if refusal:
        raise PermissionDenied(refusal)
    signature_check(
        signature, user=user, meanings=Signature.Meaning.ACCOUNT_CHANGE_REQUESTED,
        content_sha256=account_change_content_sha256(change=kind, username=username, params=params),
    )
    if target is None:
        target = User(username=username, first_name=params["first_name"], last_name=params["last_name"],
                      is_active=False)
        # No password anyone knows until the confirmation sets one and shows it to the confirming Admin.
        target.set_unusable_password()
        target.full_clean()
        target.save()
        AccountState.objects.create(user=target, must_change_password=True)
        ledger_append(event="security.user_created", actor=user, obj=target,
                      facts={**_user_facts(target), "roles_requested": params["roles"]}, reason=reason)
    else:
        if _pending(target).filter(kind=Kind.CREATE).exists():
            raise ValidationError(
                f"The creation of {username} waits for a second Admin: confirm or withdraw it first."
            )
        refusal = _effect_refusal(kind=kind, target=target, params=params)
        if refusal:
            raise ValidationError(refusal)
        same = _pending(target).filter(kind=kind, params=params).select_related("requested_by").first()
        if same is not None:
            raise ValidationError(
                f"{same.requested_by} already asked for this change; a different Admin confirms or withdraws it."
            )
    change = AccountChangeRequest(
        kind=kind, target=target, target_username=username, params=params, reason=reason, requested_by=user,
        request_signature=signature,
    )
    _record(change, actor=user, event="security.account_change_requested", reason=reason)
    return change


def account_change_confirm_refusal(
    change: AccountChangeRequest, *, user: AbstractBaseUser, cooldown: str | None = None
) -> str:
    """Return why the user may not confirm the request, or '' when they may (four eyes, own account, cooldown).

    ``cooldown`` is the user's ``second_person_refusal`` when the caller already has it (a list of requests).
    """
    if not user.has_perm("accounts.manage_users"):
        return "Only Admins confirm account changes."
    if change.status != AccountChangeRequest.Status.PENDING:
        return f"This request is already {change.get_status_display().lower()}."
    if change.requested_by_id == user.pk:
        return "You requested this change yourself; a different Admin must confirm it (four eyes)."
    if change.target_id == user.pk:
        return "This change concerns your own account; another Admin confirms it."
    return second_person_refusal(user) if cooldown is None else cooldown


@dataclass(frozen=True)
class AccountChangeResult:
    """A confirmed request and, for a new account or a forced reset, the temporary password (shown once)."""

    change: AccountChangeRequest
    password: str = ""


@transaction.atomic
def account_change_confirm(
    *, change: AccountChangeRequest, user: AbstractBaseUser, signature: Signature | None = None,
) -> AccountChangeResult:
    """Confirm another Admin's request as the second Admin and make the change; return it and any password.

    It is a signing: the confirmer's signature means "Account change confirmed", over the same content as the
    request's. The requester, the account concerned and an account in its privilege cooldown are refused.
    """
    _require_manager(user)
    change = AccountChangeRequest.objects.select_for_update().select_related("requested_by").get(pk=change.pk)
    refusal = account_change_confirm_refusal(change, user=user)
    if refusal:
        if change.status != AccountChangeRequest.Status.PENDING:
            raise ValidationError(refusal)
        raise PermissionDenied(refusal)
    signature_check(signature, user=user, meanings=Signature.Meaning.ACCOUNT_CHANGE_CONFIRMED,
                    content_sha256=change.content_sha256())
    target = User.objects.select_for_update().get(pk=change.target_id)
    if change.kind == Kind.CREATE:
        refusal = roles_refusal(change.roles)
    else:
        refusal = _effect_refusal(kind=change.kind, target=target, params=change.params)
    if refusal:
        raise ValidationError(refusal)
    change.status = AccountChangeRequest.Status.CONFIRMED
    change.confirmed_by = user
    change.confirmed_at = timezone.now()
    change.confirm_signature = signature
    _record(change, actor=user, event="security.account_change_confirmed",
            reason=f"Confirmed {change.get_kind_display().lower()} requested by {change.requested_by}")
    password = _apply(change, target=target, user=user)
    if change.kind in PRIVILEGING:
        AccountState.objects.update_or_create(user=target, defaults={"privileged_at": change.confirmed_at})
    return AccountChangeResult(change=change, password=password)


def _apply(change: AccountChangeRequest, *, target: User, user: AbstractBaseUser) -> str:
    reason = change.reason
    if change.kind == Kind.CREATE:
        for role in change.roles:
            role_grant(actor=user, user=target, role=role, reason=reason)
        password = password_reset_force(actor=user, user=target, reason=reason)
        user_activate(actor=user, user=target, reason=reason)
        return password
    if change.kind == Kind.GRANT_ROLE:
        role_grant(actor=user, user=target, role=change.role, reason=reason)
    elif change.kind == Kind.REVOKE_ROLE:
        role_revoke(actor=user, user=target, role=change.role, reason=reason)
    elif change.kind == Kind.RESET_PASSWORD:
        return password_reset_force(actor=user, user=target, reason=reason)
    elif change.kind == Kind.RESET_SECOND_FACTOR:
        mfa_reset(actor=user, user=target, reason=reason)
    elif change.kind == Kind.UNLOCK:
        lockout_clear(actor=user, user=target, reason=reason)
    elif change.kind == Kind.ACTIVATE:
        user_activate(actor=user, user=target, reason=reason)
    return ""


@transaction.atomic
def account_change_withdraw(*, change: AccountChangeRequest, user: AbstractBaseUser) -> AccountChangeRequest:
    """Withdraw a pending request (its requester or another Admin, never the account concerned)."""
    _require_manager(user)
    change = AccountChangeRequest.objects.select_for_update().get(pk=change.pk)
    if change.status != AccountChangeRequest.Status.PENDING:
        raise ValidationError(f"This request is already {change.get_status_display().lower()}.")
    if change.target_id == user.pk:
        # Otherwise an Admin could keep their own role by withdrawing every request to revoke it.
        raise PermissionDenied("This change concerns your own account; another Admin withdraws it.")
    change.status = AccountChangeRequest.Status.WITHDRAWN
    change.withdrawn_by = user
    change.withdrawn_at = timezone.now()
    _record(change, actor=user, event="security.account_change_withdrawn", reason="Request withdrawn")
    return change


def pending_account_changes() -> Any:
    """Return the requests that wait for a second Admin, oldest first."""
    return (
        AccountChangeRequest.objects.filter(status=AccountChangeRequest.Status.PENDING)
        .select_related("requested_by", "target", "request_signature")
        .order_by("requested_at", "id")
    )


# --- bootstrapping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapAccount:
    """One account the bootstrap creates; without a password it gets a temporary one to change at first login."""

    username: str
    roles: tuple[str, ...]
    first_name: str = ""
    last_name: str = ""
    password: str = ""


def operator() -> tuple[str, str]:
    """Return who runs this process on which host: the operating-system user and the host name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry or LOGNAME
        user = f"uid {os.getuid()}"
    return user, socket.gethostname()


def active_admins_exist() -> bool:
    """Say whether any active account holds the Admin role."""
    return User.objects.filter(is_active=True, groups__name=ADMIN).exists()


@transaction.atomic
def accounts_bootstrap(
    *, accounts: list[BootstrapAccount], reason: str, run_by: str, host: str, command: str = "bootstrap_accounts",
) -> dict[str, str]:
    """Create the first accounts, among them at least one Admin, while no active Admin exists.

    Return each username's password (a generated temporary one when none was given). The ledger records who
    ran it (the operating-system user and host) and why. These accounts carry no privilege cooldown: there is
    no other Admin to have made them.
    """
    reason = _require_reason(reason)
    facts = {"os_user": run_by, "host": host, "command": command,
             "accounts": [{"username": a.username, "roles": list(a.roles)} for a in accounts]}
    # First, so the ledger head's lock serialises two bootstraps: the second then sees the first's Admins.
    ledger_append(event="security.accounts_bootstrapped", actor=None, facts=facts, reason=reason)
    if active_admins_exist():
        raise ValidationError(
            "An active Admin exists: accounts are requested by one Admin and confirmed by another on /users/, "
            "not bootstrapped."
        )
    if not any(ADMIN in a.roles for a in accounts):
        raise ValidationError("Bootstrap at least one Admin account.")
    passwords: dict[str, str] = {}
    for account in accounts:
        errors = _create_refusal({"username": account.username, "roles": list(account.roles)})
        if errors:
            raise ValidationError({field: f"{account.username}: {message}" for field, message in errors.items()})
        user = User(username=account.username, first_name=account.first_name, last_name=account.last_name)
        password = account.password or temporary_password()
        user.set_password(password)
        user.full_clean()
        user.save()
        AccountState.objects.create(user=user, must_change_password=not account.password)
        ledger_append(event="security.user_created", actor=None, obj=user,
                      facts={**_user_facts(user), "bootstrap": True}, reason=reason)
        for role in account.roles:
            role_grant(actor=None, user=user, role=role, reason=reason)
        passwords[account.username] = password
    return passwords
