"""Electronic signatures (21 CFR Part 11): sign content with a meaning by re-entering the password.

A signing is two steps in one transaction: ``signature_sign`` checks the signer's credentials and
stores an append-only ``Signature`` holding the SHA-256 of the exact content signed; the service that
acts (``rule_approve``, ``prompt_version_promote``…) then calls ``signature_check`` to refuse a
signature by someone else, with another meaning, or over other content. Views run both inside
``e_signing()``, so a refused action leaves no signature behind and a refused password still reaches
the ledger.

Each kind of content has one canonical function here (``rule_content_sha256``…); the signer's form
and the acting service both call it, so what was signed is what was acted on.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pldreview.ledger import canonical_json, ledger_append, row_facts
from pldreview.models import LedgerEntry, Signature

Meaning = Signature.Meaning
AuthMethod = Signature.AuthMethod

# Session keys: when this session last signed with the password, and whether it passed the second factor.
_PASSWORD_AT_KEY = "pld_signing_password_at"
_SECOND_FACTOR_KEY = "pld_signing_second_factor"

# A fresh identity check made for signing outside the form (re-authentication at the identity provider, a
# passkey): who, how, when. A signing takes it once (pldreview.accounts.sso records the IdP's).
_PROOF_KEY = "pld_signing_proof"

# Sent (request, user) before a signing checks any credential; a receiver answers with the time until which this
# signer must wait after failed attempts, or None (pldreview.accounts connects the delays).
signing_attempted = Signal()

# Writes that must outlive the signing's transaction (the failure counters): run after it commits or rolls back.
_AFTER_SIGNING: ContextVar[list[Callable[[], None]] | None] = ContextVar("pld_after_signing", default=None)
# Set while signature_sign checks credentials: a failed authentication then is a failed signing, recorded as one.
_CHECKING: ContextVar[bool] = ContextVar("pld_signing_checking", default=False)


def after_signing(write: Callable[[], None]) -> None:
    """Run ``write`` once the surrounding ``e_signing()`` transaction has ended (at once outside one).

    A refused signing rolls its transaction back; failure counters written inside it would be lost with it,
    and eleven wrong signing passwords would cost nothing.
    """
    pending = _AFTER_SIGNING.get()
    if pending is None:
        write()
    else:
        pending.append(write)


def signing_credentials_checked() -> bool:
    """Say whether a signing is checking its signer's credentials right now (in this thread or task)."""
    return _CHECKING.get()


# --- canonical content ---------------------------------------------------------------------------


