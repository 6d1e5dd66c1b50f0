"""The integrators' HTTP API: classify with a task's production prompt, and its OpenAPI description.

Token authentication only (``Authorization: Bearer <token>``): no session, no cookie, so no CSRF.
Missing or unknown token → 401; revoked, expired, out-of-scope token or an owner without a role → 403 with
its code; over the token's rate → 429 with Retry-After. Every error is JSON ``{"error", "code"}``; every
classify answer carries ``X-Request-ID``, the id of its record in the decision log.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.urls import reverse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from evaluation.models import ApiToken, ClassifyCall
from evaluation.production.admission import (
    QueueFull,
    model_queue_refuse_if_full,
    model_queue_slot,
    token_rate_check,
)
from evaluation.production.api_tokens import TokenError, api_token_authenticate, api_token_check_scope
from evaluation.production.decision_log import classify_call_record
from evaluation.production.dossier import decision_dossier
from evaluation.production.serving import (
    INPUT_FIELD_PATTERN,
    ClassifyError,
    ServingStopped,
    classify_inputs,
    production_classify,
    serving_stop_check,
)
from pldreview import views as pages
from rules.models import Task

logger = logging.getLogger(__name__)


def _error(message: str, *, status: int, code: str, **extra: Any) -> JsonResponse:
    response = JsonResponse({"error": message, "code": code, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="pld-review"'
    return response


def _refusal(exc: TokenError) -> JsonResponse:
    response = _error(exc.message, status=exc.status, code=exc.code)
    if exc.retry_after:
        response["Retry-After"] = str(exc.retry_after)
    return response


def _authenticate(request: HttpRequest) -> ApiToken | JsonResponse:
    try:
        return api_token_authenticate(request.headers.get("Authorization", ""))
    except TokenError as exc:
        return _refusal(exc)


def _read_json(request: HttpRequest) -> Any:
    limit = settings.PLD_API_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ClassifyError("The Content-Length header is not a number.", status=400, code="bad_request") from exc
    # Refuse before reading when the client says up front that the body is too large.
    if declared > limit:
        raise ClassifyError(f"The body is {declared} bytes; the limit is {limit}.", status=413, code="too_large")
    try:
        body = request.body
    except UnreadablePostError as exc:
        # The body stopped arriving: the client went away or sent too slowly (PLD_REQUEST_BODY_SECONDS).
        raise ClassifyError("The body did not arrive in time.", status=408, code="request_timeout") from exc
    if len(body) > limit:
        raise ClassifyError(f"The body is {len(body)} bytes; the limit is {limit}.", status=413, code="too_large")
    if not body.strip():
        raise ClassifyError("The body is empty; send a JSON object.", status=400, code="bad_json")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClassifyError(f"The body is not valid JSON: {exc}", status=400, code="bad_json") from exc
    except RecursionError as exc:
        # json's C parser recurses once per nesting level: a few KB of "[[[[" exhaust the stack.
        raise ClassifyError("The body nests too deeply; send a flat JSON object.", status=400,
                            code="too_deep") from exc


def _should_log(request: HttpRequest) -> bool:
    # Only a server started for the classify_api benchmark honours the header (docs/production.md).
    return not (settings.PLD_BENCHMARK_UNLOGGED_CALLS and request.headers.get("X-PLD-Unlogged") == "1")


def _misdirected() -> JsonResponse:
    where = settings.PLD_API_BASE_URL.rstrip("/")
    # A page-serving process never loads the model, so integrators cannot starve reviewers (PLD_WEB_ROLE).
    return _error(
        f"This address serves the review pages; the classify API is served by its own process"
        f"{' at ' + where + '/api/v1/' if where else ''}.", status=421, code="api_elsewhere",
        **({"api_base_url": where} if where else {}),
    )


def _queue_full(exc: QueueFull) -> JsonResponse:
    response = _error(f"This API process is busy ({exc.bound} calls already wait for the model); try again in "
                      f"{exc.retry_after} s.", status=503, code="queue_full")
    response["Retry-After"] = str(exc.retry_after)
    return response


def _classify(request: HttpRequest, task_name: str, *, request_id: uuid.UUID, started: float) -> HttpResponse:
    if settings.PLD_WEB_ROLE == "pages":
        return _misdirected()
    token = _authenticate(request)
    if isinstance(token, JsonResponse):
        return token
    if request.method != "POST":
        response = _error("Use POST with a JSON body.", status=405, code="method_not_allowed")
        response["Allow"] = "POST"
        return response
    # A body without a media type is refused too: what is not declared JSON is not parsed as JSON.
    if request.content_type != "application/json":
        return _error("Send the body as application/json (Content-Type: application/json).", status=415,
                      code="unsupported_media_type")
    # Need-to-know: a token acts for its owner, so a task the owner is no member of answers as one that is not there.
    task = Task.objects.visible_to(token.user).filter(name=task_name).first()
    if task is None:
        return _error(f"There is no task named {task_name!r}.", status=404, code="unknown_task")
    try:
        api_token_check_scope(token=token, task=task)
        token_rate_check(token=token)
    except TokenError as exc:
        return _refusal(exc)
    try:
        # A stopped task refuses before the body is read: the stop is the answer whatever was sent.
        serving_stop_check(task)
        # So does a full queue: under load most calls end here, and reading and parsing their bodies would take
        # CPU from the decisions (docs/production.md, "Admission control").
        model_queue_refuse_if_full()
        payload = _read_json(request)
        # Admission (evaluation/production/admission.py): every check above answered without waiting for the student.
        queued = time.perf_counter()
        with model_queue_slot():
            turn = time.perf_counter()
            result = production_classify(task=task, payload=payload, on_decision_thread=True)
    except QueueFull as exc:
        return _queue_full(exc)
    except ClassifyError as exc:
        return JsonResponse(exc.as_dict(request_id=request_id), status=exc.status)
    decided = time.perf_counter()
    if _should_log(request):
        try:
            classify_call_record(
                task=task, result=result, inputs=classify_inputs(task=task, payload=payload),
                source=ClassifyCall.Source.API, request_id=request_id, api_token=token,
                latency_ms=(decided - started) * 1000,
            )
        except ServingStopped as exc:
            # Stopped while this call was deciding: the decision is neither logged nor given.
            return JsonResponse(exc.as_dict(request_id=request_id), status=exc.status)
        except DatabaseError:
            # A decision that cannot be put on the record is not given (EU AI Act Art. 12 logging).
            logger.exception("The decision log refused call %s", request_id)
            return _error("The decision could not be logged; it was not given. Try again.", status=503,
                          code="decision_log_unavailable")
    response = JsonResponse(result.as_dict())
    # Whether the rules prefix was restored from a saved state or recomputed: both give the same
    # probabilities (a state is only used when it does), so it is a header, not part of the answer.
    response["X-PLD-Prefix"] = result.prefix
    # Exact unless an inference server's top log-probabilities did not cover a label token (docs/student.md).
    response["X-PLD-Scoring"] = result.scoring
    # What the decision log costs, per call, for integrators and the classify_api benchmark.
    # "admit" is the part of "decide" spent on the checks before the queue, "wait" the part spent waiting for the
    # calls admitted before this one (admission.py).
    response["Server-Timing"] = (
        f"decide;dur={(decided - started) * 1000:.1f}, admit;dur={(queued - started) * 1000:.1f}, "
        f"wait;dur={(turn - queued) * 1000:.1f}, "
        f"log;dur={(time.perf_counter() - decided) * 1000:.2f}"
    )
    return response


@csrf_exempt
@login_not_required  # token authentication, answered 401 without one
def classify(request: HttpRequest, task_name: str) -> HttpResponse:
    """Classify one input with the task's production prompt version; every answer names its request id."""
    started = time.perf_counter()
    request_id = uuid.uuid4()
    response = _classify(request, task_name, request_id=request_id, started=started)
    response["X-Request-ID"] = str(request_id)
    return response


