"""How this project loads a GGUF into llama.cpp: without extra buffer types (no weight repacking, no AMX tiles).

One home for the setting (``rules`` is the lowest app that loads a model; ``evaluation`` imports it), for two
measured reasons:

- On this workplace's AMX-capable Intel Xeon, in its sandbox, ``llama_cpp.Llama`` with llama.cpp's default load
  settings died with SIGSEGV at its first decode, and so did ``python -m llama_cpp.server`` at its first completion
  (2026-12-07); without extra buffer types both run.
- Repacking makes a token's numbers depend on how many tokens share its batch (docs/student.md), which the
  runner and a server decoding one label position per request must not.

``python -m rules.llama_server ARGS`` is ``python -m llama_cpp.server ARGS`` with this setting (the local teacher).
"""
from __future__ import annotations

from typing import Any


def model_params() -> Any:
    """Return llama.cpp's model load settings: its defaults, without extra buffer types (no weight repacking)."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False
    return params


def load_plainly() -> None:
    """Make every ``llama_cpp.Llama`` this process creates load its model with ``model_params``."""
    import llama_cpp.llama_cpp as llama_lib

    # Llama.__init__ asks the submodule for its defaults; the package's own name still holds the original.
    llama_lib.llama_model_default_params = model_params
