"""Webhooks: an API token's URL hears of overridden decisions and stopped or resumed tasks.

Each event becomes one ``WebhookDelivery`` per listening webhook, its body the canonical JSON of
``{"id", "type", "created", "task", "data"}``. A django-tasks task (``webhook_deliver``, run by
``manage.py db_worker`` like every job) POSTs it with the header
``PLD-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` and retries a failure with
exponential backoff (PLD_WEBHOOK_BACKOFF_SECONDS, doubled each time, PLD_WEBHOOK_MAX_ATTEMPTS in all).
Every attempt is stored (``WebhookAttempt``, append-only): time, duration, status code or error.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tasks import task

from evaluation.models import WEBHOOK_EVENTS, ApiToken, Webhook, WebhookAttempt, WebhookDelivery
from pldreview.ledger import canonical_json, ledger_append
from rules.membership import task_is_visible
from rules.models import Task

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "PLD-Signature"
# A receiver should refuse a signature older than this (docs/production.md): it stops a captured body replayed later.
TOLERANCE_SECONDS = 300
LOOPBACK_NAMES = {"localhost"}
# What a failed attempt's stored error keeps of the receiver's answer or the exception.
ERROR_MAX_CHARS = 500


def webhook_may_manage(*, user: AbstractBaseUser, token: ApiToken) -> bool:
    """Say whether the user may register or disable webhooks of the token: its owner, or an Admin."""
    return bool(user.is_authenticated and (token.user_id == user.pk or user.has_perm("evaluation.manage_api_tokens")))


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal_address(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: resolved by webhook_url_check and again before each delivery connects


class WebhookAddressRefused(OSError):
    """The webhook's host resolves to an address no webhook is sent to (private, loopback, link-local…)."""


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _internal_address(answers: list[tuple[Any, ...]], *, loopback_allowed: bool) -> str | None:
    """Return the first of the resolver's answers that is not a public address, or None.

    Every answer counts, not the first: a name with one public and one internal record would otherwise reach
    the internal one whenever the connection tried it."""
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not address.is_global and not (loopback_allowed and address.is_loopback):
            return str(address)
    return None


def _webhook_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
    """Connect as socket.create_connection does, once every address of the host proved public, to those addresses.

    The resolver is asked once, for the check and the connection both: a name that answers public to the check and
    internal a moment later (DNS rebinding) has no second answer to slip in."""
    host, port = address
    answers = _resolve(host, port)
    loopback_allowed = settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK and _is_loopback(host)
    internal = _internal_address(answers, loopback_allowed=loopback_allowed)
    if internal is not None:
        raise WebhookAddressRefused(f"{host} resolves to {internal}, an internal address; nothing was sent.")
    failure: OSError = OSError(f"{host} has no address")
    for *_, sockaddr in answers:
        try:
            # An address, not the name: nothing is resolved again.
            return socket.create_connection(sockaddr[:2], *args, **kwargs)
        except OSError as exc:
            failure = exc
    raise failure


