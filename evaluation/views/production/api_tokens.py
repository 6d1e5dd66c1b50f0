"""API token pages for Admins: list, create (the raw token is shown once), revoke."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation.forms import RevokeForm, TokenForm
from evaluation.models import ApiToken
from evaluation.production.api_tokens import api_token_create, api_token_revoke, api_token_signed_content
from pldreview.signatures import Meaning, e_signing, signature_sign_from_form, signing_context
from pldreview.web import form_submit


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
@permission_required("evaluation.manage_api_tokens", raise_exception=True)
def api_token_list(request: HttpRequest) -> HttpResponse:
    """List every API token (never its value) with the form to create one."""
    return _page(request, form=TokenForm(initial={"user": request.user.pk}))


@require_POST
@permission_required("evaluation.manage_api_tokens", raise_exception=True)
def create_api_token(request: HttpRequest) -> HttpResponse:
    """Create a token and show its raw value this once."""
    form = TokenForm(request.POST)
    created = form_submit(form, lambda data: api_token_create(created_by=request.user, **data))
    if created is None:
        return _page(request, form=form, status=400)
    token, raw = created
    response = _page(request, form=TokenForm(initial={"user": request.user.pk}), raw_token=raw, created=token)
    # The raw token is on this page only: keep it out of caches and the browser's history.
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
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
        with e_signing():
            signature = signature_sign_from_form(
                request, data, meaning=Meaning.TOKEN_REVOKED, content_sha256=api_token_signed_content(token)
            )
            token = api_token_revoke(token=token, user=request.user, signature=signature)
    except ValidationError as exc:
        page |= {"form": form, "revoke_error": " ".join(exc.messages)}
        return render(request, "evaluation/api_token_revoke.html", page, status=400)
    messages.success(request, f"Revoked token {token.prefix}… ({token.name}).")
    return redirect(reverse("pld-api-token-list"))
