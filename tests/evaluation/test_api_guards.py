"""The classify API's guards: deep JSON is a 400, tokens expire, have a scope, a rate and an owner with a role."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from evaluation.models import ApiToken, ApiTokenWindow
from evaluation.production.api_tokens import TokenError, api_token_create, api_token_rate_check
from rules.models import Task

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {"premise": "The Recipient may disclose.", "hypothesis": "The party may share."}


@pytest.fixture
def api() -> Client:
    # DEBUG on, as in the demo: a server error would come back as Django's debug page, not JSON.
    return Client(enforce_csrf_checks=True, raise_request_exception=False)


def _post(api: Client, raw: str, *, body: bytes | None = None, url: str = URL):
    data = body if body is not None else json.dumps(BODY).encode()
    return api.post(url, data=data, content_type="application/json", headers={"Authorization": f"Bearer {raw}"})


@pytest.fixture
def raw(admin_user, reviewer) -> str:
    return api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_a_deeply_nested_body_is_a_400_in_the_api_format(api, task, raw, settings, depth) -> None:
    settings.DEBUG = True
    body = b"[" * depth + b"]" * depth
    assert depth > 2_000 or len(body) == 4_000  # 4 KB, under the size limit
    settings.PLD_API_MAX_BODY_BYTES = max(settings.PLD_API_MAX_BODY_BYTES, len(body) + 1)
    response = _post(api, raw, body=body)
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_deep" and "nests too deeply" in response.json()["error"]
    assert response["X-Request-ID"]


def test_every_answer_names_a_request_id(api, task, raw) -> None:
    first, second = _post(api, raw), _post(api, raw)
    assert first.status_code == 409  # no production version: still answered with an id
    assert first["X-Request-ID"] != second["X-Request-ID"] and len(first["X-Request-ID"]) == 36


def test_an_expired_token_is_403_token_expired(api, task, admin_user, reviewer) -> None:
    token, raw = api_token_create(user=reviewer, name="short", created_by=admin_user,
                                  expires_at=timezone.now() + timedelta(days=1))
    assert _post(api, raw).status_code == 409
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _post(api, raw)
    assert response.status_code == 403 and response.json()["code"] == "token_expired"
    assert "expired on" in response.json()["error"]


def test_a_token_cannot_be_issued_already_expired(admin_user, reviewer) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="future"):
        api_token_create(user=reviewer, name="x", created_by=admin_user, expires_at=timezone.now())


def test_a_token_scoped_to_other_tasks_is_403_token_out_of_scope(api, task, admin_user, reviewer) -> None:
    other = Task.objects.create(name="other", labels=[{"name": "A"}, {"name": "B"}], input_fields=["text"])
    _token, raw = api_token_create(user=reviewer, name="scoped", created_by=admin_user, tasks=[other])
    response = _post(api, raw)
    assert response.status_code == 403 and response.json()["code"] == "token_out_of_scope"
    # In scope, the request goes on (here to "no production version").
    assert _post(api, raw, url="/api/v1/tasks/other/classify", body=b'{"text": "x"}').status_code == 409


def test_a_token_whose_owner_lost_every_role_is_403(api, task, admin_user, reviewer) -> None:
    _token, raw = api_token_create(user=reviewer, name="owner", created_by=admin_user)
    reviewer.groups.clear()
    response = _post(api, raw)
    assert response.status_code == 403 and response.json()["code"] == "token_owner_not_permitted"


def test_the_61st_call_in_a_minute_on_a_60_a_minute_token_is_429(api, task, admin_user, reviewer) -> None:
    token, raw = api_token_create(user=reviewer, name="metered", created_by=admin_user, rate_limit_per_minute=60)
    # Start well inside a clock minute so all 61 calls fall in one window.
    if timezone.now().second >= 45:
        time.sleep(61 - timezone.now().second)
    statuses = [_post(api, raw).status_code for _ in range(60)]
    assert statuses == [409] * 60
    response = _post(api, raw)
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert ApiTokenWindow.objects.get(token=token).count == 61
    # Another token has its own count.
    _other, other_raw = api_token_create(user=reviewer, name="other", created_by=admin_user)
    assert _post(api, other_raw).status_code == 409


def test_the_window_resets_each_minute_and_old_counters_go(task, admin_user, reviewer) -> None:
    token, _raw = api_token_create(user=reviewer, name="m", created_by=admin_user, rate_limit_per_minute=2)
    start = timezone.now().replace(second=10, microsecond=0)
    api_token_rate_check(token=token, now=start)
    api_token_rate_check(token=token, now=start + timedelta(seconds=5))
    with pytest.raises(TokenError) as caught:
        api_token_rate_check(token=token, now=start + timedelta(seconds=20))
    assert caught.value.status == 429 and caught.value.retry_after == 30
    api_token_rate_check(token=token, now=start + timedelta(minutes=1))
    assert list(ApiTokenWindow.objects.filter(token=token).values_list("count", flat=True)) == [1]


def test_an_admin_issues_a_scoped_metered_expiring_token_on_the_page(client, task, admin_user, reviewer) -> None:
    client.force_login(admin_user)
    response = client.post("/api-tokens/new/", {
        "user": reviewer.pk, "name": "intake", "expires_at": "2099-01-01T12:00", "rate_limit_per_minute": 30,
        "tasks": [task.pk],
    })
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(name="intake")
    assert token.rate_limit == 30 and list(token.tasks.all()) == [task] and token.expires_at.year == 2099
    assert "30/min · NDA clauses" in client.get("/api-tokens/").content.decode()
    response = client.post("/api-tokens/new/", {"user": reviewer.pk, "name": "x", "expires_at": "2001-01-01T00:00"})
    assert response.status_code == 400 and "future" in response.content.decode()


def test_the_command_issues_scoped_metered_expiring_tokens(task, admin_user, reviewer, capsys) -> None:
    from django.core.management import call_command

    call_command("create_api_token", "--user", "rita", "--name", "batch", "--created-by", "adam",
                 "--expires", "2099-06-01", "--rate-limit", "5", "--task", "nda-demo")
    token = ApiToken.objects.get(token_hash=ApiToken.hash_token(capsys.readouterr().out.strip()))
    assert (token.expires_at.date().isoformat(), token.rate_limit, [t.name for t in token.tasks.all()]) == (
        "2099-06-01", 5, ["nda-demo"])


def test_the_openapi_description_names_the_request_id_and_the_rate_limit(api, task, raw) -> None:
    spec = api.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {raw}"}).json()
    responses = spec["paths"][f"/api/v1/tasks/{task.name}/classify"]["post"]["responses"]
    assert "X-Request-ID" in responses["200"]["headers"] and "Retry-After" in responses["429"]["headers"]
    assert "token_out_of_scope" in responses["403"]["description"]
