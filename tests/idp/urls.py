"""The provider's pages: OAuth 2 / OIDC endpoints, a login page, and the tests' fixture door."""
from __future__ import annotations

import json

from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.models import get_application_model


@csrf_exempt
@require_POST
def fixture_user(request: HttpRequest) -> JsonResponse:
    """Create or change a user as a test asks (loopback only; a test provider's back door, not a feature)."""
    data = json.loads(request.body)
    user, _ = User.objects.get_or_create(username=data["username"])
    user.set_password(data.get("password", f"idp-{data['username']}"))
    user.email = data.get("email", "")
    user.first_name = data.get("first_name", "")
    user.last_name = data.get("last_name", "")
    user.is_active = data.get("is_active", True)
    user.save()
    groups = list(data.get("groups", []))
    if data.get("email_verified", True) is False:
        groups.append("email-unverified")
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    return JsonResponse({"sub": str(user.pk)})


@csrf_exempt
@require_POST
def fixture_redirect(request: HttpRequest) -> JsonResponse:
    """Allow one more redirect URI for the registered client (the live server's port is known late)."""
    uri = json.loads(request.body)["uri"]
    app = get_application_model().objects.get()
    uris = app.redirect_uris.split()
    if uri not in uris:
        app.redirect_uris = " ".join([*uris, uri])
        app.save()
    return JsonResponse({"redirect_uris": app.redirect_uris})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("fixture/user/", fixture_user),
    path("fixture/redirect/", fixture_redirect),
]
