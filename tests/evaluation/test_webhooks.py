"""Webhooks against a real HTTP receiver on 127.0.0.1: HMAC-signed bodies, retries with backoff, every attempt shown."""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django_tasks_db.models import DBTaskResult

from evaluation.models import Webhook, WebhookAttempt, WebhookDelivery
from evaluation.production.api_tokens import api_token_create
from evaluation.production.decision_log import decision_override
from evaluation.production.webhooks import (
    webhook_create,
    webhook_deliver,
    webhook_delivery_attempt,
    webhook_events_announce,
    webhook_signature_verify,
)
from tests.support.decisions import logged_call
from tests.support.factories import TaskFactory
from tests.support.prompt_versions import approve_all, compiled
from tests.support.signatures import sign_decision_override


class Receiver:
    """An integrator's endpoint: checks each body's HMAC with the secret and answers the scripted statuses."""

    def __init__(self) -> None:
        self.secret = ""
        self.statuses: list[int] = []
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({
                    "body": body, "event": self.headers["PLD-Event"], "delivery": self.headers["PLD-Delivery"],
                    "verified": webhook_signature_verify(secret=receiver.secret, body=body,
                                                         header=self.headers["PLD-Signature"]),
                })
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pld-events"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def loopback(settings: Any) -> None:
    settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    settings.PLD_WEBHOOK_BACKOFF_SECONDS = 30


@pytest.fixture
def token(admin_user, reviewer):
    return api_token_create(user=reviewer, name="integration", created_by=admin_user)[0]


@pytest.fixture
def version(task, admin_user, second_reviewer):
    approve_all(task, second_reviewer)
    return compiled(task, admin_user)


def test_a_webhook_goes_over_https_or_to_loopback_over_http_only_when_allowed(token, reviewer, settings) -> None:
    settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    webhook, secret = webhook_create(token=token, url="https://hooks.example.org/pld", user=reviewer)
    assert secret.startswith("whsec_") and webhook.secret == secret
    for url in ["http://127.0.0.1:9/x", "http://hooks.example.org/pld", "ftp://x/", "https://u:p@example.org/",
                "https://10.0.0.1/x", "https://169.254.169.254/latest", "https://[::1]/x", "https://localhost/x"]:
        with pytest.raises(ValidationError):
            webhook_create(token=token, url=url, user=reviewer)
    settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    webhook_create(token=token, url="http://127.0.0.1:9/x", user=reviewer)
    with pytest.raises(ValidationError):
        webhook_create(token=token, url="http://10.0.0.1/x", user=reviewer)


def test_a_name_or_number_that_resolves_inside_is_refused_at_registration(token, reviewer, settings) -> None:
    # Python's ipaddress does not read these, the resolver does: each is 127.0.0.1 (inet_aton's short forms).
    for settings.PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK in (False, True):
        for url in ["https://127.1/x", "https://2130706433/x", "https://0x7f000001:8443/x", "https://10.1/x"]:
            with pytest.raises(ValidationError, match="resolves to (127.0.0.1|10.0.0.1), an internal address"):
                webhook_create(token=token, url=url, user=reviewer)
    # A name that does not resolve now is taken: every delivery checks again.
    webhook_create(token=token, url="https://hooks.example.invalid/pld", user=reviewer)
    assert list(token.webhooks.values_list("url", flat=True)) == ["https://hooks.example.invalid/pld"]


def test_a_delivery_to_a_name_that_now_resolves_inside_is_refused_before_it_connects(
    task, token, reviewer, receiver, loopback
) -> None:
    # As if the name had pointed outside at registration and inside now (DNS rebinding): the row is written as
    # registration left it, with a host that resolves to the receiver on 127.0.0.1.
    port = receiver.server.server_address[1]
    Webhook.objects.create(token=token, url=f"http://127.1:{port}/pld-events", secret="whsec_x", created_by=reviewer)
    (delivery,) = webhook_events_announce(task=task, event="task.stopped", body={"by": "alex"})
    attempt = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert not attempt.ok and attempt.response_code is None
    assert "127.1 resolves to 127.0.0.1, an internal address; nothing was sent." in attempt.error
    assert receiver.received == []
    # The same receiver by its loopback address, allowed here (PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK), does hear.
    Webhook.objects.filter(pk=delivery.webhook_id).update(url=receiver.url)
    assert webhook_delivery_attempt(delivery_id=delivery.pk).ok and len(receiver.received) == 1


