"""Serve the student over HTTP computing exactly as the in-process runner: ``python -m evaluation.student.server``.

It runs llama_cpp.server itself (its app and every one of its options) with the two model load
settings its options cannot set and the runner uses: no weight repacking (``evaluation.student.in_process.
model_params``: a row's numbers then do not depend on its batch) and the full sliding-window cache
(Gemma 3's SWA layers keep every cell). With them, ``PLD_STUDENT_BACKEND=server`` gives the
runner's probabilities (tests/evaluation/test_student_server.py); llama.cpp's own ``llama-server``
gets the same with ``--no-repack --swa-full`` (docs/student.md).

    python -m evaluation.student.server --model PATH --model_alias pld-student --n_ctx 16384 --port 8090
"""
from __future__ import annotations

import functools
import runpy
import sys
from collections.abc import Callable, Iterator
from typing import Any


def load_like_the_runner() -> None:
    """Make every llama_cpp.Llama this process creates load its model and cache as the runner does."""
    import llama_cpp

    from rules.llama_loading import load_plainly

    load_plainly()  # the runner's load settings (evaluation.student.in_process.model_params delegates there too)
    init = llama_cpp.Llama.__init__

    @functools.wraps(init)
    def init_with_full_swa(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("swa_full", True)
        init(self, *args, **kwargs)

    llama_cpp.Llama.__init__ = init_with_full_swa  # type: ignore[method-assign]
    llama_cpp.Llama.logits_to_logprobs = staticmethod(_logprobs_of_rows_read(llama_cpp.Llama.logits_to_logprobs))


class _RowsLogprobs:
    """The log-probabilities of a matrix of logits, computed only for the rows that are read, each row a list.

    Lists of Python floats, not numpy rows: the completion then sorts each row's 262,144 (log-probability, token)
    pairs, which takes 0.16 s with floats and 0.26 s with numpy scalars. The values are the same (a float32
    converts to a float exactly), and so is the order.
    """

    def __init__(self, compute: Callable[..., Any], logits: Any, axis: int) -> None:
        self.compute, self.logits, self.axis = compute, logits, axis

    def __getitem__(self, rows: Any) -> Any:
        return self.compute(self.logits[rows], self.axis).tolist()

    def __len__(self) -> int:
        return len(self.logits)

    def __iter__(self) -> Iterator[Any]:
        return (self.compute(row, self.axis).tolist() for row in self.logits)


def _logprobs_of_rows_read(compute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``Llama.logits_to_logprobs`` so that a matrix's rows are computed when read, one vector at once.

    A completion asking for log-probabilities makes llama-cpp-python compute the log-softmax of every row in its
    context (the whole prompt: hundreds of rows of 262,144 logits for Gemma 3) and then keep the rows after the
    prompt: about 1-2 s per request here, against 2 ms for the rows kept (docs/student.md). A row's numbers do not
    depend on the other rows (the softmax runs along each row), so they come out bit for bit the same
    (tests/evaluation/test_student_server.py).
    """

    @functools.wraps(compute)
    def logits_to_logprobs(logits: Any, axis: int = -1) -> Any:
        if getattr(logits, "ndim", 1) == 2 and axis in (-1, 1):
            return _RowsLogprobs(compute, logits, axis)
        return compute(logits, axis)

    return logits_to_logprobs


def main() -> None:
    """Run ``python -m llama_cpp.server`` with this process's arguments, the model loaded as the runner loads it."""
    load_like_the_runner()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
