"""Hooks django-axes calls: which username an attempt names, and the page a locked-out attempt gets."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# The same words whether or not the account exists, so a lockout tells an attacker nothing.
LOCKED_MESSAGE = (
    "Too many failed logins for this username or from this address. Logins are refused for a while; "
    "try again later or ask an Admin to unlock."
)


def attempted_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """Return the username an attempt names: allauth passes ``username`` to authenticate, its form posts ``login``."""
    if credentials and credentials.get("username"):
        return str(credentials["username"])[:150]
    login = request.POST.get("login") if request is not None and request.method == "POST" else None
    return login[:150] if login else None


def lockout_response(
    request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """Render the login page with the lockout message and status 429."""
    return render(request, "accounts/locked_out.html", {"message": LOCKED_MESSAGE}, status=429)
