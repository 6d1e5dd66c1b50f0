"""PLD_WEB_ROLE: a page-serving process never decides, the API's own process serves nothing but the API."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from evaluation.production.api_tokens import api_token_create
from evaluation.student import in_process as student_module
from tests.support.prompt_versions import in_production

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {"premise": "The Recipient may disclose it to employees.", "hypothesis": "It may share with employees."}


@pytest.fixture
def production(task, admin_user, second_reviewer) -> None:
    in_production(task, admin=admin_user, reviewer=second_reviewer)


def test_a_page_process_answers_421_naming_the_api_process_and_loads_no_model(
    production, admin_user, reviewer, settings
) -> None:
    settings.PLD_WEB_ROLE = "pages"
    settings.PLD_API_BASE_URL = "http://127.0.0.1:8001"
    token = api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]
    loaded = set(student_module._STUDENTS)
    response = Client().post(URL, data=json.dumps(BODY), content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 421
    assert response.json()["code"] == "api_elsewhere"
    assert response.json()["api_base_url"] == "http://127.0.0.1:8001"
    assert "http://127.0.0.1:8001/api/v1/" in response.json()["error"]
    assert set(student_module._STUDENTS) == loaded
    # The description tells integrators where to call.
    description = Client().get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert description.json()["servers"] == [{"url": "http://127.0.0.1:8001"}]


def test_the_api_process_serves_only_the_api(client, reviewer, admin_user, settings, task) -> None:
    settings.PLD_WEB_ROLE = "api"
    client.force_login(reviewer)
    for path in ("/review/", "/login/", "/evaluations/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "api_only"
    token = api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]
    assert Client().get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # Refusals still come from the API itself (no model needed for a missing token).
    assert Client().post(URL, data=json.dumps(BODY), content_type="application/json").status_code == 401


def test_a_process_serving_both_still_serves_pages(client, reviewer, settings) -> None:
    settings.PLD_WEB_ROLE = "all"
    client.force_login(reviewer)
    assert client.get("/review/").status_code == 200
