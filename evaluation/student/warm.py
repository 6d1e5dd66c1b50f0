"""Warm starts: the student's state after a rule prefix, saved once and restored by new processes.

After a restart the first decision used to pay for the whole rule prompt again (7.7 s at 4,677
rule tokens here). A saved state restores in tens of milliseconds instead. A state file is only
ever used when it is exactly what this process would compute itself:

- its key (model SHA-256, SHA-256 of the rules text, the context settings, llama-cpp-python's
  version) must equal this process's, and its payload must match the SHA-256 in its header;
- when it is saved, a probe example is decided both from the recomputed prefix and from the
  restored state; if the probabilities differ at all (> 1e-6), the file records why and no
  process ever restores it. A restore that changed a decision would be worse than a slow call.

A stale, corrupt or refused file is skipped with a log line; the decision then recomputes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from evaluation.student.in_process import Student, StudentError
from pldreview.jobs import JobProgress

logger = logging.getLogger(__name__)

JOB_KIND = "student_state_save"
FORMAT = "pld-student-state/1"
# A probe both ways must agree to this much (the bar for an exact restore).
MAX_PROBE_DIFF = 1e-6
PROBE_EXAMPLE = "Premise: The Recipient shall not disclose Confidential Information.\nHypothesis: It may be shared."
PROBE_LABELS = ["yes", "no", "unclear"]

# Files found unusable in this process, by (path, mtime, size): they are not read again at every call.
_REFUSED: set[tuple[str, int, int]] = set()
_REFUSED_LOCK = threading.Lock()


@dataclass(frozen=True)
class SavedState:
    """What student_state_save did: where the file is, and whether it may be used (and if not, why)."""

    path: Path
    usable: bool
    reason: str
    size: int
    probe_max_diff: float


def state_dir() -> Path:
    """Return the directory that holds saved student states."""
    return Path(settings.PLD_STUDENT_STATE_DIR)


def state_key(*, student: Student, rules_text: str) -> dict[str, Any]:
    """Return what a saved state must match to be restored into this student."""
    import llama_cpp

    return {
        "format": FORMAT,
        "model_sha256": student.info.sha256,
        "prompt_sha256": hashlib.sha256(rules_text.encode("utf-8")).hexdigest(),
        "settings": student.state_settings(),
        "llama_cpp_version": llama_cpp.__version__,
    }


def state_path(*, student: Student, rules_text: str) -> Path:
    """Return the file a state for these rules and this student lives in."""
    key = state_key(student=student, rules_text=rules_text)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return state_dir() / f"{digest[:32]}.state"


def _probe(student: Student, rules_text: str) -> dict[str, float]:
    decision = student.classify(rules=rules_text, example=PROBE_EXAMPLE, labels=PROBE_LABELS)
    return decision.logprobs


def _write(path: Path, header: dict[str, Any], payload: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        fh.write(payload)
    os.replace(tmp, path)  # readers see the old file or the whole new one, never half of it


def student_state_save(*, student: Student, rules_text: str) -> SavedState:
    """Save the student's state after these rules, checked on a probe example; return what was saved."""
    key = state_key(student=student, rules_text=rules_text)
    path = state_path(student=student, rules_text=rules_text)
    payload = student.save_prefix_state(rules_text)
    recomputed = _probe(student, rules_text)
    student.restore_prefix_state(rules_text, payload)
    restored = _probe(student, rules_text)
    diff = max(abs(recomputed[name] - restored[name]) for name in PROBE_LABELS)
    usable = diff <= MAX_PROBE_DIFF
    reason = "" if usable else (
        f"a probe example scored differently after the restore (log-probabilities differ by {diff:.3g}); "
        "this state is never restored"
    )
    header = {
        **key,
        "usable": usable,
        "reason": reason,
        "probe_max_diff": diff,
        "payload_sha256": hashlib.sha256(payload).hexdigest() if usable else "",
        "payload_size": len(payload) if usable else 0,
        "prefix_tokens": len(student.rules_prefix(rules_text)),
    }
    _write(path, header, payload if usable else b"")
    if not usable:
        logger.warning("Student state %s refused: %s", path, reason)
    return SavedState(path=path, usable=usable, reason=reason, size=len(payload), probe_max_diff=diff)


