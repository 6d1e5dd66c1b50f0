"""API token pages for Admins: list, create (the raw token is shown once), revoke."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation.api_tokens import api_token_create, api_token_revoke, api_token_signed_content
from evaluation.models import ApiToken
from pldreview.forms import SigningForm
from pldreview.signatures import Meaning, signature_sign_from_form, signing, signing_context
from pldreview.web import form_add_service_errors
from rules.models import Task


class TokenForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"), label="For user",
        help_text="Requests made with the token act for this user.",
    )
    name = forms.CharField(max_length=100, label="Name", help_text="What uses it, e.g. contract-intake service")
    expires_at = forms.DateTimeField(
        required=False, label="Expires", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Refused from then on (UTC); empty = never.",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False, min_value=1, label="Requests per minute",
        help_text=f"Empty = the default, {settings.PLD_API_DEFAULT_RATE_LIMIT}.",
    )
    tasks = forms.ModelMultipleChoiceField(
        queryset=Task.objects.order_by("name"), required=False, label="Tasks",
        help_text="The tasks it may classify; none chosen = every task.",
    )


class RevokeForm(SigningForm):
    reason = forms.CharField(required=False, max_length=2000, label="Why revoke it? (optional)")


def _page(request: HttpRequest, *, form: TokenForm, raw_token: str = "", created: ApiToken | None = None,
          status: int = 200) -> HttpResponse:
    tokens = (
        ApiToken.objects.select_related("user", "created_by", "revoked_signature").prefetch_related("tasks")
        .order_by("-created_at", "-id")
    )
    return render(request, "evaluation/api_token_list.html", {
        "tokens": list(tokens), "form": form, "raw_token": raw_token, "created": created, "now": timezone.now(),
        **signing_context(request),
    }, status=status)


@require_GET
@login_required
@permission_required("evaluation.manage_api_tokens", raise_exception=True)
def api_token_list(request: HttpRequest) -> HttpResponse:
    """List every API token (never its value) with the form to create one."""
    return _page(request, form=TokenForm(initial={"user": request.user.pk}))


@require_POST
@login_required
@permission_required("evaluation.manage_api_tokens", raise_exception=True)
def create_api_token(request: HttpRequest) -> HttpResponse:
    """Create a token and show its raw value this once."""
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    try:
        token, raw = api_token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"], created_by=request.user,
            expires_at=form.cleaned_data["expires_at"], tasks=form.cleaned_data["tasks"],
            rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
        )
    except ValidationError as exc:
        form_add_service_errors(form, exc)
        return _page(request, form=form, status=400)
    response = _page(request, form=TokenForm(initial={"user": request.user.pk}), raw_token=raw, created=token)
    # The raw token is on this page only: keep it out of caches and the browser's history.
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("evaluation.manage_api_tokens", raise_exception=True)
def revoke_api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    """Ask to confirm, then revoke a token signed with the Admin's password: requests with it get 403 from now on."""
    token = get_object_or_404(ApiToken.objects.select_related("user", "created_by"), pk=token_id)
    page = {"token": token} | signing_context(request)
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        # A plain POST (an old form, a script) does not revoke: revoking needs the confirmation page's button.
        return render(request, "evaluation/api_token_revoke.html", page | {"form": RevokeForm()})
    form = RevokeForm(request.POST)
    form.is_valid()
    data = form.cleaned_data
    try:
        with signing():
            signature = signature_sign_from_form(
                request, data, meaning=Meaning.TOKEN_REVOKED, content_sha256=api_token_signed_content(token)
            )
            token = api_token_revoke(token=token, user=request.user, signature=signature)
    except ValidationError as exc:
        page |= {"form": form, "revoke_error": " ".join(exc.messages)}
        return render(request, "evaluation/api_token_revoke.html", page, status=400)
    messages.success(request, f"Revoked token {token.prefix}… ({token.name}).")
    return redirect(reverse("pld-api-token-list"))


urlpatterns = [
    path("api-tokens/", api_token_list, name="pld-api-token-list"),
    path("api-tokens/new/", create_api_token, name="pld-api-token-create"),
    path("api-tokens/<int:token_id>/revoke/", revoke_api_token, name="pld-api-token-revoke"),
]
