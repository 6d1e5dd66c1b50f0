"""The teacher client: named OpenAI-compatible endpoints, with structured output, retries, a budget and a call log.

Only the calling thread touches the database. Worker threads do HTTP (with retries) and validation;
the main thread looks up the stored calls first and stores every new reply as a ``TeacherCall``, so a
repeated request is answered from the store and rerunning a finished or crashed run costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import openai
from django.conf import settings

from rules.models import Example, TeacherCall

logger = logging.getLogger(__name__)

# Longest pause we accept from a Retry-After header; a server asking for more is treated as down.
MAX_RETRY_AFTER_SECONDS = 120.0
MAX_BACKOFF_SECONDS = 30.0


class TeacherError(Exception):
    """The teacher could not give a usable answer; ``permanent`` says whether asking again could help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        # The request a per-request error belongs to, when ask_many yields it.
        self.request: TeacherRequest | None = None


class TeacherBudgetExceeded(TeacherError):
    """The run used up its request or token budget; what was answered so far is stored."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


NO_KEY = "not-needed-locally"
# What belongs to an endpoint and so cannot be changed per run: change the endpoint instead. A key may
# travel only to the endpoint whose configuration names it.
ENDPOINT_FIELDS = frozenset({"base_url", "model", "api_key", "endpoint_name", "started_locally"})


def teacher_endpoints() -> dict[str, dict[str, str]]:
    """Return the configured teacher endpoints by name (PLD_TEACHER_ENDPOINTS)."""
    return dict(settings.PLD_TEACHER_ENDPOINTS)


def default_teacher_endpoint() -> str:
    """Return the name of the endpoint a run uses when it names none (PLD_TEACHER_DEFAULT_ENDPOINT)."""
    return str(settings.PLD_TEACHER_DEFAULT_ENDPOINT)


def teacher_endpoint_choices() -> list[tuple[str, str]]:
    """Return (name, description) for every configured endpoint, for a form's choice field."""
    choices = []
    for name, endpoint in teacher_endpoints().items():
        where = _safe_url(endpoint["base_url"]) if endpoint["base_url"] else "the local teacher started by the app"
        choices.append((name, f"{name}: {endpoint['model']} at {where}"))
    return choices


def _safe_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}" if host else base_url


