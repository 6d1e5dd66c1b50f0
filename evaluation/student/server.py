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
    llama_cpp.Llama._create_completion = _echo_noted(llama_cpp.Llama._create_completion)  # type: ignore[method-assign]
    llama_cpp.Llama.eval = _last_rows_unless_echoed(llama_cpp.Llama.eval)  # type: ignore[method-assign]


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


def _echo_noted(create: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Wrap ``Llama._create_completion`` so that ``eval`` knows whether this completion reads its prompt's rows.

    Only an echoed completion (``echo``: the prompt's own log-probabilities) reads rows before the prompt's last;
    every other completion, chat included, reads the prompt's last row and the rows of the tokens it generates.
    An echoed one after completions that decoded last rows only starts from an empty cache, so that every row it
    reads is decoded for it.
    """

    @functools.wraps(create)
    def create_completion(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        echo = bool(kwargs.get("echo", False))
        if echo and not getattr(self, "_pld_every_row_decoded", True):
            self.reset()
        self._pld_prompt_rows_read = echo
        try:
            yield from create(self, *args, **kwargs)
        finally:
            self._pld_prompt_rows_read = True

    return create_completion


def _last_rows_unless_echoed(evaluate: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``Llama.eval`` so that, unless an echoed completion reads them, only each batch's last token has logits.

    llama-cpp-python built with ``logits_all`` (which its server needs to return log-probabilities at all) has
    llama.cpp compute the output layer for every prompt token, 262,144 logits each for Gemma 3, and copies them
    all: 200 tokens took 0.37 s to decode against 0.14 s with the last row alone, and the completion then reads
    one row. Without weight repacking a row's numbers do not depend on what else shares its batch
    (docs/student.md), so the row kept is the one ``logits_all`` gives. Rows not decoded are never read: a
    completion reads the prompt's last row and each generated token's, each the last of its batch. With
    llama-cpp-python's state cache on (``--cache``), whose saved states an echoed completion may restore, every
    row is decoded as before.
    """

    @functools.wraps(evaluate)
    def eval_rows_read(self: Any, tokens: Any) -> None:
        if getattr(self, "_pld_prompt_rows_read", True) or not self._logits_all or self.cache is not None:
            fresh = self.n_tokens == 0
            evaluate(self, tokens)
            if fresh:
                self._pld_every_row_decoded = True
            return
        import numpy as np

        # llama_cpp.Llama.eval, with logits for each batch's last token only (set_batch always asks for that one).
        self._pld_every_row_decoded = False
        self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
        for start in range(0, len(tokens), self.n_batch):
            batch = tokens[start:start + self.n_batch]
            n_past, n_tokens = self.n_tokens, len(batch)
            self._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
            self._ctx.decode(self._batch)
            self.input_ids[n_past:n_past + n_tokens] = batch
            self.scores[n_past + n_tokens - 1, :] = np.ctypeslib.as_array(self._ctx.get_logits(),
                                                                          shape=(self._n_vocab,))
            self.n_tokens += n_tokens
            self._requires_eval = False

    return eval_rows_read


def main() -> None:
    """Run ``python -m llama_cpp.server`` with this process's arguments, the model loaded as the runner loads it."""
    load_like_the_runner()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