def content_sha256(data: Any) -> str:
    """Return the SHA-256 of the data's canonical JSON (sorted keys, no spaces, UTF-8)."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


# Version 2 of a rule revision's signed content adds the topic, which the compiler writes into the prompt; a
# signature made before it (version 1: text, label, precedence note) stays a valid record of what it covered.
RULE_CONTENT_VERSION = 2


def rule_content_sha256(*, text: str, label: str, topic: str, precedence_note: str) -> str:
    """Return the hash a rule revision is signed over: its text, label, topic and precedence note (version 2)."""
    return content_sha256({
        "kind": "rule_revision", "version": RULE_CONTENT_VERSION,
        "text": text, "label": label, "topic": topic, "precedence_note": precedence_note,
    })


def rule_content_sha256_v1(*, text: str, label: str, precedence_note: str) -> str:
    """Return the version-1 hash (no topic) that rule signatures made before version 2 hold."""
    return content_sha256({"kind": "rule_revision", "text": text, "label": label, "precedence_note": precedence_note})


def rule_signature_content_version(
    signed_sha256: str, *, text: str, label: str, topic: str, precedence_note: str
) -> int | None:
    """Return which version of a rule's content a stored signature hash covers (2, or 1 without the topic), or None.

    For re-verifying stored signatures: new signings are checked against version 2 only (``signature_check``).
    """
    if signed_sha256 == rule_content_sha256(text=text, label=label, topic=topic, precedence_note=precedence_note):
        return RULE_CONTENT_VERSION
    if signed_sha256 == rule_content_sha256_v1(text=text, label=label, precedence_note=precedence_note):
        return 1
    return None


def ruleset_order_content_sha256(*, task_id: int, order: list[int]) -> str:
    """Return the hash a rule set reorder proposal, its approval or rejection is signed over: the proposed order."""
    return content_sha256({"kind": "rule_set_order", "task": task_id, "order": [int(pk) for pk in order]})


def prompt_version_content_sha256(text: str) -> str:
    """Return the hash a prompt version is signed over: SHA-256 of its text (equal to ``PromptVersion.sha256``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def report_content_sha256(data: bytes) -> str:
    """Return the hash a report is signed over: SHA-256 of the PDF's bytes (equal to ``Report.sha256``)."""
    return hashlib.sha256(data).hexdigest()


def api_token_content_sha256(*, token_id: int, prefix: str, name: str, username: str) -> str:
    """Return the hash a token revocation is signed over: which token, for whom (never the token itself)."""
    return content_sha256({"kind": "api_token", "id": token_id, "prefix": prefix, "name": name, "user": username})


def account_change_content_sha256(*, change: str, username: str, params: dict[str, Any]) -> str:
    """Return the hash an account change request and its confirmation are signed over: what changes, for whom."""
    return content_sha256({"kind": "account_change", "change": change, "username": username, "params": params})


def serving_content_sha256(*, task_id: int, task_name: str, action: str, lifts: int | None = None) -> str:
    """Return the hash a stop or resume of a task's serving is signed over: which task, which action and, for a
    resume, the stop it lifts (so a resume's signature cannot lift another stop)."""
    return content_sha256({"kind": "serving", "task": task_id, "name": task_name, "action": action, "lifts": lifts})


def task_membership_content_sha256(*, task_id: int, task_name: str, username: str, action: str) -> str:
    """Return the hash adding or removing a task member is signed over: which task, whom, add or remove."""
    return content_sha256({"kind": "task_membership", "task": task_id, "name": task_name, "user": username,
                           "action": action})


def decision_override_content_sha256(
    *, request_id: str, logged_label: str, overridden_label: str, prompt_sha256: str, input_sha256: str
) -> str:
    """Return the hash a decision override is signed over: which logged decision, what it said, what it becomes."""
    return content_sha256({
        "kind": "decision_override", "request_id": request_id, "logged_label": logged_label,
        "overridden_label": overridden_label, "prompt_sha256": prompt_sha256, "input_sha256": input_sha256,
    })


# --- the second factor seam ----------------------------------------------------------------------


def _second_factor_authenticators(user: AbstractBaseUser) -> list[Any]:
    # The seam for the accounts work: with django-allauth's MFA installed, its TOTP and recovery-code
    # authenticators are the user's second factor; without it nobody has one and signings ask only the password.
    if not apps.is_installed("allauth.mfa"):
        return []
    from allauth.mfa.models import Authenticator

    kinds = [Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES]
    return list(Authenticator.objects.filter(user=user, type__in=kinds))


def mfa_enabled(user: AbstractBaseUser) -> bool:
    """Say whether the user has enrolled a second factor."""
    return any(a.type == "totp" for a in _second_factor_authenticators(user))


def second_factor_required(request: HttpRequest | None) -> bool:
    """Say whether this signing must check the second factor too: the session's first signing, with MFA on.

    Part 11 §11.200(a)(1): the first signing of a continuous session uses every component, later ones at
    least one. A new login (or an idle timeout, which ends the session) starts a new session.
    """
    if request is None or not request.user.is_authenticated or not mfa_enabled(request.user):
        return False
    return request.session.get(_SECOND_FACTOR_KEY) != request.user.pk


def _passkey_first_signing_required(request: HttpRequest | None) -> bool:
    # An account whose only second factor is a passkey has no code to type: its session's first signing is by
    # passkey, or the password would be its only component (§11.200(a)(1)(i)).
    if request is None or not request.user.is_authenticated or mfa_enabled(request.user):
        return False
    return request.session.get(_SECOND_FACTOR_KEY) != request.user.pk and passkey_enabled(request.user)


def second_factor_verify(user: AbstractBaseUser, code: str) -> bool:
    """Say whether the code is a valid current second-factor code (TOTP or recovery code) of the user."""
    code = code.strip()
    return bool(code) and any(a.wrap().validate_code(code) for a in _second_factor_authenticators(user))


# --- identity checked outside the form: the identity provider, a passkey ---------------------------


def signing_proof_record(request: HttpRequest, *, user: AbstractBaseUser, method: str) -> None:
    """Note in the session that ``user`` has just proven who they are by ``method``, for their next signing."""
    if method not in (AuthMethod.OIDC, AuthMethod.SAML, AuthMethod.PASSKEY):
        raise ValueError(f"{method!r} is not a method checked outside the signing form")
    request.session[_PROOF_KEY] = {"user": user.pk, "method": method, "at": timezone.now().isoformat()}


def signing_proof(request: HttpRequest | None) -> dict[str, Any] | None:
    """Return this session's unused, unexpired identity proof of its user (method, at), or None."""
    if request is None or not hasattr(request, "session") or not request.user.is_authenticated:
        return None
    proof = request.session.get(_PROOF_KEY) or {}
    at = parse_datetime(proof.get("at", ""))
    if proof.get("user") != request.user.pk or at is None:
        return None
    if timezone.now() - at > timedelta(seconds=settings.PLD_SIGNING_PROOF_SECONDS):
        return None
    return {"method": proof["method"], "at": at}


def _signing_proof_take(request: HttpRequest | None) -> str | None:
    proof = signing_proof(request)
    if proof is not None:
        # Once: a second signing needs a second re-authentication (§11.200(a)(1)(ii) asks at least one component
        # of each later signing; an identity provider's re-authentication is the whole of it).
        request.session.pop(_PROOF_KEY, None)
        return proof["method"]
    return None


def passkey_enabled(user: AbstractBaseUser) -> bool:
    """Say whether the user has a passkey (allauth's WebAuthn authenticator) to sign with."""
    if not apps.is_installed("allauth.mfa") or not user.is_authenticated:
        return False
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.WEBAUTHN).exists()