@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher is and how to call it: one named endpoint of PLD_TEACHER_ENDPOINTS and run settings."""

    base_url: str
    model: str
    # Kept out of repr() so a logged or displayed config never shows the key.
    api_key: str = field(default=NO_KEY, repr=False)
    # The operator's name for the endpoint; blank only for configs built in code (tests, tools).
    endpoint_name: str = ""
    # True once an endpoint configured without a base URL is pointed at the local teacher the app runs.
    started_locally: bool = False
    temperature: float = 0.0
    timeout: float = 120.0
    max_retries: int = 4
    concurrency: int = 2
    max_requests: int = 2000
    max_tokens: int = 2_000_000
    # Cap on one reply: the bundled 270M model generates ~30 tokens/s on two cores.
    max_response_tokens: int = 200
    backoff_base: float = 0.5
    # "json_object" (llama.cpp server: schema inside response_format) or "json_schema" (OpenAI's strict style).
    schema_style: str = "auto"

    @classmethod
    def from_endpoint(cls, name: str | None = None, **overrides: Any) -> TeacherConfig:
        """Return the named endpoint (default PLD_TEACHER_DEFAULT_ENDPOINT) with per-run settings applied.

        The API key is read from the environment variable the endpoint names, at the moment of use.
        """
        name = name or default_teacher_endpoint()
        endpoints = teacher_endpoints()
        if name not in endpoints:
            known = ", ".join(endpoints) or "none"
            raise TeacherError(f"No teacher endpoint named {name!r} (configured: {known})", permanent=True)
        endpoint = endpoints[name]
        api_key = NO_KEY
        key_env = endpoint.get("api_key_env") or ""
        if key_env:
            api_key = os.environ.get(key_env, "")
            if not api_key:
                raise TeacherError(
                    f"The teacher endpoint {name!r} reads its key from ${key_env}, which is not set", permanent=True
                )
        config = cls(
            base_url=endpoint["base_url"],
            model=endpoint["model"],
            api_key=api_key,
            endpoint_name=name,
            temperature=settings.PLD_TEACHER_TEMPERATURE,
            timeout=settings.PLD_TEACHER_TIMEOUT,
            max_retries=settings.PLD_TEACHER_MAX_RETRIES,
            concurrency=settings.PLD_TEACHER_CONCURRENCY,
            max_requests=settings.PLD_TEACHER_MAX_REQUESTS,
            max_tokens=settings.PLD_TEACHER_MAX_TOKENS,
        )
        return config.with_overrides(**overrides)

    @classmethod
    def from_settings(cls, **overrides: Any) -> TeacherConfig:
        """Return the default endpoint with per-run settings applied (None or empty values are ignored)."""
        return cls.from_endpoint(None, **overrides)

    def with_overrides(self, **overrides: Any) -> TeacherConfig:
        """Return a copy with the given non-empty run settings replaced; the endpoint's own fields cannot be."""
        given = {key: value for key, value in overrides.items() if value not in (None, "")}
        fixed = ENDPOINT_FIELDS & set(given)
        if fixed:
            raise ValueError(
                f"{', '.join(sorted(fixed))} belong to the teacher endpoint; choose another endpoint instead"
            )
        return replace(self, **given)

    def on_local_teacher(self, base_url: str) -> TeacherConfig:
        """Return this config pointed at the local teacher the app runs; only for an endpoint without a base URL."""
        if self.base_url:
            raise ValueError(f"The endpoint {self.endpoint_name or self.base_url!r} is not the local teacher")
        # llama_cpp.server answers one request at a time; more in flight only adds waiting and timeouts.
        # No key travels to it: a key belongs to the endpoint configured with it.
        return replace(self, base_url=base_url, api_key=NO_KEY, concurrency=1, started_locally=True)

    @property
    def endpoint(self) -> str:
        """Return the endpoint's scheme, host and port (never credentials), as recorded on teacher output."""
        return _safe_url(self.base_url)

    @property
    def identity(self) -> dict[str, str]:
        """Return what, besides the request, decides an answer: endpoint name, base URL and model."""
        # The local teacher the app starts serves the bundled model; its loopback port may change between
        # runs without changing the answers, so it is named rather than addressed (before and after it starts).
        url = "local-teacher" if self.started_locally or not self.base_url else self.endpoint
        return {"endpoint": self.endpoint_name, "base_url": url, "model": self.model}

    @property
    def resolved_schema_style(self) -> str:
        if self.schema_style != "auto":
            return self.schema_style
        return "json_schema" if "api.openai.com" in self.base_url else "json_object"

    def public_settings(self) -> dict[str, Any]:
        """Return the settings worth recording with what the teacher produced (no API key)."""
        return {
            "temperature": self.temperature,
            "max_response_tokens": self.max_response_tokens,
            "schema_style": self.resolved_schema_style,
        }


# What a run may choose (a job's params, a command's options): the endpoint by name, and run settings.
TEACHER_RUN_PARAMS = ("temperature", "max_requests", "max_tokens", "concurrency")


def teacher_config_from_params(params: dict[str, Any]) -> TeacherConfig:
    """Return the endpoint a job's params name (``endpoint``, else the default) with its run settings applied."""
    return TeacherConfig.from_endpoint(params.get("endpoint") or None,
                                       **{name: params.get(name) for name in TEACHER_RUN_PARAMS})


