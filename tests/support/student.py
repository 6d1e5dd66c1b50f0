"""The student's context size in tests: small enough to keep memory low, large enough for every prompt built."""
from __future__ import annotations

STUDENT_N_CTX = 2048
