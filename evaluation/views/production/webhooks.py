"""Webhook pages: a token's owner (or an Admin) registers URLs, sees the secret once, and every delivery attempt."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from evaluation.forms import WebhookForm
from evaluation.models import ApiToken, Webhook, WebhookAttempt, WebhookDelivery
from evaluation.production.api_tokens import OWNER_PERMISSION
from evaluation.production.webhooks import webhook_create, webhook_disable, webhook_may_manage
from pldreview.web import form_submit

DELIVERIES_SHOWN = 50


def _tokens_for_user(request: HttpRequest) -> QuerySet[ApiToken]:
    # Admins see every token's webhooks; anyone else only their own tokens'. Another's token is a 404.
    tokens = ApiToken.objects.select_related("user")
    if request.user.has_perm("evaluation.manage_api_tokens"):
        return tokens
    return tokens.filter(user=request.user)


def _token_or_404(request: HttpRequest, token_id: int) -> ApiToken:
    return get_object_or_404(_tokens_for_user(request), pk=token_id)


@require_GET
@permission_required(OWNER_PERMISSION, raise_exception=True)  # any role: a token acts for its owner
def webhook_list(request: HttpRequest) -> HttpResponse:
    """List the API tokens whose webhooks the user may manage, with their webhooks."""
    tokens = _tokens_for_user(request).prefetch_related("webhooks").order_by("-created_at", "-id")
    return render(request, "evaluation/webhook_list.html", {"tokens": tokens})


def _token_page(request: HttpRequest, token: ApiToken, *, form: WebhookForm | None = None, secret: str = "",
                created: Webhook | None = None, status: int = 200) -> HttpResponse:
    deliveries = (
        WebhookDelivery.objects.filter(webhook__token=token).select_related("webhook")
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number")))
        .order_by("-created_at", "-id")[:DELIVERIES_SHOWN]
    )
    response = render(request, "evaluation/token_webhooks.html", {
        "token": token, "webhooks": token.webhooks.select_related("created_by", "disabled_by"),
        "deliveries": deliveries, "form": form or WebhookForm(), "secret": secret, "created": created,
    }, status=status)
    if secret:
        # The secret is on this page only: keep it out of caches and the browser's history.
        response["Cache-Control"] = "no-store"
    return response


@require_GET
@permission_required(OWNER_PERMISSION, raise_exception=True)  # any role: a token acts for its owner
def token_webhooks(request: HttpRequest, token_id: int) -> HttpResponse:
    """Show a token's webhooks, the form to add one, and each delivery with its attempts."""
    return _token_page(request, _token_or_404(request, token_id))


@require_POST
@permission_required(OWNER_PERMISSION, raise_exception=True)  # any role: a token acts for its owner
def create_webhook(request: HttpRequest, token_id: int) -> HttpResponse:
    """Register a webhook URL for the token; its signing secret is shown this once."""
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=token_id)
    if not webhook_may_manage(user=request.user, token=token):
        raise PermissionDenied("Only the token's owner or an Admin registers its webhooks.")
    form = WebhookForm(request.POST)
    created = form_submit(form, lambda data: webhook_create(token=token, url=data["url"], user=request.user))
    if created is None:
        return _token_page(request, token, form=form, status=400)
    webhook, secret = created
    return _token_page(request, token, secret=secret, created=webhook)


@require_POST
@permission_required(OWNER_PERMISSION, raise_exception=True)  # any role: a token acts for its owner
def disable_webhook(request: HttpRequest, webhook_id: int) -> HttpResponse:
    """Stop sending events to a webhook; its deliveries stay on record."""
    webhook = get_object_or_404(Webhook.objects.select_related("token"), pk=webhook_id)
    if not webhook_may_manage(user=request.user, token=webhook.token):
        raise PermissionDenied("Only the token's owner or an Admin disables its webhooks.")
    webhook_disable(webhook=webhook, user=request.user)
    messages.success(request, f"Webhook {webhook.url} disabled: no more events are sent to it.")
    return redirect("pld-token-webhooks", webhook.token_id)
