"""Session limits, the gate that sends a user to MFA enrolment or a password change, and request size limits."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

from pldreview.accounts.handlers import (
    AUTHENTICATED_AT,
    LAST_SEEN,
    LOGIN_FACTORS,
    MFA_OK,
    PASSWORD_OK,
    factor_required,
)
from pldreview.accounts.services import user_must_change_password

# A background poll (hx-trigger="every …" or "load") adds ?poll=1 to its URL: it asks for fresh figures but is no
# sign that a person is there, so it never extends the idle timeout. A query parameter rather than a header because
# htmx hands an element's hx-headers down to every form and button inside it, which the person does click.
POLL_PARAM = "poll"

# Pages a user who still has to enrol a second factor or change a password may reach.
_GATE_OPEN_PREFIXES = ("/accounts/", "/logout/", "/login/", "/static/")


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    # An htmx request would swap the login page into a fragment; send the whole browser there instead.
    return HttpResponseClientRedirect(url) if getattr(request, "htmx", False) else HttpResponseRedirect(url)


def is_background_poll(request: HttpRequest) -> bool:
    """Return whether the request is a page's background poll (``?poll=1``), not something a person did."""
    return request.method == "GET" and request.GET.get(POLL_PARAM) == "1"


class SessionLimitsMiddleware:
    """Log out a session idle for PLD_SESSION_IDLE_MINUTES or older than PLD_SESSION_MAX_HOURS.

    Idle means without a request the person made: a page load, a form post, an htmx action. Background polls
    (``is_background_poll``) are answered, and end an idle session, but never count as presence.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = timezone.now().timestamp()
            # A session from before these limits (or force_login in tests) starts its clocks now.
            started = request.session.setdefault(AUTHENTICATED_AT, now)
            last_seen = request.session.get(LAST_SEEN, now)
            idle = now - last_seen > settings.PLD_SESSION_IDLE_MINUTES * 60
            too_old = now - started > settings.PLD_SESSION_MAX_HOURS * 3600
            if idle or too_old:
                logout(request)
                reason = "you were inactive too long" if idle else "sessions last at most a working day"
                messages.info(request, f"You have been logged out: {reason}. Log in again.")
                return _redirect(request, f"{reverse(settings.LOGIN_URL)}?next={request.path}")
            # Written at most once a minute: a session write per page would cost a query for nothing.
            if is_background_poll(request):
                pass
            elif now - last_seen >= 60 or LAST_SEEN not in request.session:
                request.session[LAST_SEEN] = now
        return self.get_response(request)


class AccountGateMiddleware:
    """Send a user who must enrol a second factor or change their password there, and nowhere else.

    A session whose login did not verify the account's second factor is ended (``handlers.MFA_OK``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not request.path.startswith(_GATE_OPEN_PREFIXES):
            # Both checks are made at login and remembered in the session once passed: whatever could undo them
            # (a forced reset, an MFA reset) ends the user's sessions, so a pass holds for the session's life.
            if request.session.get(PASSWORD_OK, True) is False:
                if user_must_change_password(user):
                    messages.info(request, "Choose a new password before you continue.")
                    return _redirect(request, reverse("account_change_password"))
                request.session[PASSWORD_OK] = True
            if request.session.get(MFA_OK) != user.pk:
                refused = self._second_factor_gate(request, user)
                if refused is not None:
                    return refused
        return self.get_response(request)

    def _second_factor_gate(self, request: HttpRequest, user: Any) -> HttpResponse | None:
        factor = Authenticator.objects.filter(user=user, type__in=LOGIN_FACTORS).order_by("created_at").first()
        if factor is None:
            if factor_required(user):
                messages.info(request, "Set up your authenticator app first: a second factor is required.")
                return _redirect(request, reverse("mfa_activate_totp"))
        elif factor.created_at.timestamp() < request.session.get(AUTHENTICATED_AT, 0):
            # The account has a factor this login did not verify: a password posted at some other door
            # (Django admin's login did this). Out, and in again through the login that asks for the code.
            logout(request)
            messages.info(request, "Log in with your password and your authenticator code.")
            return _redirect(request, f"{reverse(settings.LOGIN_URL)}?next={request.path}")
        # No factor and none needed, or a factor enrolled in this very session (its code was just checked).
        request.session[MFA_OK] = user.pk
        return None


def _body_limit(request: HttpRequest) -> int:
    if request.path_info.startswith("/api/"):
        return settings.PLD_API_MAX_BODY_BYTES
    try:
        name = resolve(request.path_info).url_name
    except Resolver404:
        name = None
    return settings.PLD_UPLOAD_MAX_BYTES if name in settings.PLD_UPLOAD_URL_NAMES else settings.PLD_REQUEST_MAX_BYTES


def _too_large(request: HttpRequest, *, status: int, message: str, code: str, limit: int) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        return JsonResponse({"error": message, "code": code}, status=status)
    # Rendered before the session, the user or CSRF exist: the template needs none of them.
    return render(request, "accounts/request_too_large.html",
                  {"limit_mb": limit / 1_000_000, "status": status, "message": message}, status=status)


class RequestSizeMiddleware:
    """Refuse a body over its limit before anything reads it: PLD_REQUEST_MAX_BYTES, PLD_UPLOAD_MAX_BYTES on the
    file-upload pages, PLD_API_MAX_BODY_BYTES under /api/ (JSON there); a body of unstated length is refused too.

    It sits before every middleware that may read the body (CSRF reads a form's body to find its token), so a
    client that declares 60 MB is answered at once instead of being read, however slowly it sends.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = _body_limit(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _too_large(request, status=400, code="bad_request", limit=limit,
                              message="The Content-Length header is not a number.")
        if length < 0:
            return _too_large(request, status=400, code="bad_request", limit=limit,
                              message="The Content-Length header is negative.")
        # A chunked body has no Content-Length. Django under WSGI reads only Content-Length bytes, so it would
        # take such a body as empty, and a server that passed it on whole would bypass the limit: say so instead.
        if not request.META.get("CONTENT_LENGTH") and request.META.get("HTTP_TRANSFER_ENCODING"):
            return _too_large(request, status=411, code="length_required", limit=limit,
                              message="Send the body with a Content-Length header (chunked bodies are refused).")
        if length > limit:
            return _too_large(request, status=413, code="too_large", limit=limit,
                              message=f"The body is {length} bytes; the limit is {limit}.")
        return self.get_response(request)
