"""API tokens: created by Admins for a user, shown once, stored as a SHA-256, revocable."""
from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from evaluation.models import ApiToken, ApiTokenWindow
from pldreview.ledger import ledger_append
from pldreview.models import Signature
from pldreview.signatures import Meaning, api_token_content_sha256, signature_check
from rules.models import Task

TOKEN_PREFIX = "pld_"
LAST_USED_RESOLUTION_SECONDS = 60
# Every role reads prompt versions; a user without a role has none of them.
OWNER_PERMISSION = "rules.view_promptversion"


class TokenError(Exception):
    """A request's token may not be used; ``status`` is the HTTP status to answer and ``code`` a stable name."""

    def __init__(self, message: str, *, status: int, code: str = "", retry_after: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or ("unauthorized" if status == 401 else "forbidden")
        self.retry_after = retry_after


def _token_facts(token: ApiToken) -> dict[str, object]:
    # Not row_facts: last_used_at changes on use and is not an audited event.
    return {"user_id": token.user_id, "name": token.name, "prefix": token.prefix, "token_hash": token.token_hash,
            "created_by_id": token.created_by_id, "revoked_at": token.revoked_at, "expires_at": token.expires_at,
            "rate_limit_per_minute": token.rate_limit_per_minute,
            "task_ids": sorted(token.tasks.values_list("pk", flat=True)) if token.pk else []}


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, name: str, created_by: AbstractBaseUser, expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None, tasks: Iterable[Task] = (),
) -> tuple[ApiToken, str]:
    """Create a token for a user; return it with its raw value, which is never stored or shown again."""
    if not created_by.has_perm("evaluation.manage_api_tokens"):
        raise PermissionDenied("Only Admins create API tokens.")
    if not user.is_active:
        raise ValidationError({"user": "Tokens are only issued to active users."})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must lie in the future."})
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValidationError({"rate_limit_per_minute": "Allow at least one request a minute."})
    token = ApiToken(
        user=user, name=name.strip(), token_hash=ApiToken.hash_token(raw), prefix=raw[:12], created_by=created_by,
        expires_at=expires_at, rate_limit_per_minute=rate_limit_per_minute,
    )
    token.full_clean()
    token.save()
    token.tasks.set(list(tasks))
    ledger_append(event="api_token.created", actor=created_by, obj=token, facts=_token_facts(token),
                  reason=f"Token {token.name!r} for {user.get_username()}")
    return token, raw


def api_token_signed_content(token: ApiToken) -> str:
    """Return the SHA-256 a revocation of this token is signed over."""
    return api_token_content_sha256(
        token_id=token.pk, prefix=token.prefix, name=token.name, username=token.user.get_username()
    )


@transaction.atomic
def api_token_revoke(*, token: ApiToken, user: AbstractBaseUser, signature: Signature | None = None) -> ApiToken:
    """Revoke a token from now on, signed by the Admin (meaning "Token revoked"); a revoked token stays revoked."""
    if not user.has_perm("evaluation.manage_api_tokens"):
        raise PermissionDenied("Only Admins revoke API tokens.")
    token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
    if token.revoked_at is not None:
        raise ValidationError(f"This token was already revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC.")
    signature_check(
        signature, user=user, meanings=Meaning.TOKEN_REVOKED, content_sha256=api_token_signed_content(token)
    )
    token.revoked_at = timezone.now()
    token.revoked_signature = signature
    token.save(update_fields=["revoked_at", "revoked_signature"])
    ledger_append(event="api_token.revoked", actor=user, obj=token, facts=_token_facts(token),
                  reason=f"Revoked token {token.name!r}")
    return token