def passkey_signing_options(request: HttpRequest) -> dict[str, Any]:
    """Start a passkey signing: return the WebAuthn request options (the challenge is kept in the session)."""
    from allauth.mfa.webauthn.internal import auth

    return {"request_options": auth.begin_authentication(request.user)}


def _passkey_verify(user: AbstractBaseUser, credential: str) -> bool:
    # allauth's own WebAuthn check (fido2): the session's challenge, one of this user's credentials, the origin,
    # and user verification (MFA_WEBAUTHN_USER_VERIFICATION = "required"); the challenge is used once.
    import json

    from allauth.mfa.webauthn.internal import auth

    try:
        response = json.loads(credential)
        auth.parse_authentication_response(response)
        authenticator = auth.complete_authentication(user, response)
    except (ValueError, TypeError, ValidationError):
        return False
    authenticator.record_usage()
    return authenticator.user_id == user.pk


def signs_at_identity_provider(user: AbstractBaseUser) -> bool:
    """Say whether the user signs in through single sign-on (and so signs by re-authenticating there)."""
    if not apps.is_installed("allauth.socialaccount") or not user.is_authenticated:
        return False
    from allauth.socialaccount.models import SocialAccount

    return SocialAccount.objects.filter(user_id=user.pk).exists()


# --- signing -------------------------------------------------------------------------------------


class SignatureRefused(ValidationError):
    """The signer's credentials were missing or wrong; nothing was signed."""

    def __init__(self, field: str, message: str, *, failure: dict[str, Any] | None = None) -> None:
        super().__init__({field: message})
        self.failure = failure
        self.user: AbstractBaseUser | None = None
        self.ledger_entry: LedgerEntry | None = None


