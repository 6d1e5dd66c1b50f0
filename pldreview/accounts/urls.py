"""Account pages: the Admin's users and roles, the Auditor's security events, and django-allauth's pages."""
from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest
from django.urls import include, path, re_path

from pldreview.accounts import views


@login_not_required  # a visitor who clicks "forgot password" is not logged in
def _not_offered(request: HttpRequest, *args: object, **kwargs: object) -> None:
    # No e-mail in this deployment: an Admin creates accounts and forces password resets.
    raise Http404("Not offered: ask an Admin")


urlpatterns = [
    path("users/", views.user_list, name="pld-user-list"),
    path("users/new/", views.create_user, name="pld-user-create"),
    path("users/<int:user_id>/", views.user_detail, name="pld-user-detail"),
    path("users/<int:user_id>/change/", views.change_user, name="pld-user-change"),
    path("users/changes/<int:change_id>/confirm/", views.confirm_change, name="pld-account-change-confirm"),
    path("users/changes/<int:change_id>/withdraw/", views.withdraw_change, name="pld-account-change-withdraw"),
    path("security-events/", views.security_events, name="pld-security-events"),
    # allauth's signup, e-mail, login-by-code and password-reset pages: every one of them needs e-mail.
    re_path(
        r"^accounts/(signup|email|confirm-email|password/reset|password/set|login/code|reauthenticate/code|phone)/",
        _not_offered,
    ),
    path("accounts/passkey/sign/", views.passkey_signing_start, name="pld-passkey-signing-start"),
    path("accounts/sso/confirm-to-sign/", views.signing_reauthenticate, name="pld-signing-reauthenticate"),
    # allauth's "connections" page would let a logged-in user attach another identity-provider account.
    re_path(r"^accounts/3rdparty/", _not_offered),
    path("accounts/", include("allauth.urls")),
    path("accounts/sessions/", include("allauth.usersessions.urls")),
]
