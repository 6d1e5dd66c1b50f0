"""Single sign-on through an OpenID Connect identity provider (django-allauth's ``openid_connect`` provider).

Who may sign in: a person whose identity provider says they belong to a group that ``PLD_SSO_GROUP_ROLES`` maps
to a role. Their roles here are those of the mapping, set again at every sign-in (``sso_roles_sync``), except
that the identity provider never makes anyone an Admin: Admin stays a two-person decision here
(``pldreview.accounts.services``), and the mapping can only keep it or take it away. A person without an account
gets one only when ``PLD_SSO_AUTO_CREATE`` is on; an identity provider's account is never joined to a local one.

Signing: an SSO account has no password here, so each signing re-authenticates at the identity provider
(OpenID Connect: ``prompt=login`` and ``max_age=0``; SAML: ``ForceAuthn``) and the returned ID token's
``auth_time`` (SAML: the assertion's ``AuthnInstant``) must be after the request left
(``signing_reauth_complete``); the signature then records ``oidc`` or ``saml`` as its method.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.models import SocialAccount, SocialLogin
from allauth.socialaccount.providers.base import AuthProcess
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme

from pldreview.accounts.lockout import client_address
from pldreview.accounts.models import AccountState
from pldreview.accounts.saml import AUTHN_INSTANT
from pldreview.accounts.services import role_grant, role_revoke, roles_refusal, user_offboard
from pldreview.ledger import ledger_append
from pldreview.roles import ADMIN, ROLES, role_names
from pldreview.signatures import AuthMethod, signing_proof_record

# Asked of the identity provider for a signing: show the login again, whatever session it holds.
SIGNING_REAUTH_PARAMS = {"prompt": "login", "max_age": "0"}
# How far the identity provider's clock may be behind ours when its auth_time is compared with our request's time.
CLOCK_SKEW_SECONDS = 60
_REASON = "identity provider group mapping (PLD_SSO_GROUP_ROLES)"


def sso_claims(sociallogin: SocialLogin) -> dict[str, Any]:
    """Return what the identity provider said about the person, as OpenID Connect claims.

    OpenID Connect: the ID token's claims, then userinfo's over them. SAML: the assertion's attributes, one value
    each except the groups attribute (PLD_SSO_GROUPS_CLAIM), with ``uid`` as the username.
    """
    data = sociallogin.account.extra_data or {}
    if sociallogin.account.get_provider().id == "saml":
        claims = {name: values if name == settings.PLD_SSO_GROUPS_CLAIM else (values[0] if values else "")
                  for name, values in data.items()}
        claims.setdefault("preferred_username", claims.get("uid", ""))
        return claims
    return {**(data.get("id_token") or {}), **(data.get("userinfo") or {})}


def sso_mapped_roles(claims: dict[str, Any]) -> set[str]:
    """Return the roles the person's groups map to (PLD_SSO_GROUP_ROLES), empty when none does."""
    groups = claims.get(settings.PLD_SSO_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    return {settings.PLD_SSO_GROUP_ROLES[g] for g in groups if g in settings.PLD_SSO_GROUP_ROLES}


def _facts(request: HttpRequest, sociallogin: SocialLogin, claims: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": sociallogin.account.provider, "subject": str(sociallogin.account.uid),
        "idp_username": str(claims.get("preferred_username", "")),
        "groups": sorted(str(g) for g in (claims.get(settings.PLD_SSO_GROUPS_CLAIM) or [])),
        "ip_address": client_address(request),
    }


def sso_refuse(*, request: HttpRequest, sociallogin: SocialLogin, claims: dict[str, Any], reason: str) -> NoReturn:
    """Refuse this sign-in: record it, offboard the account (if it has one) and show why.

    A person the identity provider refuses is a leaver here: the account is deactivated, whatever session they
    still hold ends and their API tokens are revoked with the refusal (``user_offboard``), not at a timeout.
    """
    user = sociallogin.user if sociallogin.is_existing else None
    with transaction.atomic():
        counts = {"sessions_ended": 0, "api_tokens_revoked": 0}
        if user is not None:
            counts = user_offboard(user=user, reason=f"Refused by the identity provider: {reason}", by=None,
                                   source="sso")
        ledger_append(event="security.sso_refused", actor=None, obj=user,
                      facts=_facts(request, sociallogin, claims) | counts, reason=reason)
    response = render(request, "accounts/sso_refused.html", {"reason": reason}, status=403)
    raise ImmediateHttpResponse(response)


@transaction.atomic
def sso_roles_sync(*, user: User, mapped: set[str]) -> list[str]:
    """Make the account's roles those the mapping gives, never adding Admin; return the roles withheld.

    Admin from the identity provider is withheld unless the account already holds it (granted here by two
    Admins): an identity-provider group is one person's decision somewhere else, and Admin is never one
    person's decision. Taking a role away needs no second person.
    """
    held = set(role_names(user))
    withheld = sorted((mapped & {ADMIN}) - held)
    target = (mapped - {ADMIN}) | (mapped & held & {ADMIN})
    for role in sorted(held - target, key=ROLES.index):
        role_revoke(actor=None, user=user, role=role, reason=_REASON)
    gained = sorted(target - held, key=ROLES.index)
    for role in gained:
        role_grant(actor=None, user=user, role=role, reason=_REASON)
    if gained:
        # A new role starts the cooldown (PLD_PRIVILEGE_COOLDOWN_HOURS), as one granted by two Admins does.
        state, _ = AccountState.objects.get_or_create(user=user)
        state.privileged_at = timezone.now()
        state.full_clean()
        state.save()
    if withheld:
        ledger_append(event="security.sso_role_withheld", actor=None, obj=user,
                      facts={"username": user.get_username(), "roles": withheld},
                      reason="Admin is granted here by two Admins, never by an identity-provider group")
    return withheld


def sso_sign_in_check(*, request: HttpRequest, sociallogin: SocialLogin) -> None:
    """Refuse a sign-in the mapping, the account or PLD_SSO_AUTO_CREATE does not allow; else set the roles."""
    claims = sso_claims(sociallogin)
    mapped = sso_mapped_roles(claims)
    if not mapped:
        sso_refuse(request=request, sociallogin=sociallogin, claims=claims,
                   reason="None of your groups at the identity provider gives a role here.")
    if not sociallogin.is_existing and not settings.PLD_SSO_AUTO_CREATE:
        sso_refuse(request=request, sociallogin=sociallogin, claims=claims,
                   reason="You have no account here, and accounts are not created at sign-in (PLD_SSO_AUTO_CREATE).")
    incompatible = roles_refusal(mapped)
    if incompatible:
        sso_refuse(request=request, sociallogin=sociallogin, claims=claims, reason=incompatible)
    if sociallogin.is_existing:
        if not sociallogin.user.is_active:
            sso_refuse(request=request, sociallogin=sociallogin, claims=claims,
                       reason="Your account here is deactivated.")
        sso_roles_sync(user=sociallogin.user, mapped=mapped)
    else:
        # No address from the identity provider is ever an allauth e-mail address here: those could later link
        # or log in an account by e-mail. The account keeps it as plain profile data.
        sociallogin.email_addresses = []
        sociallogin.state["pld_roles"] = sorted(mapped)


def sso_account_created(*, request: HttpRequest, sociallogin: SocialLogin) -> None:
    """Record an account created at first sign-in and give it the mapped roles."""
    user = sociallogin.user
    ledger_append(event="security.sso_account_created", actor=None, obj=user,
                  facts=_facts(request, sociallogin, sso_claims(sociallogin)) | {"username": user.get_username()},
                  reason="first sign-in through the identity provider (PLD_SSO_AUTO_CREATE)")
    sso_roles_sync(user=user, mapped=set(sociallogin.state.get("pld_roles", [])))


# --- signing by re-authentication at the identity provider ---------------------------------------------


def signing_reauth_redirect(request: HttpRequest, *, next_url: str) -> HttpResponse:
    """Send the signer to their identity provider to log in again; they come back to ``next_url`` to sign.

    OpenID Connect: ``prompt=login`` and ``max_age=0``. SAML: an AuthnRequest with ``ForceAuthn="true"``.
    """
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    account = SocialAccount.objects.filter(user_id=request.user.pk).order_by("pk").first()
    provider = account.get_provider(request) if account is not None else None
    if provider is None:
        raise PermissionDenied("This account does not sign in through an identity provider.")
    data = {"pld_signing_reauth": {"user": request.user.pk, "at": timezone.now().timestamp()}}
    if provider.id == "saml":
        from allauth.socialaccount.providers.saml.utils import build_auth

        auth = build_auth(request, provider)
        url = auth.login(return_to="", force_authn=True)
        # The response must answer this very request (allauth matches InResponseTo to the stashed state).
        provider.stash_redirect_state(request, AuthProcess.REDIRECT, next_url, data,
                                      state_id=auth.get_last_request_id())
        return HttpResponseRedirect(url)
    return provider.redirect(request, process=AuthProcess.REDIRECT, next_url=next_url, data=data,
                             auth_params=dict(SIGNING_REAUTH_PARAMS))


def _authenticated_at(sociallogin: SocialLogin) -> float | None:
    # OpenID Connect: the ID token's auth_time. SAML: the assertion's AuthnInstant (pldreview.accounts.saml).
    extra = sociallogin.account.extra_data or {}
    if sociallogin.account.get_provider().id == "saml":
        instant = parse_datetime((extra.get(AUTHN_INSTANT) or [""])[0])
        return instant.timestamp() if instant is not None else None
    auth_time = (extra.get("id_token") or {}).get("auth_time")
    return float(auth_time) if isinstance(auth_time, int | float) else None


def signing_reauth_complete(*, request: HttpRequest, sociallogin: SocialLogin) -> None:
    """Accept a re-authentication for signing only from the same person, logged in after the request left.

    Either way the person goes back to the page they came from; a refusal is recorded and leaves no proof.
    """
    started = (sociallogin.state.get("data") or {}).get("pld_signing_reauth") or {}
    claims = sso_claims(sociallogin)
    auth_time = _authenticated_at(sociallogin)
    method = AuthMethod.SAML if sociallogin.account.get_provider().id == "saml" else AuthMethod.OIDC
    user = request.user
    problem = ""
    if not user.is_authenticated or started.get("user") != user.pk:
        problem = "not the session's user"
    elif not sociallogin.is_existing or sociallogin.user.pk != user.pk:
        problem = "another person logged in at the identity provider"
    elif auth_time is None:
        problem = "the identity provider did not say when the person authenticated"
    elif auth_time < started.get("at", 0) - CLOCK_SKEW_SECONDS:
        problem = "the identity provider did not ask for the login again (auth_time before the request)"
    elif not sso_mapped_roles(claims):
        problem = "none of the person's groups maps to a role any more"
    next_url = sociallogin.state.get("next") or "/"
    if problem:
        ledger_append(
            event="security.signature_failed", actor=user if user.is_authenticated else None,
            obj=user if user.is_authenticated else None,
            facts=_facts(request, sociallogin, claims) | {
                "method": method, "problem": problem,
                "auth_time": datetime.fromtimestamp(auth_time, UTC).isoformat() if auth_time is not None else None,
            },
            reason=problem,
        )
        messages.error(request, "Your identity was not confirmed for signing: log in at the identity provider "
                                "as yourself when it asks. Nothing was signed.")
    else:
        signing_proof_record(request, user=user, method=method)
        messages.success(request, "Identity confirmed at the identity provider: you can sign now.")
    raise ImmediateHttpResponse(HttpResponseRedirect(next_url))