def add_teacher_arguments(parser: Any) -> None:
    """Add the teacher choice and run settings to a command (extract_rules, cluster_rules, refine_rules)."""
    names = ", ".join(teacher_endpoints())
    parser.add_argument(
        "--endpoint", choices=list(teacher_endpoints()),
        help=f"Teacher endpoint by name, from PLD_TEACHER_ENDPOINTS ({names}; default {default_teacher_endpoint()})",
    )
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-requests", type=int, help="This run's request budget")
    parser.add_argument("--max-tokens", type=int, help="This run's token budget")
    parser.add_argument("--concurrency", type=int, help="Requests in flight at once")


def teacher_params_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return the teacher choice and run settings given on the command line, ready for a job's params."""
    names = ("endpoint", *TEACHER_RUN_PARAMS)
    return {name: options[name] for name in names if options.get(name) is not None}


class Budget:
    """Requests and tokens one run may spend; thread-safe because worker threads charge it."""

    def __init__(self, *, max_requests: int, max_tokens: int) -> None:
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0
        self.tokens = 0
        self._lock = threading.Lock()

    def charge_request(self) -> None:
        """Count one HTTP request, or raise TeacherBudgetExceeded when none is left."""
        with self._lock:
            if self.requests >= self.max_requests:
                raise TeacherBudgetExceeded(f"The run's budget of {self.max_requests} teacher requests is used up")
            if self.tokens >= self.max_tokens:
                raise TeacherBudgetExceeded(f"The run's budget of {self.max_tokens} teacher tokens is used up")
            self.requests += 1

    def charge_tokens(self, n: int) -> None:
        """Count tokens a reply reported."""
        with self._lock:
            self.tokens += n

    @property
    def exhausted(self) -> bool:
        return self.requests >= self.max_requests or self.tokens >= self.max_tokens


@dataclass
class TeacherRequest:
    """One structured question for the teacher; ``key`` lets the caller match the answer."""

    purpose: str
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    key: Any = None
    max_tokens: int | None = None


@dataclass
class TeacherAnswer:
    """A reply that matched its schema, with the stored call behind it."""

    request: TeacherRequest
    data: dict[str, Any]
    call: TeacherCall
    cached: bool


@dataclass(kw_only=True)
class TeacherTally:
    """What a run's questions came to: refused answers, new and stored calls, and why it stopped early."""

    n_failed: int = 0
    new_calls: int = 0
    cached_calls: int = 0
    stopped: str = ""
    # Requests answered or refused, those the teacher refused (HTTP error, broken reply), and the first refusal.
    n_requests: int = 0
    n_teacher_errors: int = 0
    first_error: str = ""

    @property
    def all_failed(self) -> bool:
        """Say whether the teacher was asked and refused every request."""
        return self.n_requests > 0 and self.n_teacher_errors >= self.n_requests

    @property
    def partial(self) -> bool:
        """Say whether some but not all requests were refused by the teacher."""
        return 0 < self.n_teacher_errors < self.n_requests

    def raise_if_all_failed(self) -> None:
        """Raise TeacherError when every request failed, naming the first reason, so the job ends Failed."""
        if self.all_failed:
            raise TeacherError(
                f"All {self.n_requests} teacher requests failed; the first said: {self.first_error}", permanent=True
            )

    def failures_note(self) -> str:
        """Return a sentence saying how many teacher requests failed, or "" when none did."""
        if not self.n_teacher_errors:
            return ""
        return (
            f"Partial: {self.n_teacher_errors} of {self.n_requests} teacher requests failed "
            f"(first: {self.first_error}); run again to retry them."
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the tally and everything a subclass adds, as plain data for a job result."""
        return {**asdict(self), "partial": self.partial}


@dataclass
class _Outcome:
    """What a worker thread brings back: the last reply and what the attempts cost."""

    completion: dict[str, Any] | None = None
    text: str = ""
    data: dict[str, Any] | None = None
    error: TeacherError | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def teacher_provenance(call: TeacherCall, examples: list[Example]) -> dict[str, Any]:
    """Return what a candidate the teacher wrote records: the endpoint and model that answered, and its examples."""
    return {
        "proposed_by_model": call.model,
        "teacher_endpoint": call.base_url,
        "teacher_endpoint_name": call.endpoint_name,
        "support": len(examples),
        "label_balance": dict(Counter(example.gold_label for example in examples)),
        "examples": examples,
    }


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Return where ``value`` breaks the JSON-schema subset we use (object, string, integer, array, enum)."""
    errors: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: missing")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors.extend(schema_errors(value[name], sub, f"{path}.{name}"))
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string"]
        if len(value.strip()) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters (blank text is refused)")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: expected an integer"]
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        for index, item in enumerate(value):
            errors.extend(schema_errors(item, schema.get("items", {}), f"{path}[{index}]"))
    return errors


