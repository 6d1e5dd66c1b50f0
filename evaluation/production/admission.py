"""Admission control and readiness for the classify API's process (docs/production.md, "Admission control").

The student decides one call at a time per process. Without a bound every gunicorn thread ends up waiting for it,
and then everything else — a token over its rate limit, a refusal, a health check, a page in a process that serves
both — waits in gunicorn's queue behind the model. So a process lets at most ``PLD_API_MAX_QUEUE`` calls wait while
one is decided and answers the next one 503 with ``Retry-After`` at once, and the admitted calls take their turns
in the order they came: accepted calls wait at most (bound + 1) decisions, their own included, and the process's
other threads stay free for answers that need no model.

Readiness: a process that decides (PLD_WEB_ROLE all or api, in-process student) is ready once its student is loaded
and, with PLD_STUDENT_PRELOAD, the production versions' rules prefixes are held; every process needs its database.
"""
from __future__ import annotations

import logging
import math
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from evaluation.models import ApiToken
from evaluation.production.api_tokens import TokenError, api_token_rate_check, api_token_rate_limited
from pldreview.heap import heap_freeze

logger = logging.getLogger(__name__)

# A full queue's Retry-After is drawn from base .. RETRY_SPREAD x base seconds (ModelQueue._retry_after).
RETRY_SPREAD = 5


class QueueFull(Exception):
    """This process already has its bound of classify calls waiting for the student; ``retry_after`` in seconds."""

    def __init__(self, *, in_flight: int, bound: int, retry_after: int) -> None:
        super().__init__(f"{in_flight} calls are in flight; the queue holds {bound} besides the one decided.")
        self.in_flight = in_flight
        self.bound = bound
        self.retry_after = retry_after


class ModelQueue:
    """Count the calls of this process that hold or wait for the student; refuse one past the bound; give the
    admitted ones their turns in the order they came.

    The order matters: the student's own lock is not fair, so without turns a call admitted early could be
    overtaken by calls admitted after it, again and again, and "at most (bound + 1) decisions" would not hold.
    """

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._in_flight = 0
        # A ticket per admitted call; the one whose ticket is ``_serving`` holds the turn.
        self._next_ticket = 0
        self._serving = 0
        # How long recent admitted calls took, waiting included: what a refused client should wait.
        self._recent_s: deque[float] = deque(maxlen=32)

    @property
    def in_flight(self) -> int:
        """Return how many calls hold or wait for the student now."""
        return self._in_flight

    def _retry_after(self) -> int:
        typical = statistics.median(self._recent_s) if self._recent_s else 1.0
        base = max(1, math.ceil(typical))
        # Spread over base..5 x base: Retry-After is whole seconds, so clients refused together and told the same
        # number would come back together, a second apart, for as long as the queue stays full, and each burst of
        # refusals takes the cores from the decision under way. Five: a crowd of 16 gets a turn each about every
        # 3 s, the spread's mean, and 1..3 left half the refusals (docs/benchmarks.md, "Refusals spread").
        return random.randint(base, RETRY_SPREAD * base)

    def refuse_if_full(self, *, bound: int | None = None) -> None:
        """Raise QueueFull now if a call arriving now would be refused: the cheap refusal, before the body is read.

        Only a first look: ``slot`` decides, so a place freed or taken in between is still counted right."""
        with self._turns:
            self._refuse_past(bound)

    def _refuse_past(self, bound: int | None) -> None:
        # With the lock held: the one check of both doors, the first look and the place itself.
        bound = settings.PLD_API_MAX_QUEUE if bound is None else bound
        if self._in_flight > bound:
            raise QueueFull(in_flight=self._in_flight, bound=bound, retry_after=self._retry_after())

    @contextmanager
    def slot(self, *, bound: int | None = None) -> Iterator[None]:
        """Hold a place among the calls that may wait for the student, or raise QueueFull at once; the body runs
        when every call admitted before this one has finished its own."""
        started = time.perf_counter()
        with self._turns:
            self._refuse_past(bound)
            self._in_flight += 1
            ticket = self._next_ticket
            self._next_ticket += 1
            self._turns.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._turns:
                self._in_flight -= 1
                self._serving += 1
                self._recent_s.append(time.perf_counter() - started)
                self._turns.notify_all()


MODEL_QUEUE = ModelQueue()


def model_queue_slot() -> Any:
    """Return a context manager holding one of this process's places in the student's queue (QueueFull if none)."""
    return MODEL_QUEUE.slot()


def model_queue_refuse_if_full() -> None:
    """Raise QueueFull at once if this process's queue for the student is full (``ModelQueue.refuse_if_full``)."""
    MODEL_QUEUE.refuse_if_full()


# --- the rate limit, remembered ----------------------------------------------------------------------------

# Tokens this process saw over their limit, by hash (unique for ever, unlike an id): (clock minute, the limit
# then). A count only grows within its minute, so until the minute ends the answer stays 429; asking the database
# again would cost a write (the upsert) that on SQLite queues behind every decision being logged, which is what
# made a limited token's 429 slow.
_OVER_RATE: dict[str, tuple[datetime, int]] = {}
_OVER_RATE_LOCK = threading.Lock()


def token_rate_check(*, token: ApiToken, now: datetime | None = None) -> None:
    """Count one request against the token's rate (api_token_rate_check) unless this process already saw it over
    its limit this minute: then raise the same 429 at once, without touching the database."""
    now = now or timezone.now()
    window = now.replace(second=0, microsecond=0)
    with _OVER_RATE_LOCK:
        remembered = _OVER_RATE.get(token.token_hash)
    # A changed limit (an Admin raised it) is asked of the database again.
    if remembered == (window, token.rate_limit):
        raise api_token_rate_limited(token=token, now=now)
    try:
        api_token_rate_check(token=token, now=now)
    except TokenError as exc:
        if exc.status == 429:
            with _OVER_RATE_LOCK:
                for key in [key for key, (start, _limit) in _OVER_RATE.items() if start < window]:
                    del _OVER_RATE[key]
                _OVER_RATE[token.token_hash] = (window, token.rate_limit)
        raise


