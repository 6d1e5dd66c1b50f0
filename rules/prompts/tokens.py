"""Count a prompt's tokens with the student model's own tokenizer.

Only the vocabulary is loaded (``vocab_only=True``): no weights, no context, well under a second,
and it is kept for the life of the process. The file is the student's (``rules.student_model``).
"""
from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.student_model import ModelFileError, file_sha256, file_version, student_model_path

_LOCK = threading.Lock()
_VOCABS: dict[tuple[str, int, int], tuple[Any, str]] = {}


@atexit.register
def _close_vocabs() -> None:
    # Closed while llama_cpp is still loaded; at interpreter teardown its destructor would fail.
    for llm, _name in list(_VOCABS.values()):
        llm.close()
    _VOCABS.clear()


class TokenizerError(ModelFileError):
    """The student model file could not be found or its vocabulary could not be loaded."""


@dataclass(frozen=True)
class TokenCount:
    """How many tokens a text is, and which model file's tokenizer said so."""

    n_tokens: int
    tokenizer: str


def _vocab(path: Path) -> tuple[Any, str]:
    if not path.is_file():
        raise TokenizerError(f"The student model file {path} does not exist.")
    key = file_version(path)
    with _LOCK:
        if key not in _VOCABS:
            import llama_cpp

            try:
                llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise TokenizerError(f"llama.cpp could not read the vocabulary of {path}: {exc}") from exc
            _VOCABS[key] = (llm, f"{path.name} sha256:{file_sha256(path)[:12]}")
        return _VOCABS[key]


def count_tokens(text: str, *, model_path: str | Path | None = None) -> TokenCount:
    """Count the tokens of a text as the student model reads it (no BOS token)."""
    try:
        path = Path(model_path) if model_path else student_model_path()
    except ModelFileError as exc:
        raise TokenizerError(str(exc)) from exc
    llm, name = _vocab(path)
    n_tokens = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
    return TokenCount(n_tokens=n_tokens, tokenizer=name)