def signing_password_required(request: HttpRequest | None) -> bool:
    """Say whether the next signing in this session must re-enter the password (PLD_SIGNING_REAUTH)."""
    minutes = _window_minutes()
    if minutes is None or request is None or not request.user.is_authenticated:
        return True
    last = request.session.get(_PASSWORD_AT_KEY) or {}
    at = parse_datetime(last.get("at", "")) if last.get("user") == request.user.pk else None
    return at is None or timezone.now() - at > timedelta(minutes=minutes)


def _window_minutes() -> int | None:
    policy = settings.PLD_SIGNING_REAUTH
    return int(policy.split(":", 1)[1]) if policy.startswith("window:") else None


def printed_name(user: AbstractBaseUser) -> str:
    """Return the name a signature prints: the user's full name, or the username when there is none."""
    full = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def _record_failure(failure: dict[str, Any], user: AbstractBaseUser) -> LedgerEntry:
    return ledger_append(
        event="security.signature_failed", actor=user, facts=failure, reason=failure.get("problem", "")
    )


def _delay_message(request: HttpRequest) -> str:
    # pld_delayed_until is set by the authentication backend's delay (pldreview.accounts.lockout) when it refuses.
    until = getattr(request, "pld_delayed_until", None)
    when = timezone.localtime(until).strftime("%Y-%m-%d %H:%M:%S %Z") if until else "a while"
    return (f"Too many failed attempts: signing is refused until {when}, even with the right password. "
            "Nothing was signed; your text is kept.")


def _second_factor_failed(request: HttpRequest | None, user: AbstractBaseUser) -> None:
    # The same signal as a wrong password, so a wrong code counts toward the same limits (django-axes' handler).
    if request is not None:
        user_login_failed.send(
            sender=__name__, request=request,
            credentials={"username": user.get_username(), "second_factor": "********************"},
        )


def _refuse(field: str, message: str, *, user: AbstractBaseUser, failure: dict[str, Any] | None) -> None:
    exc = SignatureRefused(field, message, failure=failure)
    exc.user = user
    if failure is not None:
        # In its own savepoint: recorded even though the signing is refused (§11.300(d): report attempts).
        exc.ledger_entry = _record_failure(failure, user)
    raise exc


def _check_credentials(
    *, user: AbstractBaseUser, password: str, second_factor: str, request: HttpRequest | None, failure: dict[str, Any]
) -> tuple[bool, bool]:
    """Check the password (when given or due) and the second factor (when due); return which were checked."""
    if request is not None and any(until for _receiver, until in signing_attempted.send(
        sender=__name__, request=request, user=user
    )):
        # During a wait after failed attempts nothing is checked: not the password, not the code.
        _refuse("password", _delay_message(request), user=user,
                failure=failure | {"problem": "refused: delayed after failed attempts"})
    password_checked = False
    if password:
        if request is None:
            # No HTTP request (a management command, the demo's seeding): Django checks the user's own password
            # hash; the delays after failed attempts need a request and guard the web, where guessing happens.
            matches = user.check_password(password)
        else:
            # Django's authentication backends, so whatever guards logins (the delays after failures) guards
            # signings too: during a delay even the right password is refused.
            checked = authenticate(request, username=user.get_username(), password=password)
            matches = checked is not None and checked.pk == user.pk
            if not matches and getattr(request, "axes_locked_out", False):
                _refuse("password", _delay_message(request), user=user,
                        failure=failure | {"problem": "refused: delayed after failed attempts"})
        if not matches:
            _refuse("password", "Wrong password: nothing was signed. Your text is kept; enter your password again.",
                    user=user, failure=failure | {"problem": "wrong password"})
        password_checked = True
    elif signing_password_required(request):
        _refuse("password", "Enter your password to sign.", user=user, failure=None)
    second_factor_checked = False
    if _passkey_first_signing_required(request):
        _refuse("password", "Sign with your passkey: the first signing of a session needs your second factor "
                "too, and your second factor is a passkey.", user=user, failure=None)
    if second_factor_required(request):
        if not second_factor.strip():
            _refuse("second_factor", "Enter the code from your authenticator: the first signing of a session "
                    "needs your second factor too.", user=user, failure=None)
        if not second_factor_verify(user, second_factor):
            _second_factor_failed(request, user)
            _refuse("second_factor", "Wrong authenticator code: nothing was signed.",
                    user=user, failure=failure | {"problem": "wrong second factor"})
        second_factor_checked = True
    return password_checked, second_factor_checked