@transaction.atomic
def api_tokens_revoke_for_leaver(*, user: AbstractBaseUser, by: AbstractBaseUser | None, reason: str) -> int:
    """Revoke every active token of a user being offboarded, each on the ledger; return how many.

    Connected to ``pldreview.accounts.services.user_offboarded``: the offboarding is the Admin's (or the identity
    provider's) act, recorded there, so no signature here. A token of an inactive owner is refused anyway; revoking
    it keeps it dead if the account is ever activated again.
    """
    tokens = list(ApiToken.objects.select_for_update().filter(user_id=user.pk, revoked_at__isnull=True))
    now = timezone.now()
    for token in tokens:
        token.revoked_at = now
        token.save(update_fields=["revoked_at"])
        ledger_append(event="api_token.revoked", actor=by, obj=token, facts=_token_facts(token),
                      reason=f"Owner {user.get_username()} offboarded: {reason}"[:500])
    return len(tokens)


def _revoke_on_offboard(sender: object, *, user: AbstractBaseUser, by: AbstractBaseUser | None, reason: str,
                        **kwargs: object) -> int:
    return api_tokens_revoke_for_leaver(user=user, by=by, reason=reason)


def api_token_authenticate(authorization: str) -> ApiToken:
    """Return the active token named by an ``Authorization: Bearer …`` header, or raise TokenError."""
    scheme, _, raw = (authorization or "").strip().partition(" ")
    if not authorization:
        raise TokenError("Missing token: send 'Authorization: Bearer <token>'.", status=401)
    if scheme.lower() != "bearer" or not raw.strip():
        raise TokenError("Malformed Authorization header: send 'Authorization: Bearer <token>'.", status=401)
    token = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash_token(raw.strip())).first()
    if token is None or not token.user.is_active:
        raise TokenError("Unknown token.", status=401)
    if token.revoked_at is not None:
        raise TokenError(
            f"This token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC.", status=403, code="token_revoked"
        )
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError(f"This token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC.", status=403,
                         code="token_expired")
    # A token acts for its owner: when the owner loses every role, the token stops with it.
    if not token.user.has_perm(OWNER_PERMISSION):
        raise TokenError("The token's owner no longer holds a role that may use the API.", status=403,
                         code="token_owner_not_permitted")
    # At most one write a minute per token: a busy integrator should not queue on SQLite's write lock.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        token.last_used_at = now
        token.save(update_fields=["last_used_at"])
    return token


def api_token_check_scope(*, token: ApiToken, task: Task) -> None:
    """Raise TokenError (403 token_out_of_scope) unless the token may classify for the task."""
    scope = [pk for pk in token.tasks.values_list("pk", flat=True)]
    if scope and task.pk not in scope:
        raise TokenError(f"This token may not classify for task {task.name}.", status=403, code="token_out_of_scope")


def api_token_rate_check(*, token: ApiToken, now: datetime | None = None) -> None:
    """Count one request in the token's current minute; raise TokenError (429) when it is over its limit.

    The counter is one row per token and clock minute, bumped by a single atomic upsert
    (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so every gunicorn worker and thread sees the same count
    on SQLite (3.35+) and PostgreSQL alike.
    """
    now = now or timezone.now()
    window = now.replace(second=0, microsecond=0)
    table = connection.ops.quote_name(ApiTokenWindow._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (token_id, window_start, count) VALUES (%s, %s, 1) "
            f"ON CONFLICT (token_id, window_start) DO UPDATE SET count = {table}.count + 1 RETURNING count",
            [token.pk, connection.ops.adapt_datetimefield_value(window)],
        )
        (count,) = cursor.fetchone()
    if count == 1:
        # A new minute: the token's older counters are no longer needed.
        ApiTokenWindow.objects.filter(token=token, window_start__lt=window).delete()
    if count > token.rate_limit:
        raise api_token_rate_limited(token=token, now=now)


def api_token_rate_limited(*, token: ApiToken, now: datetime) -> TokenError:
    """Return the 429 for a token over its limit at ``now``: Retry-After is the rest of its clock minute."""
    window = now.replace(second=0, microsecond=0)
    retry_after = max(1, math.ceil(60 - (now - window).total_seconds()))
    return TokenError(
        f"This token may make {token.rate_limit} requests a minute; try again in {retry_after} s.",
        status=429, code="rate_limited", retry_after=retry_after,
    )