def _decision(request: HttpRequest, request_id: str) -> HttpResponse:
    if settings.PLD_WEB_ROLE == "pages":
        return _misdirected()
    token = _authenticate(request)
    if isinstance(token, JsonResponse):
        return token
    if request.method != "GET":
        response = _error("Use GET.", status=405, code="method_not_allowed")
        response["Allow"] = "GET"
        return response
    try:
        token_rate_check(token=token)
    except TokenError as exc:
        return _refusal(exc)
    try:
        wanted = uuid.UUID(request_id)
    except ValueError:
        wanted = None
    # Only the token that made the call reads it, and only while its owner may see the task (need-to-know): any
    # other token learns nothing, not even that it exists.
    call = (
        ClassifyCall.objects.select_related("task", "prompt_version", "api_token__user")
        .filter(request_id=wanted, api_token=token, task__in=Task.objects.visible_to(token.user)).first()
        if wanted else None
    )
    if call is None:
        return _error("This token made no decision with that request id (or the call was purged after its "
                      "retention period).", status=404, code="unknown_decision")
    try:
        api_token_check_scope(token=token, task=call.task)
    except TokenError as exc:
        return _refusal(exc)
    return JsonResponse(decision_dossier(call), json_dumps_params={"ensure_ascii": False})


@csrf_exempt
@login_not_required  # token authentication, answered 401 without one
def decision(request: HttpRequest, request_id: str) -> HttpResponse:
    """Return a logged decision's current outcome and dossier to the token that made it."""
    return _decision(request, request_id)