def _passkey_check(*, user: AbstractBaseUser, passkey: str, request: HttpRequest | None,
                   failure: dict[str, Any]) -> None:
    if request is None:
        raise PermissionDenied("A passkey signs in a browser only.")
    if any(until for _receiver, until in signing_attempted.send(sender=__name__, request=request, user=user)):
        _refuse("password", _delay_message(request), user=user,
                failure=failure | {"problem": "refused: delayed after failed attempts"})
    if not _passkey_verify(user, passkey):
        _refuse("password", "Your passkey did not confirm who you are: nothing was signed. Try again.",
                user=user, failure=failure | {"problem": "passkey not verified", "method": AuthMethod.PASSKEY})


def signature_sign(
    *,
    user: AbstractBaseUser,
    password: str,
    meaning: str,
    reason: str,
    content_sha256: str,
    request: HttpRequest | None = None,
    second_factor: str = "",
    passkey: str = "",
) -> Signature:
    """Check the signer's password (and second factor when due), or passkey, and store their signature.

    ``passkey`` is a WebAuthn assertion (JSON) answering ``passkey_signing_options``; an SSO account without one
    signs with the proof its re-authentication at the identity provider left (``signing_proof``).

    A wrong password raises ``SignatureRefused`` (a ValidationError on ``password``), stores no
    signature and appends ``security.signature_failed`` to the ledger.
    """
    if not user.is_authenticated or not user.is_active:
        raise PermissionDenied("Only an active, logged-in user can sign.")
    if meaning not in Meaning.values:
        raise ValidationError({"meaning": f"{meaning!r} is not a signature meaning."})
    failure = {"meaning": meaning, "content_sha256": content_sha256, "username": user.get_username()}
    proven_by = None if password or passkey else _signing_proof_take(request)
    password_checked = second_factor_checked = False
    if passkey:
        _passkey_check(user=user, passkey=passkey, request=request, failure=failure)
        auth_method = AuthMethod.PASSKEY
    elif proven_by is not None:
        auth_method = proven_by
    elif signs_at_identity_provider(user):
        # No password here to check: an SSO account's identity is checked where it signs in, again, now.
        _refuse("password", "Confirm who you are at your identity provider to sign (the link above the button).",
                user=user, failure=None)
    else:
        checking = _CHECKING.set(True)
        try:
            password_checked, second_factor_checked = _check_credentials(
                user=user, password=password, second_factor=second_factor, request=request, failure=failure
            )
        finally:
            _CHECKING.reset(checking)
        auth_method = AuthMethod.PASSWORD_TOTP if second_factor_checked else AuthMethod.PASSWORD
    with transaction.atomic():
        signature = Signature(
            user=user,
            username=user.get_username(),
            full_name=printed_name(user),
            signed_at=timezone.now(),
            meaning=meaning,
            reason=reason.strip(),
            content_sha256=content_sha256,
            reauth_policy=settings.PLD_SIGNING_REAUTH,
            password_checked=password_checked,
            second_factor_checked=second_factor_checked,
            auth_method=auth_method,
        )
        signature.full_clean()
        signature.save()
        ledger_append(event="signature.created", actor=user, obj=signature, facts=row_facts(signature),
                      reason=signature.reason)
    if request is not None and hasattr(request, "session"):
        if password_checked:
            request.session[_PASSWORD_AT_KEY] = {"user": user.pk, "at": signature.signed_at.isoformat()}
        if second_factor_checked or auth_method == AuthMethod.PASSKEY:
            request.session[_SECOND_FACTOR_KEY] = user.pk
    return signature