def _read(path: Path, key: dict[str, Any]) -> bytes:
    """Return a state file's payload, or raise ValueError saying why it must not be used."""
    with path.open("rb") as fh:
        line = fh.readline(64 * 1024)
        try:
            header = json.loads(line)
        except ValueError:
            raise ValueError("its header is not JSON (corrupt file)") from None
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object (corrupt file)")
        for name, value in key.items():
            if header.get(name) != value:
                raise ValueError(f"it was saved for another {name} ({header.get(name)!r}, here {value!r})")
        if not header.get("usable"):
            raise ValueError(f"it was refused when saved: {header.get('reason') or 'no reason recorded'}")
        payload = fh.read()
    if len(payload) != header.get("payload_size") or hashlib.sha256(payload).hexdigest() != header.get(
        "payload_sha256"
    ):
        raise ValueError("its payload does not match the SHA-256 in its header (corrupt or cut short)")
    return payload


def student_state_restore(*, student: Student, rules_text: str) -> bool:
    """Restore the saved state for these rules if one fits this student exactly; say whether it did."""
    if student.holds_prefix(rules_text):
        return False
    path = state_path(student=student, rules_text=rules_text)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    mark = (str(path), stat.st_mtime_ns, stat.st_size)
    with _REFUSED_LOCK:
        if mark in _REFUSED:
            return False
    try:
        payload = _read(path, state_key(student=student, rules_text=rules_text))
        student.restore_prefix_state(rules_text, payload)
    except (OSError, ValueError, StudentError) as exc:
        reason = exc.message if isinstance(exc, StudentError) else str(exc)
        logger.warning("Student state %s not used: %s; the rules prefix is recomputed.", path, reason)
        with _REFUSED_LOCK:
            _REFUSED.add(mark)
        return False
    logger.info("Student state %s restored (%d bytes).", path, len(payload))
    return True


def student_warm_start(*, student: Student, rules_text: str, save: bool = True) -> str:
    """Make the student hold these rules: restore a saved state, else (with save) compute and save one.

    Returns "held", "restored", "saved" or "recomputed (…why the state was refused)" — or "absent"
    without save.
    """
    if student.holds_prefix(rules_text):
        return "held"
    if student_state_restore(student=student, rules_text=rules_text):
        return "restored"
    if not save:
        return "absent"
    saved = student_state_save(student=student, rules_text=rules_text)
    return "saved" if saved.usable else f"recomputed ({saved.reason})"


def student_preload(*, tasks: Any = None, version: Any = None, save: bool = True) -> list[str]:
    """Restore (or compute and save) the states of production versions' rules; return one line per version."""
    from evaluation.student.in_process import get_student
    from evaluation.student.prompts import pld_rules
    from rules.models import PromptVersion

    if version is not None:
        versions = [version]
    else:
        in_production = PromptVersion.objects.in_production()
        if tasks:
            in_production = in_production.filter(task__in=tasks)
        versions = list(in_production.order_by("task__name"))
    if not versions:
        return []
    student = get_student()
    lines = []
    for each in versions:
        rules_text = pld_rules(task=each.task, prompt_text=each.text)
        outcome = student_warm_start(student=student, rules_text=rules_text, save=save)
        path = state_path(student=student, rules_text=rules_text)
        lines.append(f"{each.task.name} v{each.number}: {outcome} ({path})")
        logger.info("Student warm start for %s v%s: %s", each.task.name, each.number, outcome)
    return lines


def student_state_save_job(job: Any, progress: JobProgress) -> dict[str, Any]:
    """Job handler: save the warm-start state of the prompt version named in the job's params."""
    from rules.models import PromptVersion

    version = PromptVersion.objects.select_related("task").get(pk=job.params["prompt_version_id"])
    progress.note(f"Saving the student's state after the rules of {version}")
    return {"lines": student_preload(version=version, save=True)}
