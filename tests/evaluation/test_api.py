"""The classify API: token auth, input errors as JSON, the production version per request, OpenAPI, command."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from evaluation.production.api_tokens import api_token_create, api_token_revoke
from evaluation.release.promotion import prompt_version_promote
from rules.models import PromptVersion
from tests.support.prompt_versions import approve, approve_all, compiled, gate_passing_run
from tests.support.signatures import sign_promotion, sign_revocation

URL = "/api/v1/tasks/nda-demo/classify"
BODY = {
    "premise": "The Recipient may disclose Confidential Information to its employees who need to know it.",
    "hypothesis": "The receiving party may share confidential information with its employees.",
}


@pytest.fixture
def api() -> Client:
    # CSRF checks on, no session: the API must work on the token alone.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def token(admin_user, reviewer) -> str:
    return api_token_create(user=reviewer, name="integration", created_by=admin_user)[1]


@pytest.fixture
def versions(task, admin_user, second_reviewer) -> tuple[PromptVersion, PromptVersion]:
    approve_all(task, second_reviewer)
    v1 = compiled(task, admin_user)
    approve(task, second_reviewer, "If the clause names a court, then NotMentioned", "NotMentioned")
    v2 = compiled(task, admin_user)
    gate_passing_run(v1)
    gate_passing_run(v2)
    return v1, v2


def _post(api: Client, token: str | None, body: object = BODY, *, url: str = URL, raw: bytes | None = None,
          content_type: str = "application/json"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    # CONTENT_TYPE too: the test client drops the header when the body is empty, and a client would still send it.
    return api.post(url, data=data, content_type=content_type, headers=headers, CONTENT_TYPE=content_type)


class _Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args: object) -> bytes:
        raise AssertionError("the body was read")

    readline = read


# --- Authentication (no model needed: refused before anything else) ------------------------------------


def test_a_missing_token_is_401(api, task) -> None:
    response = _post(api, None)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthorized" and "Missing token" in response.json()["error"]


def test_a_wrong_token_is_401(api, task, token) -> None:
    response = _post(api, token + "x")
    assert response.status_code == 401 and response.json()["error"] == "Unknown token."


def test_a_revoked_token_is_403(api, task, admin_user, reviewer) -> None:
    record, raw = api_token_create(user=reviewer, name="old", created_by=admin_user)
    api_token_revoke(token=record, user=admin_user, signature=sign_revocation(admin_user, record))
    response = _post(api, raw)
    assert response.status_code == 403 and response.json()["code"] == "token_revoked"


def test_a_session_cookie_is_not_enough(client, task, admin_user) -> None:
    client.force_login(admin_user)
    assert _post(client, None).status_code == 401


# --- Input errors (no model needed: refused before classifying) ---------------------------------------


@pytest.mark.parametrize("body, raw, code, words", [
    (None, b"{not json", "bad_json", "not valid JSON"),
    (None, b"", "bad_json", "empty"),
    (["a", "list"], None, "not_an_object", "JSON object"),
    ({"premise": "x"}, None, "missing_field", "Missing field(s): hypothesis"),
    ({"premise": "x", "hypothesis": 3}, None, "wrong_type", "hypothesis must be strings"),
    ({"premise": "x", "hypothesis": "y", "label": "Entailment"}, None, "unknown_field", "Unknown field(s): label"),
    ({"premise": "x", "hypothesis": "  "}, None, "empty_field", "hypothesis are empty"),
    # JSON escapes that decode to a lone surrogate or a NUL: the student cannot encode the first (a 500 before).
    (None, b'{"premise": "\\ud800", "hypothesis": "y"}', "invalid_unicode", "premise hold a NUL character or a lone"),
    (None, b'{"premise": "x", "hypothesis": "a\\udfffb"}', "invalid_unicode", "hypothesis hold"),
    (None, b'{"premise": "x\\u0000", "hypothesis": "y"}', "invalid_unicode", "premise hold"),
])
def test_bad_input_gets_a_400_that_says_what_is_wrong(api, versions, admin_user, token, body, raw, code, words) -> None:
    prompt_version_promote(prompt_version=versions[0], user=admin_user, reason="Go",
        signature=sign_promotion(admin_user, versions[0]))
    response = _post(api, token, body, raw=raw)
    assert response.status_code == 400
    assert response.json()["code"] == code and words in response.json()["error"]


def test_an_oversized_body_is_413(api, task, token, settings) -> None:
    settings.PLD_API_MAX_BODY_BYTES = 1024
    response = _post(api, token, {"premise": "x" * 2000, "hypothesis": "y"})
    assert response.status_code == 413 and "limit is 1024" in response.json()["error"]


def test_unknown_task_wrong_method_and_media_type(api, task, token) -> None:
    response = _post(api, token, url="/api/v1/tasks/no-such-task/classify")
    assert response.status_code == 404 and response.json()["code"] == "unknown_task"
    response = api.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405 and response["Allow"] == "POST"
    response = _post(api, token, raw=b"premise=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_a_body_without_a_content_type_is_415(api, versions, token) -> None:
    response = api.generic("POST", URL, data=json.dumps(BODY).encode(), content_type="",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 415 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "unsupported_media_type"


def test_a_body_over_every_limit_is_a_json_413_read_by_no_one(api, task, token) -> None:
    body = json.dumps({"premise": "x" * 5_000_000, "hypothesis": "y"}).encode()
    response = api.generic("POST", URL, data=b"", content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"},
                           CONTENT_LENGTH=str(len(body)), **{"wsgi.input": _Unreadable()})
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_large"


def test_a_chunked_body_without_a_length_is_a_json_411(api, task, token) -> None:
    response = api.generic("POST", URL, data=b"", content_type="application/json",
                           headers={"Authorization": f"Bearer {token}", "Transfer-Encoding": "chunked"},
                           **{"wsgi.input": _Unreadable()})
    assert response.status_code == 411 and response.json()["code"] == "length_required"


def test_an_unknown_api_path_is_a_json_404(api, token) -> None:
    response = api.get("/api/v1/no-such-thing", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


def test_a_task_without_a_production_version_is_409(api, versions, token) -> None:
    response = _post(api, token)
    assert response.status_code == 409 and "no prompt version in production" in response.json()["error"]


# --- Classifying with the real student ----------------------------------------------------------------


@pytest.mark.slow
def test_it_answers_with_the_label_probabilities_version_and_model(api, versions, admin_user, token,
                                                                    student_settings) -> None:
    v1, _v2 = versions
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="Go", signature=sign_promotion(admin_user, v1))
    response = _post(api, token)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["label"] in {"Entailment", "Contradiction", "NotMentioned"}
    assert set(data["probabilities"]) == {"Entailment", "Contradiction", "NotMentioned"}
    assert abs(sum(data["probabilities"].values()) - 1.0) < 1e-3
    assert data["label"] == max(data["probabilities"], key=data["probabilities"].get)
    assert data["prompt_version"] == {"id": v1.pk, "number": 1, "sha256": v1.sha256}
    assert data["model_sha256"] == student_settings.info.sha256


@pytest.mark.slow
def test_a_call_right_after_a_promotion_or_rollback_uses_the_new_version(api, versions, admin_user, token,
                                                                          student_settings) -> None:
    v1, v2 = versions
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="First", signature=sign_promotion(admin_user, v1))
    assert _post(api, token).json()["prompt_version"]["id"] == v1.pk
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
        signature=sign_promotion(admin_user, v2))
    assert _post(api, token).json()["prompt_version"] == {"id": v2.pk, "number": 2, "sha256": v2.sha256}
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="Roll back",
        signature=sign_promotion(admin_user, v1))
    assert _post(api, token).json()["prompt_version"]["id"] == v1.pk


@pytest.mark.slow
def test_the_classify_command_uses_the_same_code(versions, admin_user, student_settings, capsys) -> None:
    with pytest.raises(CommandError, match="no prompt version in production"):
        call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY))
    prompt_version_promote(prompt_version=versions[1], user=admin_user, reason="Go",
        signature=sign_promotion(admin_user, versions[1]))
    call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY))
    data = json.loads(capsys.readouterr().out)
    assert data["prompt_version"]["id"] == versions[1].pk and data["label"] in data["probabilities"]
    with pytest.raises(CommandError, match="Missing field"):
        call_command("classify", "--task", "nda-demo", "--input", '{"premise": "x"}')
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("classify", "--task", "nda-demo", "--input", "{")


@pytest.mark.slow
def test_the_response_says_whether_the_rules_prefix_was_restored_or_recomputed(
    api, versions, admin_user, token, student_settings, settings, tmp_path
) -> None:
    from evaluation.student.prompts import pld_rules
    from evaluation.student.warm import student_state_save

    settings.PLD_STUDENT_STATE_DIR = tmp_path
    v1, v2 = versions
    prompt_version_promote(prompt_version=v1, user=admin_user, reason="Go", signature=sign_promotion(admin_user, v1))
    recomputed = _post(api, token)
    assert recomputed["X-PLD-Prefix"] == "recomputed"
    assert student_state_save(student=student_settings, rules_text=pld_rules(task=v1.task, prompt_text=v1.text)).usable
    # What a restarted process sees: a cache without these rules, and the saved state on disk.
    student_settings.classify(rules="Unrelated rules.", example="x", labels=["a", "b"])
    restored = _post(api, token)
    assert restored["X-PLD-Prefix"] == "restored"
    assert restored.json() == recomputed.json()
    prompt_version_promote(prompt_version=v2, user=admin_user, reason="Adds the court rule",
                           signature=sign_promotion(admin_user, v2))
    assert _post(api, token)["X-PLD-Prefix"] == "recomputed"  # no state saved for v2


def test_the_classify_command_names_a_cut_short_model_file(versions, admin_user, settings, tmp_path) -> None:
    from rules.student_model import bundled_model_path

    prompt_version_promote(prompt_version=versions[1], user=admin_user, reason="Go",
                           signature=sign_promotion(admin_user, versions[1]))
    cut = tmp_path / "cut.gguf"
    with bundled_model_path().open("rb") as source:
        cut.write_bytes(source.read(10 * 1024 * 1024))
    settings.PLD_STUDENT_MODEL_PATH = str(cut)
    with pytest.raises(CommandError) as caught:
        call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY))
    assert "is truncated" in str(caught.value) and "10,485,760 bytes" in str(caught.value)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04" * 1000)
    settings.PLD_STUDENT_MODEL_PATH = str(not_gguf)
    with pytest.raises(CommandError, match="is not a GGUF model file"):
        call_command("classify", "--task", "nda-demo", "--input", json.dumps(BODY))


# --- OpenAPI ------------------------------------------------------------------------------------------


def test_the_openapi_description_needs_a_token_or_a_role(api, client, task, token, reviewer, outsider) -> None:
    assert api.get("/api/v1/openapi.json").status_code == 401
    response = api.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"] == "3.1.0"
    operation = spec["paths"]["/api/v1/tasks/nda-demo/classify"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "411", "413", "415"} <= set(operation["responses"])
    assert operation["requestBody"]["content"]["application/json"]["example"] == {"premise": "…", "hypothesis": "…"}
    client.force_login(reviewer)
    assert client.get("/api/v1/openapi.json").status_code == 200
    client.force_login(outsider)
    assert client.get("/api/v1/openapi.json").status_code == 403


def test_the_openapi_document_names_each_tasks_required_input_fields(api, task, token) -> None:
    from rules.models import Task

    other = Task.objects.create(name="one-field", title="One field", input_fields=["clause"],
                                labels=task.labels)
    spec = api.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
    for each in (task, other):
        schema = spec["paths"][f"/api/v1/tasks/{each.name}/classify"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        assert schema["required"] == each.input_fields and set(schema["properties"]) == set(each.input_fields)
        assert schema["additionalProperties"] is False
    assert "/api/v1/tasks/{task}/classify" not in spec["paths"]


def test_a_server_error_under_api_is_json_and_elsewhere_the_page(rf) -> None:
    from evaluation.production.api import server_error

    response = server_error(rf.post("/api/v1/tasks/nda-demo/classify"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert json.loads(response.content)["code"] == "server_error"
    page = server_error(rf.get("/review/"))
    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
