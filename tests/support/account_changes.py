"""Account changes through the real services: one persona requests (a signing), another confirms (a signing)."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User

from pldreview.accounts.models import AccountChangeRequest
from pldreview.accounts.services import (
    AccountChangeResult,
    account_change_confirm,
    account_change_params,
    account_change_request,
)
from pldreview.signatures import Meaning, account_change_content_sha256
from tests.support.signatures import sign


def account_change_requested(
    requester: AbstractBaseUser, kind: str, *, target: User | None = None, reason: str = "needed for the work",
    **params: Any,
) -> AccountChangeRequest:
    """Return the requester's signed request of the change (``params``: role=, or username=, roles=… to create)."""
    canonical = account_change_params(kind=kind, **params)
    username = canonical["username"] if target is None else target.get_username()
    signature = sign(requester, Meaning.ACCOUNT_CHANGE_REQUESTED,
                     account_change_content_sha256(change=kind, username=username, params=canonical), reason=reason)
    return account_change_request(user=requester, kind=kind, target=target, reason=reason, params=canonical,
                                  signature=signature)


def account_change_confirmed(change: AccountChangeRequest, confirmer: AbstractBaseUser) -> AccountChangeResult:
    """Return the result of the confirmer's signed confirmation of the request."""
    signature = sign(confirmer, Meaning.ACCOUNT_CHANGE_CONFIRMED, change.content_sha256(), reason=change.reason)
    return account_change_confirm(change=change, user=confirmer, signature=signature)


def account_change_made(
    requester: AbstractBaseUser, confirmer: AbstractBaseUser, kind: str, *, target: User | None = None,
    reason: str = "needed for the work", **params: Any,
) -> AccountChangeResult:
    """Return the result of a change one persona requested and another confirmed."""
    change = account_change_requested(requester, kind, target=target, reason=reason, **params)
    return account_change_confirmed(change, confirmer)