def test_a_receiver_that_never_answers_is_a_failed_attempt_after_the_timeout(
    task, token, reviewer, loopback, settings
) -> None:
    settings.PLD_WEBHOOK_TIMEOUT_SECONDS = 1
    silent = socket.create_server(("127.0.0.1", 0))  # takes the connection, never reads or answers
    try:
        webhook_create(token=token, url=f"http://127.0.0.1:{silent.getsockname()[1]}/x", user=reviewer)
        (delivery,) = webhook_events_announce(task=task, event="task.stopped", body={})
        attempt = webhook_delivery_attempt(delivery_id=delivery.pk)
    finally:
        silent.close()
    assert not attempt.ok and attempt.response_code is None and "timed out" in attempt.error


def test_the_owner_registers_a_webhook_and_sees_its_secret_once_and_another_user_is_refused(
    client: Client, token, reviewer, second_reviewer
) -> None:
    client.force_login(reviewer)
    response = client.post(f"/api-tokens/{token.pk}/webhooks/new/", {"url": "https://hooks.example.org/pld"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = token.webhooks.get().secret
    assert secret in response.content.decode()
    assert secret not in client.get(f"/api-tokens/{token.pk}/webhooks/").content.decode()
    assert "hooks.example.org" in client.get("/webhooks/").content.decode()
    client.force_login(second_reviewer)
    assert client.get(f"/api-tokens/{token.pk}/webhooks/").status_code == 404
    assert client.post(f"/api-tokens/{token.pk}/webhooks/new/", {"url": "https://evil.example/"}).status_code == 403
    assert client.post(f"/webhooks/{token.webhooks.get().pk}/disable/").status_code == 403
    with pytest.raises(PermissionDenied):
        webhook_create(token=token, url="https://evil.example/", user=second_reviewer)
    assert token.webhooks.count() == 1


def test_an_override_reaches_the_tokens_receiver_with_a_body_whose_hmac_verifies(
    version, token, reviewer, receiver, loopback, django_capture_on_commit_callbacks
) -> None:
    webhook, receiver.secret = webhook_create(token=token, url=receiver.url, user=reviewer)
    call = logged_call(version, token=token)
    with django_capture_on_commit_callbacks(execute=True):
        decision_override(call=call, overridden_label="Contradiction", reason="Copies must be destroyed.",
                          user=reviewer, signature=sign_decision_override(reviewer, call, "Contradiction"))
    delivery = WebhookDelivery.objects.get()
    # Queued for the worker after commit; the worker runs the same task.
    assert DBTaskResult.objects.filter(args_kwargs__args=[delivery.pk]).exists()
    webhook_deliver.call(delivery.pk)
    (got,) = receiver.received
    assert got["verified"] and got["event"] == "decision.overridden" and got["delivery"] == str(delivery.event_id)
    payload = json.loads(got["body"])
    assert payload["type"] == "decision.overridden" and payload["task"] == "nda-demo"
    assert payload["data"]["request_id"] == str(call.request_id)
    assert (payload["data"]["label"], payload["data"]["overridden_label"]) == ("Entailment", "Contradiction")
    assert payload["data"]["overridden_by"] == "rita"
    delivery.refresh_from_db()
    assert delivery.state == "delivered"
    attempt = delivery.attempt_log.get()
    assert (attempt.number, attempt.response_code, attempt.ok) == (1, 200, True)
    # A body changed in transit, or replayed after the tolerance, fails the receiver's check.
    signature = f"t={int(attempt.started_at.timestamp())},v1=0"
    assert not webhook_signature_verify(secret=receiver.secret, body=got["body"], header=signature)
    assert not webhook_signature_verify(secret=receiver.secret, body=got["body"] + b" ", header=signature)


def test_a_failed_delivery_is_retried_with_backoff_and_every_attempt_is_shown_on_the_page(
    client: Client, version, token, reviewer, receiver, loopback, django_capture_on_commit_callbacks
) -> None:
    webhook, receiver.secret = webhook_create(token=token, url=receiver.url, user=reviewer)
    receiver.statuses = [500]
    # A stop-shaped event, as the stop service announces it.
    with django_capture_on_commit_callbacks(execute=True):
        (delivery,) = webhook_events_announce(task=version.task, event="task.stopped", body={
            "since": "2026-12-07T06:00:00+00:00", "by": "adam", "reason": "Drift alert"})
    with django_capture_on_commit_callbacks(execute=True):
        first = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert (first.ok, first.response_code) == (False, 500)
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.attempts == 1
    wait = (delivery.next_attempt_at - first.started_at).total_seconds()
    assert 30 <= wait < 40
    # The retry is queued for the worker to run no earlier than that.
    queued = DBTaskResult.objects.filter(args_kwargs__args=[delivery.pk])
    assert queued.count() == 2 and queued.filter(run_after=delivery.next_attempt_at).count() == 1
    second = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert (second.number, second.ok, second.response_code) == (2, True, 200)
    assert [r["verified"] for r in receiver.received] == [True, True]
    assert json.loads(receiver.received[1]["body"])["data"]["reason"] == "Drift alert"
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.next_attempt_at is None
    assert webhook_delivery_attempt(delivery_id=delivery.pk) is None  # delivered: never sent again
    client.force_login(reviewer)
    page = client.get(f"/api-tokens/{token.pk}/webhooks/").content.decode()
    assert "task.stopped" in page and "Delivered" in page
    assert "failed · HTTP 500" in page and "delivered · HTTP 200" in page


def test_a_stop_reaches_the_tokens_that_may_classify_the_task_and_gives_up_after_the_last_attempt(
    task, admin_user, reviewer, loopback, settings
) -> None:
    settings.PLD_WEBHOOK_MAX_ATTEMPTS = 2
    scoped = api_token_create(user=reviewer, name="scoped", created_by=admin_user, tasks=[task])[0]
    everything = api_token_create(user=reviewer, name="all", created_by=admin_user)[0]
    elsewhere = api_token_create(user=reviewer, name="other", created_by=admin_user,
                                 tasks=[TaskFactory(name="elsewhere")])[0]
    # Port 9 (discard) on loopback: nothing listens, so every attempt fails without an answer.
    for token in (scoped, everything, elsewhere):
        webhook_create(token=token, url="http://127.0.0.1:9/", user=reviewer)
    deliveries = webhook_events_announce(task=task, event="task.resumed", body={"by": "alex"})
    assert {d.webhook.token for d in deliveries} == {scoped, everything}
    delivery = deliveries[0]
    assert webhook_delivery_attempt(delivery_id=delivery.pk).response_code is None
    last = webhook_delivery_attempt(delivery_id=delivery.pk)
    assert last.number == 2 and not last.ok and last.error
    delivery.refresh_from_db()
    assert delivery.state == "failed" and delivery.next_attempt_at is None
    with pytest.raises(ValueError):
        webhook_events_announce(task=task, event="task.deleted", body={})


def test_the_database_refuses_to_rewrite_a_delivery_attempt(task, admin_user, reviewer, loopback) -> None:
    token = api_token_create(user=reviewer, name="all", created_by=admin_user)[0]
    webhook_create(token=token, url="http://127.0.0.1:9/", user=reviewer)
    (delivery,) = webhook_events_announce(task=task, event="task.stopped", body={})
    attempt = webhook_delivery_attempt(delivery_id=delivery.pk)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {WebhookAttempt._meta.db_table} SET ok = 1, response_code = 200 WHERE id = %s",
                       [attempt.pk])
    attempt.refresh_from_db()
    assert not attempt.ok
