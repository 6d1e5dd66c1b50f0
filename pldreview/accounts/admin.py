"""No side door through Django admin: accounts, roles, second factors and lockouts change only through the services.

Django admin is mounted only with ``PLD_DJANGO_ADMIN`` (pldreview/urls.py); its login is the app's own login —
password and second factor, with the delays after failures — and the account gate applies to its pages too.
"""
from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.usersessions.models import UserSession
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import Group, User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

for model in (User, Group, EmailAddress, Authenticator, UserSession, AccessAttempt, AccessFailureLog, AccessLog):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@login_not_required  # the way in for a visitor who is not logged in yet
def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """Send Django admin's login to the app's login (with the second factor); a logged-in non-staff user gets 403."""
    if request.user.is_authenticated:
        # Django admin sends a logged-in user who is not staff here; the app's login would send them back.
        raise PermissionDenied("Django admin is for staff accounts.")
    target = request.GET.get(REDIRECT_FIELD_NAME, "")
    hosts = {request.get_host()}
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts=hosts, require_https=request.is_secure())
    if not safe:
        target = reverse("admin:index")
    return redirect_to_login(target, settings.LOGIN_URL)


# Django admin's own login form authenticates a password and logs in: the side door around the second factor.
admin.site.login = admin_login  # type: ignore[method-assign]