def _input_schema(task: Task) -> dict[str, Any]:
    # Exactly what classify_inputs enforces: every field, nothing else, each a string with a non-space character
    # and no NUL (INPUT_FIELD_PATTERN); lone surrogates, which no pattern can name, are refused as said in words.
    return {
        "type": "object",
        "description": (
            f"The input fields of task {task.name}, each text with a character that is not whitespace; no other "
            "keys. A NUL or a lone surrogate (a \\ud800-\\udfff escape not part of a pair) is refused: 400 "
            "invalid_unicode."
        ),
        "required": list(task.input_fields),
        "properties": {
            name: {"type": "string", "pattern": INPUT_FIELD_PATTERN} for name in task.input_fields
        },
        "additionalProperties": False,
    }


def _classify_operation(task: Task, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"classify-{task.name}",
            "summary": f"Classify one input of {task.title or task.name} with its production prompt version",
            "requestBody": {
                "required": True,
                "content": {"application/json": {
                    "schema": _input_schema(task),
                    "example": {name: "…" for name in task.input_fields},
                }},
            },
            "responses": responses,
        }
    }


_NULLABLE_STRING = {"type": ["string", "null"]}
_DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A logged decision, its current outcome (overridden or not) and its dossier (docs/production.md)",
    "required": ["request_id", "task", "created_at", "label", "probabilities", "outcome_label", "overridden",
                 "overridden_label", "overridden_by", "overridden_at", "override_reason", "input", "prompt_version",
                 "model_sha256", "scoring", "rules", "ledger_entry"],
    "properties": {
        "request_id": {"type": "string", "format": "uuid"},
        "task": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "label": {"type": "string", "description": "The label the student gave"},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
        "outcome_label": {"type": "string", "description": "The overridden label when a person overrode it, "
                                                           "else the student's"},
        "overridden": {"type": "boolean"},
        "overridden_label": _NULLABLE_STRING,
        "overridden_by": {**_NULLABLE_STRING, "description": "The overrider's printed name, as signed"},
        "overridden_at": {**_NULLABLE_STRING, "format": "date-time"},
        "override_reason": _NULLABLE_STRING,
        "override": {"type": ["object", "null"], "description": "The override with its electronic signature"},
        "input": {"type": "object", "description": "The input as the task's retention rule kept it (fields null "
                                                   "when only its SHA-256 was kept)"},
        "prompt_version": {"type": "object"},
        "model_sha256": {"type": "string"},
        "scoring": {"type": "object"},
        "rules": {"type": "array", "items": {"type": "object"},
                  "description": "Each rule of the version: revision, text, label, signed decisions"},
        "ledger_entry": {"type": ["object", "null"], "description": "The ledger entry that recorded the call"},
    },
}


