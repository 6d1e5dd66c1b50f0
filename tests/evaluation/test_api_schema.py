"""The OpenAPI document is the API's contract: schemathesis sends what it describes (and what it forbids) to the
real WSGI application, which decides with the real student, and finds no 5xx and no answer the document does not
describe. Bounded: a fixed number of examples per operation, derandomized, so it runs in well under 90 s.
"""
from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from evaluation.production.api_tokens import api_token_create
from evaluation.release.promotion import prompt_version_promote
from tests.support.prompt_versions import approve_all, compiled, gate_passing_run
from tests.support.signatures import sign_promotion

# Each accepted call runs the student (0.2-1 s here); rejected ones cost milliseconds.
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 40


@pytest.fixture
def api_schema(transactional_db: None, task, admin_user, reviewer, second_reviewer, student_settings) -> Any:
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    gate_passing_run(version)
    prompt_version_promote(prompt_version=version, user=admin_user, reason="Go",
                           signature=sign_promotion(admin_user, version))
    # A rate the run cannot reach: 429 is documented, but then the examples would test the limiter, not the input.
    raw = api_token_create(user=reviewer, name="schemathesis", created_by=admin_user, rate_limit_per_minute=10_000)[1]
    auth = {"Authorization": f"Bearer {raw}"}
    # The real application, as gunicorn serves it (the test database committed: transactional_db).
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application(), headers=auth)
    return schema, auth


def _fuzz(operation: Any, mode: GenerationMode, n: int, auth: dict[str, str]) -> list[int]:
    statuses: list[int] = []
    accepted_invalid: list[Any] = []

    @settings(max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        # Every check schemathesis has: no 5xx, status, content type, headers and body as documented, valid data
        # accepted and invalid data refused.
        # A negative case may be invalid only in its Authorization header: sending the valid token over it
        # would turn it into a valid request, so such a case goes as generated (and must be refused, 401).
        mutated = (case.headers or {}).get("Authorization", auth["Authorization"]) != auth["Authorization"]
        headers = {} if mode == GenerationMode.NEGATIVE and mutated else auth
        status = case.call_and_validate(headers=headers).status_code
        statuses.append(status)
        if mode == GenerationMode.NEGATIVE and status < 400:
            accepted_invalid.append((case.body, case.headers, case.media_type))

    check()
    # Named in the failure: the invalid input the API took, so the document or the validation can be mended.
    assert not accepted_invalid, accepted_invalid
    return statuses


@pytest.mark.slow
def test_the_api_answers_everything_its_openapi_document_allows_or_forbids_as_documented(api_schema) -> None:
    schema, auth = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.path for op in operations) == ["/api/v1/decisions/{request_id}", "/api/v1/tasks/nda-demo/classify"]
    for operation in operations:
        accepted = _fuzz(operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, auth)
        refused = _fuzz(operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, auth)
        if operation.path.startswith("/api/v1/decisions/"):
            # Random request ids name no decision of this token: every valid one is a documented 404.
            assert set(accepted) == {404}, accepted
        else:
            # The run did reach the student, and did send invalid input.
            assert 200 in accepted, accepted
        assert refused and all(400 <= status < 500 for status in refused), (
            sorted(set(refused)), [status for status in refused if not 400 <= status < 500])
