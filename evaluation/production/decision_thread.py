"""The classify API's decisions run on one thread per process, below the request threads in the CPU's order.

The student keeps both cores busy while it decides. A request thread that only has to answer — a 429, a full
queue's 503, a health check, the checks of the next call — then waited for a share of a core beside the
model's threads at the same priority, and took three times its CPU in wall time (docs/benchmarks.md). The
CPU those answers need is the same whichever runs first, so the model loses no more by letting them go first,
and they come back at once. Linux gives each thread its own nice value; this thread raises its own by
``PLD_DECISION_NICE`` when it starts, and the threads llama.cpp starts from it (OpenMP) inherit it.

Only the student's work runs here (restoring a rules prefix, deciding): every database read stays in the request
thread, in the request's own connection and transaction.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()
# (thread id, nice value) of the decision thread once it has started; the nice value is None off Linux.
_STARTED: tuple[int, int | None] | None = None


def _lower_own_priority() -> None:
    global _STARTED
    tid = threading.get_native_id()
    if sys.platform != "linux":
        # Elsewhere PRIO_PROCESS names a whole process, not a thread: the decision thread keeps its priority.
        _STARTED = (tid, None)
        return
    if settings.PLD_DECISION_NICE:
        try:
            os.setpriority(os.PRIO_PROCESS, tid,
                           min(19, os.getpriority(os.PRIO_PROCESS, tid) + settings.PLD_DECISION_NICE))
        except OSError as exc:  # a sandbox that refuses it: decide at the request threads' priority
            logger.warning("The decision thread keeps its priority: %s", exc)
    _STARTED = (tid, os.getpriority(os.PRIO_PROCESS, tid))


def decision_thread_started() -> tuple[int, int | None] | None:
    """Return the decision thread's (thread id, nice value), or None before this process's first decision."""
    return _STARTED


def decision_thread_run(work: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """Run ``work`` on this process's decision thread and return its result (or raise its exception)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pld-decision",
                                           initializer=_lower_own_priority)
        executor = _EXECUTOR
    return executor.submit(work, *args, **kwargs).result()