def _decision_operation(json_error: Any) -> dict[str, Any]:
    return {
        "get": {
            "operationId": "decision",
            "summary": "Read a decision this token made: its current outcome (overridden by a person or not) "
                       "and its dossier",
            "parameters": [{
                "name": "request_id", "in": "path", "required": True,
                "description": "The X-Request-ID the classify call answered with",
                "schema": {"type": "string", "format": "uuid"},
            }],
            "responses": {
                "200": {"description": "The decision", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Decision"}}}},
                "401": json_error("Missing, malformed or unknown token"),
                "403": json_error("Token revoked, expired, out of scope for the decision's task, or its owner holds "
                                  "no role"),
                "404": json_error("This token made no decision with that id, or it was purged (code "
                                  "unknown_decision)"),
                "405": json_error("Not a GET"),
                "421": json_error("Sent to a page-serving process; api_base_url names the API's"),
                "429": json_error("Over the token's requests per minute"),
                "500": json_error("An error in the server, in its log (code server_error)"),
            },
        }
    }


def _openapi(request: HttpRequest, viewer: Any) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}

    def json_error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": error}}}

    responses = {
        "200": {"description": "The decision", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Classification"}
        }}, "headers": {"X-Request-ID": {
            "description": "The call's id in the decision log (on every answer)",
            "schema": {"type": "string", "format": "uuid"},
        }, "X-PLD-Prefix": {
            "description": (
                "restored: the rules prefix came from a saved state (checked to score "
                "exactly as a recomputed one); recomputed: llama.cpp processed it in "
                "this process"
            ),
            "schema": {"type": "string", "enum": ["restored", "recomputed", "server"]},
        }, "X-PLD-Scoring": {
            "description": (
                "exact: the label probabilities are the model's; approximate: an inference "
                "server's top log-probabilities missed a label token (scoring.approximation "
                "says which)"
            ),
            "schema": {"type": "string", "enum": ["exact", "approximate"]},
        }}},
        "400": json_error(
            "Bad or deeply nested JSON; a missing, unknown, empty or non-string field; a field holding a NUL "
            "or a lone surrogate (codes bad_json, too_deep, not_an_object, missing_field, unknown_field, "
            "wrong_type, empty_field, invalid_unicode)"
        ),
        "401": json_error("Missing, malformed or unknown token"),
        "403": json_error(
            "Token revoked, expired, out of scope for the task, or its owner holds no role "
            "(codes token_revoked, token_expired, token_out_of_scope, token_owner_not_permitted)"
        ),
        "404": json_error("No task of that name"),
        "405": json_error("Not a POST"),
        "408": json_error("The body did not arrive within PLD_REQUEST_BODY_SECONDS (code request_timeout)"),
        "409": json_error("The task has no prompt version in production"),
        "411": json_error("A body without Content-Length (chunked): refused (code length_required)"),
        "413": json_error(
            f"Body over {settings.PLD_API_MAX_BODY_BYTES} bytes (too_large), or too long for the model's "
            "context (input_too_long)"
        ),
        "415": json_error("Body not sent as application/json"),
        "421": json_error("Sent to a page-serving process; api_base_url names the API's"),
        "429": {**json_error("Over the token's requests per minute"), "headers": {"Retry-After": {
            "description": "Seconds until the next minute", "schema": {"type": "integer"},
        }}},
        "500": json_error("An error in the server, in its log (code server_error)"),
        "503": {**json_error(
            "The student model could not be loaded (model_error), the inference server did not answer after "
            "its retries, the decision could not be logged (decision_log_unavailable), an Admin stopped the "
            "task's serving (serving_stopped: stop names since when, by whom and why; request_id the call's id), "
            "or this process already has PLD_API_MAX_QUEUE calls waiting for the model (queue_full, with "
            "Retry-After)"
        ), "headers": {"Retry-After": {
            "description": "With queue_full: seconds after which a call is likely admitted",
            "schema": {"type": "integer"},
        }}},
    }
    tasks = Task.objects.visible_to(viewer).order_by("name")  # need-to-know: only the viewer's tasks
    paths = {reverse("pld-api-classify", args=[task.name]): _classify_operation(task, responses) for task in tasks}
    paths[reverse("pld-api-decision", args=["REQUEST_ID"]).replace("REQUEST_ID", "{request_id}")] = (
        _decision_operation(json_error)
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PLD Review classify API",
            "version": "1",
            "description": (
                "Classify one input with a task's production prompt version: one path per task, whose body "
                "names the task's input fields. Authenticate with `Authorization: Bearer <token>`; Admins "
                "issue tokens on the API tokens page. Each call uses the version in production at that moment. "
                "Read a decision's current outcome (overridden by a person or not) and its dossier with "
                "GET /api/v1/decisions/{request_id}, with the token that made it."
            ),
        },
        "servers": [{"url": settings.PLD_API_BASE_URL or request.build_absolute_uri("/")}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Classification": {
                    "type": "object",
                    "required": ["label", "probabilities", "prompt_version", "model_sha256"],
                    "properties": {
                        "label": {"type": "string"},
                        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                        "prompt_version": {
                            "type": "object",
                            "required": ["id", "number", "sha256"],
                            "properties": {
                                "id": {"type": "integer"},
                                "number": {"type": "integer"},
                                "sha256": {"type": "string"},
                            },
                        },
                        "model_sha256": {"type": "string"},
                        "scoring": {
                            "type": "object",
                            "required": ["backend", "exact"],
                            "properties": {
                                "backend": {"type": "string", "enum": ["llama_cpp", "server"]},
                                "exact": {"type": "boolean"},
                                "approximation": {"type": "string"},
                            },
                        },
                    },
                },
                "Decision": _DECISION_SCHEMA,
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": {"type": "string", "description": "What is wrong, in words"},
                        "code": {"type": "string"},
                        "fields": {"type": "array", "items": {"type": "string"}},
                        "request_id": {"type": ["string", "null"]},
                        "stop": {
                            "type": "object",
                            "description": "serving_stopped: the stop in force",
                            "required": ["id", "task", "since", "by", "username", "reason"],
                            "properties": {
                                "id": {"type": "integer"}, "task": {"type": "string"},
                                "since": {"type": "string", "format": "date-time"}, "by": {"type": "string"},
                                "username": {"type": "string"}, "reason": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    }


@csrf_exempt
@login_not_required  # a token or a signed-in user with a role; 401 otherwise
def openapi(request: HttpRequest) -> HttpResponse:
    """Publish the API's OpenAPI 3.1 description to token holders and signed-in users with a role."""
    user = request.user
    viewer: Any = user
    if not (user.is_authenticated and user.has_perm("rules.view_promptversion")):
        if user.is_authenticated and "Authorization" not in request.headers:
            return _error("Your account has no role that reads the API description.", status=403, code="forbidden")
        refused = _authenticate(request)
        if isinstance(refused, JsonResponse):
            return refused
        viewer = refused.user
    if request.method != "GET":
        response = _error("Use GET.", status=405, code="method_not_allowed")
        response["Allow"] = "GET"
        return response
    return JsonResponse(_openapi(request, viewer), json_dumps_params={"indent": 2})


# Load balancers probe every process, the API's own included.
_API_ROLE_PATHS = ("/api/", "/healthz", "/readyz")


class ApiOnlyMiddleware:
    """Answer every path but /api/ and the health checks with a JSON 404 in a process that serves only the API."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.PLD_WEB_ROLE == "api" and not request.path.startswith(_API_ROLE_PATHS):
            return _error("This process serves only the classify API (/api/v1/).", status=404, code="api_only")
        return self.get_response(request)


def classify_url(task: Task) -> str:
    """Return the classify endpoint's path for a task."""
    return reverse("pld-api-classify", args=[task.name])


def _api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


# The project's error handlers (pldreview/urls.py): under /api/ every error is JSON, never the HTML page.
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer a 400 raised outside a view's own checks: JSON under /api/, Django's page elsewhere."""
    if _api_path(request):
        return _error("The request could not be read.", status=400, code="bad_request")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer a 403 raised outside the API's own checks: JSON under /api/, the app's 403 page elsewhere."""
    if _api_path(request):
        return _error("Not permitted.", status=403, code="forbidden")
    return pages.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer a 404: JSON under /api/ (naming the endpoints), Django's page elsewhere."""
    if _api_path(request):
        return _error("No such endpoint: see /api/v1/openapi.json.", status=404, code="not_found")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer a 500: JSON under /api/, templates/500.html elsewhere; the error is in the server log either way."""
    if _api_path(request):
        return _error("The server could not answer this request; the error is in its log.", status=500,
                      code="server_error")
    return defaults.server_error(request)
