"""Process ids for tests: one that surely belonged to a process that has ended."""
from __future__ import annotations

import subprocess
import sys


def dead_pid() -> int:
    """Return the pid of a process that has already exited (as a crashed worker's would be)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
