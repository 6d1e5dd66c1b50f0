"""Benchmark an electronic signature: what re-entering the password costs a reviewer per decision.

A benchmark, not a test: it prints one JSON object (the last line). It signs with the production
password hasher (Django's default PBKDF2, not the tests' MD5) against a throwaway SQLite database,
so the figure is the server-side time of ``signature_sign`` (password check + insert + ledger entry)
that a reviewer waits on each Ctrl+Enter. Run it from the project root:

    .venv/bin/python benchmarks/signing.py [--n 20]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="signings to time")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pld-signing-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pldreview.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 40)
    os.environ["DATABASE_URL"] = f"sqlite:///{work}/bench.sqlite3"
    os.environ["PLD_VAR_DIR"] = work

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from pldreview.signatures import Meaning, content_sha256, signature_sign

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="a long benchmark password")
    timings = []
    for i in range(args.n):
        start = time.perf_counter()
        signature_sign(user=user, password="a long benchmark password", meaning=Meaning.APPROVED, reason="",
                       content_sha256=content_sha256({"i": i}))
        timings.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    try:
        signature_sign(user=user, password="wrong", meaning=Meaning.APPROVED, reason="",
                       content_sha256=content_sha256({"i": -1}))
    except Exception:  # noqa: BLE001 (the refusal is what is timed)
        pass
    refused_ms = (time.perf_counter() - start) * 1000
    print(json.dumps({
        "hasher": settings.PASSWORD_HASHERS[0].rsplit(".", 1)[-1],
        "n": args.n,
        "sign_ms_p50": round(statistics.median(timings), 1),
        "sign_ms_max": round(max(timings), 1),
        "refused_ms": round(refused_ms, 1),
        "load_average": os.getloadavg(),
    }))


if __name__ == "__main__":
    main()