# --- readiness ---------------------------------------------------------------------------------------------


@dataclass
class _Readiness:
    # "lazy": nothing loads at start (no PLD_STUDENT_PRELOAD); "starting", "ready" or "failed" while preloading.
    state: str = "lazy"
    reason: str = ""
    detail: str = ""
    prefixes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_READINESS = _Readiness()


def _public_detail(message: str) -> str:
    # /readyz answers without a login: name the model file, never the directories it sits in.
    from rules.student_model import ModelFileError, student_model_path

    try:
        path = student_model_path()
    except ModelFileError:
        return message
    return message.replace(str(path), path.name)


def readiness_starting() -> None:
    """Record that this process has begun loading its student and restoring the production prefixes."""
    with _READINESS.lock:
        _READINESS.state, _READINESS.reason, _READINESS.detail = "starting", "starting", ""


def readiness_ready(*, prefixes: int) -> None:
    """Record that the student is loaded and holds (or restored) the rules prefixes of ``prefixes`` versions."""
    with _READINESS.lock:
        _READINESS.state, _READINESS.reason, _READINESS.detail = "ready", "", ""
        _READINESS.prefixes = prefixes


def readiness_failed(*, reason: str, detail: str) -> None:
    """Record why this process cannot decide (``reason`` a stable code, ``detail`` in words, without paths)."""
    with _READINESS.lock:
        _READINESS.state, _READINESS.reason, _READINESS.detail = "failed", reason, _public_detail(detail)


def readiness_reset() -> None:
    """Forget what the preload recorded (tests; a process that loads lazily again)."""
    with _READINESS.lock:
        _READINESS.state, _READINESS.reason, _READINESS.detail, _READINESS.prefixes = "lazy", "", "", 0


def student_preload_for_readiness() -> None:
    """Load the student and restore the production prefixes, recording the outcome for /readyz."""
    from evaluation.student.in_process import StudentError, get_student
    from evaluation.student.warm import student_preload

    readiness_starting()
    try:
        # Loaded first and on its own: with no version in production the preload loads nothing, and a truncated
        # or foreign model file must still keep the process from saying it is ready.
        get_student()
        lines = student_preload(save=True)
    except StudentError as exc:
        logger.error("The student model is unusable: %s", exc.message)
        readiness_failed(reason="model_unusable", detail=exc.message)
        return
    except Exception as exc:  # noqa: BLE001 - any failure keeps the process out of rotation, with the cause logged
        logger.exception("Preloading the student failed")
        readiness_failed(reason="preload_failed", detail=f"Preloading the student failed ({type(exc).__name__}).")
        return
    # What the preload loaded stays for the process's life: out of the collector's walks (pldreview/heap.py).
    heap_freeze()
    readiness_ready(prefixes=len(lines))


def _database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.exception("/readyz: the database did not answer")
        return False
    return True


def _model_check() -> tuple[dict[str, Any], str, str]:
    """Return what /readyz says about the student, and a failure (reason, detail), empty when usable."""
    from evaluation.student.http_client import get_backend_student
    from evaluation.student.in_process import StudentError

    if settings.PLD_WEB_ROLE == "pages":
        return {"model": "not served here"}, "", ""
    if settings.PLD_STUDENT_BACKEND == "llama_cpp" and settings.PLD_STUDENT_PRELOAD:
        with _READINESS.lock:
            state, reason, detail, prefixes = (_READINESS.state, _READINESS.reason, _READINESS.detail,
                                               _READINESS.prefixes)
        if state == "ready":
            return {"model": "loaded", "prefixes": f"{prefixes} production version(s) held"}, "", ""
        if state == "failed":
            return {"model": "unusable"}, reason, detail
        return {"model": "loading"}, "starting", "The student is loading and restoring the production prefixes."
    try:
        # Loaded once per process (cached): the first probe of a lazily loading process pays for it.
        student = get_backend_student()
    except StudentError as exc:
        return {"model": "unusable"}, "model_unusable", _public_detail(exc.message)
    where = "inference server" if student.backend == "server" else "loaded"
    return {"model": where, "prefixes": "computed at each version's first call"}, "", ""


def readiness_check() -> tuple[bool, dict[str, Any]]:
    """Say whether this process can serve: its database answers and, where it decides, its student is usable."""
    checks, reason, detail = _model_check()
    database = _database_reachable()
    checks["database"] = "reachable" if database else "unreachable"
    if not reason and not database:
        reason, detail = "database_unreachable", "The database did not answer."
    body: dict[str, Any] = {"ready": not reason, "role": settings.PLD_WEB_ROLE, "checks": checks}
    if reason:
        body.update(reason=reason, detail=detail)
    return not reason, body


def student_preload_in_background() -> threading.Thread:
    """Start the student's preload in a daemon thread (at a process's start; requests wait on the student's lock)."""

    def target() -> None:
        from django.apps import apps

        # Started from AppConfig.ready(): wait until every app is ready before the first query.
        apps.ready_event.wait()
        # Records the outcome for /readyz: an unusable model keeps the process out of rotation, with its reason.
        student_preload_for_readiness()

    thread = threading.Thread(target=target, name="pld-student-preload", daemon=True)
    thread.start()
    return thread
