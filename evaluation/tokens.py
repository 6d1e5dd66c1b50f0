"""API tokens: created by Admins for a user, shown once, stored as a SHA-256, revocable."""
from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from evaluation.models import ApiToken
from pldreview.models import Signature
from pldreview.signatures import Meaning, api_token_content_sha256, signature_check

TOKEN_PREFIX = "pld_"
LAST_USED_RESOLUTION_SECONDS = 60


class TokenError(Exception):
    """A request's token is missing, unknown or revoked; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str, created_by: AbstractBaseUser) -> tuple[ApiToken, str]:
    """Create a token for a user; return it with its raw value, which is never stored or shown again."""
    if not created_by.has_perm("evaluation.manage_api_tokens"):
        raise PermissionDenied("Only Admins create API tokens.")
    if not user.is_active:
        raise ValidationError({"user": "Tokens are only issued to active users."})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user, name=name.strip(), token_hash=ApiToken.hash_token(raw), prefix=raw[:12], created_by=created_by
    )
    token.full_clean()
    token.save()
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
    return token


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
        raise TokenError(f"This token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC.", status=403)
    now = timezone.now()
    # At most one write a minute per token: a busy integrator should not queue on SQLite's write lock.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        token.last_used_at = now
        token.save(update_fields=["last_used_at"])
    return token
