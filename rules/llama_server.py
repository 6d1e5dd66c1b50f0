"""``python -m rules.llama_server ARGS``: ``python -m llama_cpp.server ARGS`` with the model loaded plainly.

The local teacher runs through it: its app and every one of its options are llama_cpp.server's own; only the model
load settings are this project's (``rules.llama_loading``: no extra buffer types), without which
llama.cpp crashed on this workplace's AMX-capable CPUs at the first completion.
"""
from __future__ import annotations

import runpy
import sys

from rules.llama_loading import load_plainly


def main() -> None:
    """Run ``python -m llama_cpp.server`` with this process's arguments, the model loaded plainly."""
    load_plainly()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
