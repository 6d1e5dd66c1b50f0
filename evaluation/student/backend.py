"""What every student offers its callers, whichever backend decides: ``StudentBackend``.

Two classes follow it: the in-process llama.cpp runner (``in_process.Student``) and the inference-server client
(``http_client.ServerStudent``). Runs, serving and admission take a StudentBackend from
``http_client.get_backend_student`` and ask which one they hold (``backend``) only where one of them cannot do
the work: warm starts are llama.cpp state, chain-of-thought needs the in-process runner.
"""
from __future__ import annotations

from typing import Any, Protocol

from evaluation.student.in_process import COT_MAX_TOKENS, ModelInfo, StudentDecision


class StudentBackend(Protocol):
    """A student that decides an example by scoring every label; both backends build the same prompt tokens."""

    backend: str  # an EvaluationRun.Backend value: "llama_cpp" or "server"
    info: ModelInfo  # the local GGUF: the in-process model, or the server's tokenizer
    n_ctx: int
    n_threads: int
    chat_template: str
    scoring_method: str  # how a label's log-probability is obtained, as the run records it
    llama_cpp_version: str

    def classify(
        self, *, rules: str, context: str = "", example: str, labels: list[str], cue: str = "Answer:",
        reuse_prefix: bool = True, prior: dict[str, float] | None = None, reasoning_cue: str = "",
        max_reasoning_tokens: int = COT_MAX_TOKENS,
    ) -> StudentDecision:
        """Decide one example; always return one of ``labels`` (``labels_check``, ``context_check`` refuse)."""

    def count_tokens(self, text: str) -> int:
        """Return how many tokens the text takes in the student's vocabulary."""

    def holds_prefix(self, rules: str) -> bool:
        """Say whether the student's cache already holds these rules (a warm start)."""

    def settings(self) -> dict[str, Any]:
        """Return what a run records about this student."""

    def close(self) -> None:
        """Free what the student holds (a llama.cpp context, an HTTP client)."""
