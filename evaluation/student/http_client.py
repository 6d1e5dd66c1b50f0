"""The student on an OpenAI-compatible inference server (PLD_STUDENT_BACKEND=server).

The prompt is built exactly as the in-process runner builds it (the same layout code, tokenized
by the local GGUF's vocabulary), then sent as text to ``/v1/completions``. A label's score is,
as in-process, the sum of the log-probabilities of all its tokens; each comes from the top
log-probabilities of one generated position: the position after the prompt gives every label's
first token, the position after the prompt plus a label's first t tokens gives its token t+1.

Why this method (docs/student.md, "Student backend"): top log-probabilities of a generated
position are the one thing llama.cpp's llama-server, vLLM and llama_cpp.server all return.
Prompt log-probabilities (``echo`` + ``logprobs``, vLLM's ``prompt_logprobs``) are not offered
by llama-server; llama_cpp.server computes them by sorting a vocabulary-wide row per prompt
token in Python (262,144 entries for Gemma 3, seconds per request) and needs ``logits_all``;
vLLM turns prefix caching off for requests asking for them. A score is exact when each label
token is among the position's top log-probabilities and the prompt's text reads back as the
runner's tokens; otherwise the missing token is bounded from above and the decision says it is
an approximation (``StudentDecision.approximation``), and so do the run and the API answer.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from evaluation.student.backend import StudentBackend
from evaluation.student.in_process import (
    COT_MAX_TOKENS,
    ModelInfo,
    Student,
    StudentDecision,
    StudentError,
    check_model_file,
    context_check,
    default_model_path,
    get_student,
    label_choice,
    labels_check,
)

SCORING_EXACT = "exact"
SCORING_APPROXIMATE = "approximate"


class StudentServerError(StudentError):
    """The inference server could not be reached, timed out, failed or returned no log-probabilities."""


class ServerStudent:
    """Decides like the in-process Student, with label log-probabilities from an inference server."""

    backend = "server"
    # The runner's own tokenizer calls and layout, so both backends build the same prompt tokens.
    tokenize = Student.tokenize
    _segment = Student._segment
    count_tokens = Student.count_tokens
    detokenize = Student.detokenize
    _chat_wrappers = Student._chat_wrappers
    rules_prefix = Student.rules_prefix
    layout = Student.layout
    _tail = Student._tail
    label_tokens = Student.label_tokens

    def __init__(
        self,
        info: ModelInfo,
        *,
        base_url: str,
        api_key: str,
        model: str,
        n_ctx: int,
        timeout: float,
        max_retries: int,
        top_logprobs: int,
    ) -> None:
        import llama_cpp
        import openai

        self.info = info
        self.base_url = base_url
        self.model = model
        self.n_ctx = n_ctx
        self.n_threads = 0  # the server's threads are its own
        self.timeout = timeout
        self.max_retries = max_retries
        self.top_logprobs = top_logprobs
        self.llama_cpp_version = llama_cpp.__version__
        self.scoring_method = (
            f"server: top-{top_logprobs} log-probabilities of one generated position per label token"
        )
        self._lock = threading.RLock()
        self._segments: OrderedDict[tuple[str, bool, bool], list[int]] = OrderedDict()
        self.chat_template = info.chat_template
        self._chat_parts: tuple[str, str] | None = None
        try:
            self.llm = llama_cpp.Llama(model_path=info.path, vocab_only=True, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise StudentError(f"llama.cpp could not read the vocabulary of {info.path}: {exc}") from exc
        # The client's own retries: timeouts, lost connections, 408/409/429 and 5xx, exponential backoff.
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=max_retries
        )
        self.answered_by = ""

    def close(self) -> None:
        """Close the HTTP client and the vocabulary."""
        self.client.close()
        self.llm.close()

    def holds_prefix(self, rules: str) -> bool:
        """Say False: the server's cache is its own business (no warm-start state applies)."""
        return False

    # -- requests

    def _tries(self) -> str:
        return f"{self.max_retries + 1} tr{'y' if self.max_retries == 0 else 'ies'}"

    def _pin(self, prefix: list[int], next_token: int) -> None:
        """Leave the server's cache holding exactly ``prefix`` (rules and shared context), as the runner's does.

        The runner decodes an example and its label tokens in one batch from the example's start;
        llama_cpp.server resumes after the longest prefix a request shares with its cache, which
        would be the whole prompt for every label position after the first, each then decoded in
        a batch of its own. A request for the prefix plus one token no example starts with makes
        the next request resume exactly at the example's start, so the server decodes the example
        and the label's tokens in one batch too: with weight repacking off on both sides, the rows
        then come out as the runner's (docs/student.md). Servers that cache otherwise pay one short
        request per label position.
        """
        candidates = [tok for text in (".", ",", ";") for tok in self.tokenize(text)[:1]]
        filler = next(tok for tok in candidates if tok != next_token)
        self._complete(prefix + [filler], logprobs=None)

    def _top(self, tokens: list[int]) -> tuple[dict[str, float], str, str]:
        """Return the position after ``tokens``'s top log-probabilities, a note if inexact, and who answered."""
        # The server tokenizes the text itself; it reads the runner's tokens only if the text reads back as them.
        text = self._text(tokens)
        note = ""
        if self.tokenize(text, add_bos=self._has_bos(tokens), special=True) != tokens:
            note = "the prompt's text tokenizes differently from the runner's segments"
        response = self._complete(tokens, logprobs=self.top_logprobs)
        answered_by = response.model or self.model
        self.answered_by = answered_by
        top = _top_logprobs(response)
        if top is None:
            raise StudentServerError(
                f"The student server {self.base_url} returned no log-probabilities for model {self.model}: "
                "it cannot score labels (llama_cpp.server needs --logits_all true).",
            )
        return top, note, answered_by

    def _has_bos(self, tokens: list[int]) -> bool:
        return bool(tokens) and tokens[0] == self.llm.token_bos()

    def _text(self, tokens: list[int]) -> str:
        # The server adds the BOS token itself, as llama.cpp and Hugging Face tokenizers do for this text.
        return self.detokenize(tokens[1:] if self._has_bos(tokens) else tokens, special=True)

    def _complete(self, tokens: list[int], *, logprobs: int | None) -> Any:
        """Ask the server for one token after ``tokens``; raise StudentServerError saying what went wrong."""
        import openai

        try:
            return self.client.completions.create(
                model=self.model, prompt=self._text(tokens), max_tokens=1, temperature=0.0,
                logprobs=openai.NOT_GIVEN if logprobs is None else logprobs,
            )
        except openai.APITimeoutError as exc:
            raise StudentServerError(
                f"The student server {self.base_url} did not answer within {self.timeout:g} s "
                f"({self._tries()}): {exc}", permanent=False,
            ) from exc
        except openai.APIConnectionError as exc:
            raise StudentServerError(
                f"The student server {self.base_url} could not be reached ({self._tries()}): {exc}", permanent=False
            ) from exc
        except openai.APIStatusError as exc:
            transient = exc.status_code >= 500 or exc.status_code in {408, 409, 429}
            tried = f" ({self._tries()})" if transient else ""
            raise StudentServerError(
                f"The student server {self.base_url} answered HTTP {exc.status_code}{tried}: {exc.message}",
                permanent=not transient,
            ) from exc

    def _score(
        self, prompt: list[int], label_ids: dict[str, list[int]], pin: tuple[list[int], int] | None
    ) -> tuple[dict[str, float], list[str], int, str]:
        """Return each label's total log-probability, the approximation notes, the requests made and who answered."""
        positions: dict[tuple[int, ...], tuple[dict[str, float], str, str]] = {}
        for ids in label_ids.values():
            for t in range(len(ids)):
                key = tuple(ids[:t])
                if key not in positions:
                    if pin is not None:
                        self._pin(*pin)
                    positions[key] = self._top(prompt + list(key))
        scores: dict[str, float] = {}
        notes: list[str] = []
        for name, ids in label_ids.items():
            total = 0.0
            for t, token in enumerate(ids):
                top, note, _ = positions[tuple(ids[:t])]
                if note and note not in notes:
                    notes.append(note)
                piece = self.detokenize([token])
                if piece in top:
                    total += top[piece]
                    continue
                # Not among the top k: its log-probability is at most the k-th's and at most the mass left.
                left = 1.0 - sum(math.exp(v) for v in top.values())
                total += min(min(top.values()), math.log(max(left, 1e-300)))
                notes.append(f"{name}: token {piece!r} is not among the server's top {self.top_logprobs} "
                             "(scored at its upper bound)")
            scores[name] = total
        answered_by = ", ".join(sorted({model for _, _, model in positions.values()}))
        return scores, notes, len(positions), answered_by

    def classify(
        self,
        *,
        rules: str,
        context: str = "",
        example: str,
        labels: list[str],
        cue: str = "Answer:",
        reuse_prefix: bool = True,
        prior: dict[str, float] | None = None,
        reasoning_cue: str = "",
        max_reasoning_tokens: int = COT_MAX_TOKENS,
    ) -> StudentDecision:
        """Decide one example by scoring every label on the server; always returns one of ``labels``."""
        labels_check(labels)
        if reasoning_cue:
            raise StudentError(
                "Chain-of-thought (cot) runs need the in-process student (PLD_STUDENT_BACKEND=llama_cpp)."
            )
        started = time.perf_counter()
        segments = self.layout(rules=rules, context=context, example=example, cue=cue)
        prompt = [tok for seg in segments for tok in seg]
        label_ids = {name: self.label_tokens(name) for name in labels}
        needed = len(prompt) + sum(len(ids) for ids in label_ids.values())
        context_check(needed=needed, n_ctx=self.n_ctx)
        pin = (segments[0] + segments[1], segments[2][0]) if segments[2] else None
        logprobs, notes, requests, answered_by = self._score(prompt, label_ids, pin)
        label, probabilities = label_choice(logprobs, labels, prior)
        return StudentDecision(
            label=label,
            probabilities=probabilities,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            prompt_tokens=len(prompt),
            # What the requests sent (the server decodes less where its cache holds the start).
            tokens_processed=requests * (len(prompt) + (len(pin[0]) + 1 if pin else 0))
            + sum(len(ids) for ids in label_ids.values()),
            logprobs=logprobs,
            prefix="server",
            approximation="; ".join(notes),
            answered_by=answered_by,
        )

    def settings(self) -> dict[str, Any]:
        """Return what a run records about this student."""
        return {
            "backend": self.backend,
            "base_url": self.base_url,
            "model": self.model,
            "tokenizer_path": self.info.path,
            "model_sha256": self.info.sha256,
            "scoring": self.scoring_method,
        }