def webhook_url_check(url: str) -> str:
    """Return the URL if a webhook may be sent to it (https; http to loopback only when allowed); else raise."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValidationError({"url": "Give a full https:// address."})
    if parts.username or parts.password:
        raise ValidationError({"url": "Put no user name or password in the address; the body is signed instead."})
    loopback_allowed = settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK and _is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback_allowed:
        raise ValidationError({"url": "Webhooks are sent over https only (plain http only to this machine, "
                                      "when PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK is on)."})
    if not loopback_allowed and _is_internal_address(parts.hostname):
        # The attempts page shows each answer's status: an internal address would make it a scanner of our network.
        raise ValidationError({"url": "Give a public address: private, loopback and link-local ones are refused."})
    if not loopback_allowed:
        # A name (or a number Python's ipaddress does not read, such as 127.1) may still lead inside. One that does
        # not resolve now is taken: every delivery checks its addresses again before it connects.
        try:
            internal = _internal_address(_resolve(parts.hostname, parts.port or 443), loopback_allowed=False)
        except (OSError, ValueError):
            internal = None
        if internal is not None:
            raise ValidationError({"url": f"{parts.hostname} resolves to {internal}, an internal address: give "
                                          "a public one."})
    return url


def _webhook_facts(webhook: Webhook) -> dict[str, Any]:
    # Never the secret: the ledger is read by Auditors and kept forever.
    return {"token_id": webhook.token_id, "url": webhook.url, "created_by_id": webhook.created_by_id,
            "created_at": webhook.created_at.isoformat(),
            "disabled_at": webhook.disabled_at.isoformat() if webhook.disabled_at else None,
            "disabled_by_id": webhook.disabled_by_id}


@transaction.atomic
def webhook_create(*, token: ApiToken, url: str, user: AbstractBaseUser) -> tuple[Webhook, str]:
    """Register a URL for the token's events; return the webhook and its secret, which is shown this once."""
    if not webhook_may_manage(user=user, token=token):
        raise PermissionDenied("Only the token's owner or an Admin registers its webhooks.")
    if token.revoked_at is not None:
        raise ValidationError("This token is revoked; it has no events to send.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook = Webhook(token=token, url=webhook_url_check(url), secret=secret, created_by=user)
    webhook.full_clean()
    webhook.save()
    ledger_append(event="webhook.created", actor=user, obj=webhook, facts=_webhook_facts(webhook),
                  reason=f"Webhook for token {token.prefix}…")
    return webhook, secret


@transaction.atomic
def webhook_disable(*, webhook: Webhook, user: AbstractBaseUser) -> Webhook:
    """Stop sending events to a webhook from now on; deliveries already made stay on record."""
    webhook = Webhook.objects.select_for_update().select_related("token").get(pk=webhook.pk)
    if not webhook_may_manage(user=user, token=webhook.token):
        raise PermissionDenied("Only the token's owner or an Admin disables its webhooks.")
    if webhook.disabled_at is not None:
        return webhook
    webhook.disabled_at, webhook.disabled_by = timezone.now(), user
    webhook.save(update_fields=["disabled_at", "disabled_by"])
    ledger_append(event="webhook.disabled", actor=user, obj=webhook, facts=_webhook_facts(webhook),
                  reason=f"Webhook {webhook.pk} disabled")
    return webhook


def _listening(task: Task, api_token: ApiToken | None) -> QuerySet[Webhook]:
    webhooks = Webhook.objects.filter(disabled_at__isnull=True, token__revoked_at__isnull=True)
    webhooks = webhooks.filter(Q(token__expires_at__isnull=True) | Q(token__expires_at__gt=timezone.now()))
    if api_token is not None:
        return webhooks.filter(token=api_token)
    # A token hears of a task it may classify: the task is in its scope, or it has no scope (every task).
    return webhooks.filter(Q(token__tasks=task) | Q(token__tasks__isnull=True)).distinct()


@transaction.atomic
def webhook_events_announce(
    *, task: Task, event: str, body: dict[str, Any], api_token: ApiToken | None = None
) -> list[WebhookDelivery]:
    """Queue an event for every webhook listening to the task (or only the given token's); send after commit.

    ``event`` is one of ``WEBHOOK_EVENTS`` (``decision.overridden``, ``task.stopped``, ``task.resumed``);
    ``body`` becomes the payload's ``data``. Called inside the service that made the event, so nothing is sent
    for an action that rolls back.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"{event!r} is not a webhook event ({', '.join(WEBHOOK_EVENTS)})")
    deliveries = []
    for webhook in _listening(task, api_token).select_related("token__user").order_by("pk"):
        if not task_is_visible(task, webhook.token.user):
            continue  # need-to-know: the token's owner no longer sees this task
        event_id = uuid.uuid4()
        payload = {"id": str(event_id), "type": event, "created": timezone.now().isoformat(), "task": task.name,
                   "data": body}
        delivery = WebhookDelivery(webhook=webhook, event_id=event_id, event=event, body=canonical_json(payload),
                                   next_attempt_at=timezone.now())
        delivery.full_clean()
        delivery.save()
        deliveries.append(delivery)
        transaction.on_commit(lambda pk=delivery.pk: _enqueue(pk))
    return deliveries


def _enqueue(delivery_id: int, *, run_after: Any = None) -> None:
    chosen = webhook_deliver.using(run_after=run_after) if run_after is not None else webhook_deliver
    chosen.enqueue(delivery_id)


def webhook_signature_header(*, secret: str, body: str, timestamp: int) -> str:
    """Return the PLD-Signature header value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_signature_verify(*, secret: str, body: bytes, header: str, now: float | None = None,
                             tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Say whether a received body carries a valid, recent signature (what a receiver runs; docs/production.md)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is a failed delivery: following it would send the signed body to an address nobody registered.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _CheckedConnectionMixin:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = self._checked_connection

    # Through a proxy (https_proxy) the socket goes to the proxy, which resolves and reaches the receiver itself.
    def _checked_connection(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if getattr(self, "_tunnel_host", None):
            return socket.create_connection(address, *args, **kwargs)
        return _webhook_connection(address, *args, **kwargs)


class _CheckedHTTPConnection(_CheckedConnectionMixin, http.client.HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectionMixin, http.client.HTTPSConnection):
    pass


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        # TLS still verifies the certificate against the name in the URL.
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)


_OPENER = urllib.request.build_opener(_NoRedirects, _CheckedHTTPHandler, _CheckedHTTPSHandler)


def _post(url: str, body: str, headers: dict[str, str]) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=body.encode("utf-8"), headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=settings.PLD_WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def webhook_backoff(attempt: int) -> timedelta:
    """Return how long to wait after the given failed attempt (1-based): the base, doubled each time."""
    return timedelta(seconds=settings.PLD_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1))


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookAttempt | None:
    """Try to deliver a pending event once; store the attempt; schedule the next one after a failure.

    Returns None when the delivery is no longer pending (delivered, out of attempts, or its webhook disabled).
    """
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("webhook").get(pk=delivery_id)
        if delivery.state != WebhookDelivery.State.PENDING:
            return None
        webhook = delivery.webhook
        if not webhook.is_active:
            delivery.state, delivery.next_attempt_at = WebhookDelivery.State.FAILED, None
            delivery.save(update_fields=["state", "next_attempt_at"])
            return None
        # Claimed before the request leaves, so a second worker given the same delivery does not send it twice.
        delivery.attempts += 1
        delivery.next_attempt_at = None
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    number = delivery.attempts
    started, clock = timezone.now(), time.perf_counter()
    headers = {
        "Content-Type": "application/json", "User-Agent": "PLD-Review-Webhooks/1",
        "PLD-Event": delivery.event, "PLD-Delivery": str(delivery.event_id),
        SIGNATURE_HEADER: webhook_signature_header(secret=webhook.secret, body=delivery.body,
                                                   timestamp=int(time.time())),
    }
    status, error = _post(webhook.url, delivery.body, headers)
    ok = status is not None and 200 <= status < 300
    with transaction.atomic():
        attempt = WebhookAttempt(
            delivery=delivery, number=number, started_at=started,
            duration_ms=round((time.perf_counter() - clock) * 1000, 3), response_code=status, ok=ok,
            error="" if ok else (error or f"HTTP {status}")[:ERROR_MAX_CHARS],
        )
        attempt.full_clean()
        attempt.save()
        if ok:
            delivery.state = WebhookDelivery.State.DELIVERED
        elif number >= settings.PLD_WEBHOOK_MAX_ATTEMPTS:
            delivery.state = WebhookDelivery.State.FAILED
        else:
            delivery.next_attempt_at = timezone.now() + webhook_backoff(number)
            when = delivery.next_attempt_at
            transaction.on_commit(lambda: _enqueue(delivery.pk, run_after=when))
        delivery.save(update_fields=["state", "next_attempt_at"])
    return attempt


@task()
def webhook_deliver(delivery_id: int) -> None:
    """The django-tasks entry point the worker runs for each attempt of a webhook delivery."""
    webhook_delivery_attempt(delivery_id=delivery_id)
