"""The classify endpoint answers real HTTP requests from a running server (pytest-django's live server)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from evaluation.production.api_tokens import api_token_create
from tests.support.prompt_versions import in_production

BODY = {
    "premise": "The Recipient shall not disclose Confidential Information to any third party.",
    "hypothesis": "The receiving party may share confidential information with third parties.",
}


def _call(url: str, token: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
    })
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_the_running_server_classifies_with_the_production_version(
    live_server, task, admin_user, reviewer, second_reviewer, student_settings
) -> None:
    version = in_production(task, admin=admin_user, reviewer=second_reviewer, reason="Live")
    _record, token = api_token_create(user=reviewer, name="live", created_by=admin_user)
    url = f"{live_server.url}/api/v1/tasks/nda-demo/classify"

    status, data = _call(url, token, json.dumps(BODY).encode())
    assert status == 200, data
    assert data["label"] in data["probabilities"]
    assert data["prompt_version"] == {"id": version.pk, "number": 1, "sha256": version.sha256}
    assert data["model_sha256"] == student_settings.info.sha256

    status, data = _call(url, token, b'{"premise": "only one field"}')
    assert (status, data["code"]) == (400, "missing_field")
    status, data = _call(url, "pld_wrong", json.dumps(BODY).encode())
    assert (status, data["code"]) == (401, "unauthorized")