def parse_reply(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse the teacher's text as JSON and check it against the schema; raise TeacherError if it does not fit."""
    try:
        # strict=False: llama.cpp's JSON grammar lets a raw newline into a string; the meaning survives.
        data = json.loads(text, strict=False)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"The teacher's reply is not valid JSON ({exc}): {text[:200]!r}", permanent=True) from None
    problems = schema_errors(data, schema)
    if problems:
        raise TeacherError("The teacher's reply does not match the schema: " + "; ".join(problems[:5]), permanent=True)
    return data


def request_body(config: TeacherConfig, request: TeacherRequest) -> dict[str, Any]:
    """Return the chat-completions body for a request: model, messages, sampling and the schema."""
    if config.resolved_schema_style == "json_schema":
        response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": request.purpose, "schema": request.schema},
        }
    else:
        response_format = {"type": "json_object", "schema": request.schema}
    return {
        "model": config.model,
        "messages": request.messages,
        "temperature": config.temperature,
        "max_tokens": request.max_tokens or config.max_response_tokens,
        "response_format": response_format,
    }


def request_hash(body: dict[str, Any], config: TeacherConfig) -> str:
    """Return the identity of a request to an endpoint: the body with the endpoint's name, base URL and model.

    An answer stored from one endpoint is therefore never replayed as another's.
    """
    identity = {**config.identity, "body": body}
    canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def teacher_request_hash(config: TeacherConfig, request: TeacherRequest) -> str:
    """Return the stored-call key of a request as the given endpoint would be asked it."""
    return request_hash(request_body(config, request), config)