def signature_sign_from_form(
    request: HttpRequest, data: dict[str, Any], *, meaning: str, content_sha256: str
) -> Signature:
    """Sign as the request's user with a ``SigningForm``'s cleaned credentials and its ``reason`` field, if any."""
    return signature_sign(
        user=request.user, password=data.get("password", ""), second_factor=data.get("second_factor", ""),
        passkey=data.get("passkey", ""), meaning=meaning, reason=data.get("reason", ""),
        content_sha256=content_sha256, request=request,
    )


def signing_context(request: HttpRequest) -> dict[str, Any]:
    """Return which credentials this session's next signing asks for, for the forms' templates."""
    return _signing_credentials(request) | {"signing_passkey": passkey_enabled(request.user)}


def _signing_credentials(request: HttpRequest) -> dict[str, Any]:
    proof = signing_proof(request)
    if proof is not None:
        return {"signing_needs_password": False, "signing_needs_second_factor": False, "signing_proof": proof}
    if signs_at_identity_provider(request.user):
        return {"signing_needs_password": False, "signing_needs_second_factor": False, "signing_at_idp": True,
                "signing_return_to": _page_path(request)}
    return {
        "signing_needs_password": signing_password_required(request),
        "signing_needs_second_factor": second_factor_required(request),
    }


def _page_path(request: HttpRequest) -> str:
    # Where the person comes back to after confirming who they are: the page in the address bar, not the URL a
    # refused form was posted to (htmx names it; a plain form post came from the referring page).
    if request.method == "GET" and not getattr(request, "htmx", False):
        return request.get_full_path()
    current = getattr(getattr(request, "htmx", None), "current_url_abs_path", None) or ""
    referer = request.META.get("HTTP_REFERER", "")
    for candidate in (current, referer):
        parts = urlsplit(candidate)
        if candidate and (not parts.netloc or parts.netloc == request.get_host()):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def signature_check(
    signature: Signature | None, *, user: AbstractBaseUser, meanings: str | tuple[str, ...], content_sha256: str
) -> Signature:
    """Refuse a signature that is missing, by another user, of another meaning or over other content."""
    allowed = (meanings,) if isinstance(meanings, str) else meanings
    if signature is None or signature.pk is None:
        raise ValidationError({"password": "This action is a signing: enter your password to sign it."})
    if signature.user_id != user.pk:
        raise PermissionDenied("A signature can only be used by the person who signed.")
    if signature.meaning not in allowed:
        wanted = " or ".join(str(Meaning(m).label) for m in allowed)
        raise ValidationError(f"This signature means “{signature.get_meaning_display()}”, not “{wanted}”.")
    if signature.content_sha256 != content_sha256:
        raise ValidationError(
            "The signature is over other content than this action's (the record changed): nothing was saved."
        )
    return signature


@contextmanager
def e_signing() -> Iterator[None]:
    """Run a signing and the action it signs in one transaction; a refused signing stays in the ledger and counts.

    The failure counters are written after the transaction (``after_signing``); the ledger entry of a refusal is
    written inside it and, when the rollback took it, again after.
    """
    pending: list[Callable[[], None]] = []
    token = _AFTER_SIGNING.set(pending)
    try:
        with transaction.atomic():
            yield
    except SignatureRefused as exc:
        lost = exc.ledger_entry is not None and not LedgerEntry.objects.filter(
            pk=exc.ledger_entry.pk, hash=exc.ledger_entry.hash
        ).exists()
        if lost and exc.failure is not None and exc.user is not None:
            # The surrounding transaction's rollback took the failure record with it: write it again.
            exc.ledger_entry = _record_failure(exc.failure, exc.user)
        raise
    finally:
        _AFTER_SIGNING.reset(token)
        for write in pending:
            write()
