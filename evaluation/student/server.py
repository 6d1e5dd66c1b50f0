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


def main() -> None:
    """Run ``python -m llama_cpp.server`` with this process's arguments, the model loaded as the runner loads it."""
    load_like_the_runner()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