def _retry_after_seconds(exc: openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Teacher:
    """Ask a teacher model structured questions, answering repeats from the stored call log."""

    def __init__(
        self,
        config: TeacherConfig,
        *,
        job: Any = None,
        budget: Budget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ) -> None:
        if not config.base_url:
            raise TeacherError("No teacher endpoint: choose one of PLD_TEACHER_ENDPOINTS or start the local teacher",
                               permanent=True)
        self.config = config
        self.job = job
        self.budget = budget or Budget(max_requests=config.max_requests, max_tokens=config.max_tokens)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        # Our own retry loop (Retry-After, jitter, budget per attempt) replaces the SDK's.
        self.client = openai.OpenAI(
            base_url=config.base_url, api_key=config.api_key, timeout=config.timeout, max_retries=0
        )
        self.new_calls = 0
        self.cached_calls = 0

    # --- requests and their identity ---------------------------------------------------------

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        return request_body(self.config, request)

    # --- the run -------------------------------------------------------------------------------

    def ask(self, request: TeacherRequest) -> TeacherAnswer:
        """Ask one question; raise TeacherError when no valid answer comes back."""
        for answer in self.ask_many([request]):
            if isinstance(answer, TeacherError):
                raise answer
            return answer
        raise TeacherError("The teacher gave no answer")  # pragma: no cover - ask_many always yields

    def ask_many(self, requests: Iterable[TeacherRequest]) -> Iterator[TeacherAnswer | TeacherError]:
        """Yield an answer (or a permanent per-request TeacherError) for each request, stored ones first.

        Raises TeacherBudgetExceeded when the budget runs out and TeacherError when the endpoint keeps
        failing; either way every answer that came back before is already stored.
        """
        pending: list[tuple[TeacherRequest, dict[str, Any], str]] = []
        for request in requests:
            body = self._body(request)
            digest = request_hash(body, self.config)
            pending.append((request, body, digest))
        stored = {
            call.request_hash: call
            for call in TeacherCall.objects.filter(request_hash__in=[d for _, _, d in pending])
        }
        to_send = []
        for request, body, digest in pending:
            call = stored.get(digest)
            if call is not None and call.response is not None:
                self.cached_calls += 1
                yield self._answer_from_call(request, call, cached=True)
            else:
                to_send.append((request, body, digest))
        if not to_send:
            return
        yield from self._send_all(to_send)

    def ask_all(
        self, requests: Iterable[TeacherRequest], *, tally: TeacherTally
    ) -> Iterator[TeacherAnswer | TeacherError]:
        """Yield each request's validated answer (parsed data and stored call) or its refusal, keeping the tally.

        A used-up budget ends the run cleanly (``tally.stopped`` says why); a refusal counts in
        ``tally.n_failed``; a teacher that keeps failing raises TeacherError with every answer so far stored.
        """
        try:
            for answer in self.ask_many(requests):
                tally.n_requests += 1
                if not isinstance(answer, TeacherAnswer):
                    tally.n_failed += 1
                    tally.n_teacher_errors += 1
                    tally.first_error = tally.first_error or answer.message
                yield answer
        except TeacherBudgetExceeded as exc:
            tally.stopped = f"{exc.message}; run again to continue (stored answers are reused)"
        finally:
            tally.new_calls = self.new_calls
            tally.cached_calls = self.cached_calls

    def _answer_from_call(self, request: TeacherRequest, call: TeacherCall, *, cached: bool) -> Any:
        # A stored invalid reply stays invalid: at the same settings the teacher would say the same again.
        try:
            data = parse_reply(call.response_text, request.schema)
        except TeacherError as exc:
            exc.request = request
            return exc
        return TeacherAnswer(request=request, data=data, call=call, cached=cached)

    def _send_all(self, to_send: list[tuple[TeacherRequest, dict[str, Any], str]]) -> Iterator[Any]:
        failure: TeacherError | None = None
        queue = list(reversed(to_send))
        in_flight: dict[Future[_Outcome], tuple[TeacherRequest, dict[str, Any], str]] = {}
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="teacher") as pool:
            try:
                while queue or in_flight:
                    while queue and failure is None and len(in_flight) < self.config.concurrency:
                        item = queue.pop()
                        in_flight[pool.submit(self._call_with_retries, item[0], item[1])] = item
                    if not in_flight:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        request, body, digest = in_flight.pop(future)
                        outcome = future.result()
                        if outcome.completion is not None:
                            call = self._store(request, body, digest, outcome)
                            yield self._answer_from_call(request, call, cached=False)
                        elif outcome.error is not None and outcome.error.permanent and not isinstance(
                            outcome.error, TeacherBudgetExceeded
                        ):
                            outcome.error.request = request
                            yield outcome.error
                        elif failure is None and outcome.error is not None:
                            # Stop sending; let what is in flight finish so its answers are stored.
                            failure = outcome.error
            finally:
                # A consumer that stops early (a cancelled job) must not leave requests queued.
                queue.clear()
        if failure is not None:
            raise failure

    def _store(self, request: TeacherRequest, body: dict[str, Any], digest: str, outcome: _Outcome) -> TeacherCall:
        call, _ = TeacherCall.objects.update_or_create(
            request_hash=digest,
            defaults={
                "purpose": request.purpose,
                "endpoint_name": self.config.endpoint_name,
                "base_url": self.config.endpoint,
                "model": self.config.model,
                "request": body,
                "response": outcome.completion,
                "response_text": outcome.text,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "latency_ms": outcome.latency_ms,
                "job": self.job,
            },
        )
        self.new_calls += 1
        return call

    # --- one request, in a worker thread (no database here) ----------------------------------

    def _backoff(self, attempt: int) -> float:
        with self._rng_lock:
            jitter = self._rng.uniform(0, self.config.backoff_base)
        return min(MAX_BACKOFF_SECONDS, self.config.backoff_base * (2**attempt) + jitter)

    def _call_with_retries(self, request: TeacherRequest, body: dict[str, Any]) -> _Outcome:
        outcome = _Outcome()
        for attempt in range(self.config.max_retries + 1):
            try:
                self.budget.charge_request()
            except TeacherBudgetExceeded as exc:
                outcome.error = exc
                return outcome
            outcome.attempts += 1
            started = time.monotonic()
            try:
                completion = self.client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
                status = exc.status_code
                outcome.errors.append(f"HTTP {status}")
                if status == 429:
                    wait_for = _retry_after_seconds(exc)
                    if wait_for is not None and wait_for > MAX_RETRY_AFTER_SECONDS:
                        outcome.error = TeacherError(f"Rate limited for {wait_for:.0f}s; try later")
                        return outcome
                    pause = wait_for if wait_for is not None else self._backoff(attempt)
                elif status >= 500 or status == 408:
                    pause = self._backoff(attempt)
                else:
                    outcome.error = TeacherError(f"The teacher refused the request (HTTP {status}): {exc}", True)
                    return outcome
            except openai.APITimeoutError:
                outcome.errors.append(f"timeout after {self.config.timeout}s")
                pause = self._backoff(attempt)
            except openai.APIConnectionError as exc:
                outcome.errors.append(f"connection error: {exc}")
                pause = self._backoff(attempt)
            else:
                outcome.latency_ms = (time.monotonic() - started) * 1000
                usage = completion.usage
                prompt_tokens = usage.prompt_tokens if usage else 0
                completion_tokens = usage.completion_tokens if usage else 0
                self.budget.charge_tokens(prompt_tokens + completion_tokens)
                outcome.prompt_tokens += prompt_tokens
                outcome.completion_tokens += completion_tokens
                outcome.completion = completion.model_dump(mode="json")
                outcome.text = (completion.choices[0].message.content or "") if completion.choices else ""
                return outcome
            if attempt < self.config.max_retries:
                logger.info("Teacher request failed (%s); retrying in %.2fs", outcome.errors[-1], pause)
                self._sleep(pause)
        outcome.error = TeacherError(
            f"The teacher at {self.config.endpoint} failed {outcome.attempts} times: " + ", ".join(outcome.errors[-3:])
        )
        return outcome

    # --- embeddings ----------------------------------------------------------------------------

    def embed(self, texts: list[str], *, model: str | None = None) -> list[list[float]]:
        """Return the endpoint's embeddings for the texts; TeacherError when it has no embeddings API."""
        body = {"model": model or self.config.model, "input": texts, "purpose": "embed"}
        digest = request_hash(body, self.config)
        call = TeacherCall.objects.filter(request_hash=digest).first()
        if call is not None and call.response is not None:
            self.cached_calls += 1
            return [list(map(float, row)) for row in call.response["embeddings"]]
        self.budget.charge_request()
        started = time.monotonic()
        try:
            reply = self.client.embeddings.create(model=body["model"], input=texts)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise TeacherError(f"The endpoint gave no embeddings: {exc}", permanent=True) from None
        vectors = [item.embedding for item in sorted(reply.data, key=lambda item: item.index)]
        tokens = reply.usage.prompt_tokens if reply.usage else 0
        self.budget.charge_tokens(tokens)
        TeacherCall.objects.update_or_create(
            request_hash=digest,
            defaults={
                "purpose": "embed",
                "endpoint_name": self.config.endpoint_name,
                "base_url": self.config.endpoint,
                "model": body["model"],
                "request": body,
                "response": {"embeddings": vectors},
                "prompt_tokens": tokens,
                "latency_ms": (time.monotonic() - started) * 1000,
                "job": self.job,
            },
        )
        self.new_calls += 1
        return vectors