def _top_logprobs(response: Any) -> dict[str, float] | None:
    """Read the first generated position's top log-probabilities from a completions answer."""
    if not response.choices or response.choices[0].logprobs is None:
        return None
    logprobs = response.choices[0].logprobs
    legacy = getattr(logprobs, "top_logprobs", None)
    if legacy and legacy[0]:
        return {str(k): float(v) for k, v in legacy[0].items()}
    # llama-server's newer answers use the chat shape: content[i].top_logprobs = [{token, logprob}].
    content = (logprobs.model_extra or {}).get("content")
    if content and content[0].get("top_logprobs"):
        return {str(item["token"]): float(item["logprob"]) for item in content[0]["top_logprobs"]}
    return None


_SERVER_STUDENTS: dict[tuple[str, str, str], ServerStudent] = {}
_SERVER_LOCK = threading.Lock()


@atexit.register
def _close_server_students() -> None:
    # As for the in-process students: free the vocabularies while llama_cpp is still loaded.
    for student in list(_SERVER_STUDENTS.values()):
        student.close()
    _SERVER_STUDENTS.clear()


def get_server_student(
    model_path: str | None = None, *, base_url: str | None = None, model: str | None = None
) -> ServerStudent:
    """Return the server student for a URL and model, tokenizing with the local GGUF; one per process."""
    from django.conf import settings

    path = str(Path(model_path).expanduser()) if model_path else default_model_path()
    url = base_url or settings.PLD_STUDENT_BASE_URL
    name = model or settings.PLD_STUDENT_MODEL
    if not url or not name:
        raise StudentServerError("The server backend needs PLD_STUDENT_BASE_URL and PLD_STUDENT_MODEL.")
    key = (path, url, name)
    with _SERVER_LOCK:
        student = _SERVER_STUDENTS.get(key)
        if student is None:
            student = ServerStudent(
                check_model_file(path), base_url=url, api_key=settings.PLD_STUDENT_API_KEY, model=name,
                n_ctx=settings.PLD_STUDENT_N_CTX, timeout=settings.PLD_STUDENT_TIMEOUT,
                max_retries=settings.PLD_STUDENT_MAX_RETRIES, top_logprobs=settings.PLD_STUDENT_TOP_LOGPROBS,
            )
            _SERVER_STUDENTS[key] = student
        return student


def get_backend_student(
    model_path: str | None = None, *, n_ctx: int | None = None, backend: str | None = None,
    base_url: str | None = None, model: str | None = None,
) -> StudentBackend:
    """Return the student of the configured backend (PLD_STUDENT_BACKEND), or of the one named."""
    from django.conf import settings

    if (backend or settings.PLD_STUDENT_BACKEND) == "server":
        return get_server_student(model_path, base_url=base_url, model=model)
    return get_student(model_path, n_ctx=n_ctx)
