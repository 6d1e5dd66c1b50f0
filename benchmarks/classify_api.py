"""Benchmark the classify API end to end: gunicorn as scripts/demo starts it, N clients over loopback.

A benchmark, not a test: it prints one JSON object (the last line). Run it from the project root:

    .venv/bin/python benchmarks/classify_api.py [--clients 4] [--seconds 60] [--port 8765]

It builds a throwaway SQLite database in a temporary folder (migrate, the demo users and fixture tasks,
three approved rules, one compiled version promoted with a written override — this measures serving,
not the gate — and a token), starts ``gunicorn pldreview.wsgi`` with the demo's worker and thread counts,
warms the student up with one call, then lets each client send the fixture's NDA examples for a bounded
time. Every client alternates calls with and without the decision log: the server is started with
PLD_BENCHMARK_UNLOGGED_CALLS=1, which makes it honour ``X-PLD-Unlogged: 1`` (no other server does), so
``log_overhead_ratio`` = p50 with logging / p50 without, measured in the same run under the same load;
the server's ``Server-Timing`` header adds its own measure of the record's write per call.
The load average before and after is part of the output: on a shared machine the figures are only as good
as the quiet they were taken in.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RULES = [
    ("If the clause lets the recipient share information with its employees, then Entailment", "Entailment"),
    ("If the clause forbids any disclosure to third parties, then Contradiction", "Contradiction"),
    ("If the clause says nothing about what the hypothesis asks, then NotMentioned", "NotMentioned"),
]


def prepare() -> None:
    """Fill the (throwaway) database this process points at; print the raw API token."""
    import django

    django.setup()
    from django.contrib.auth.models import User

    from evaluation.api_tokens import api_token_create
    from evaluation.demo.users import seed_users_and_tasks
    from evaluation.promotion import prompt_version_promote
    from rules.compiler import prompt_version_compile
    from rules.models import Rule, Task
    from rules.services import rule_approve, rule_propose

    seed_users_and_tasks(open(os.devnull, "w"))  # noqa: SIM115 - the demo step wants a stream
    task = Task.objects.get(name="nda-demo")
    reviewer, admin = User.objects.get(username="rita"), User.objects.get(username="adam")
    for text, label in RULES:
        rule = rule_propose(task=task, text=text, label=label, origin=Rule.Origin.TEACHER,
                            proposed_by_model="benchmark")
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Benchmark rule set")
    version, _ = prompt_version_compile(task=task, user=admin)
    prompt_version_promote(prompt_version=version, user=admin, reason="Benchmark",
                           override_justification="Benchmark database: serving speed, not the gate, is measured")
    print(api_token_create(user=reviewer, name="benchmark", created_by=admin)[1])


def _inputs() -> list[bytes]:
    rows = [json.loads(line) for line in (ROOT / "fixtures" / "nda_demo.jsonl").read_text().splitlines() if line]
    return [json.dumps({"premise": r["premise"], "hypothesis": r["hypothesis"]}).encode() for r in rows]


def _wait_for(port: int, seconds: float, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("gunicorn did not answer in time")


def _server_timing(header: str) -> dict[str, float]:
    parts = (item.strip().split(";dur=") for item in header.split(",") if ";dur=" in item)
    return {name: float(value) for name, value in parts}


def _client(port: int, token: str, bodies: list[bytes], offset: int, until: float,
            results: list[tuple[bool, float, int, dict[str, float]]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = offset
    while time.monotonic() < until:
        unlogged = i % 2 == 1
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if unlogged:
            headers["X-PLD-Unlogged"] = "1"
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/tasks/nda-demo/classify", body=bodies[i % len(bodies)], headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            timing = _server_timing(response.getheader("Server-Timing") or "")
        except (OSError, http.client.HTTPException):
            status, timing = 0, {}
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        results.append((not unlogged, (time.perf_counter() - started) * 1000, status, timing))
        i += 1
    conn.close()


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--n-ctx", type=int, default=4096, help="PLD_STUDENT_N_CTX for the server")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare()
        return
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="pld-classify-bench-") as tmp:
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "pldreview.settings", "DJANGO_DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3", "PLD_VAR_DIR": tmp,
            "PLD_BENCHMARK_UNLOGGED_CALLS": "1", "PLD_API_DEFAULT_RATE_LIMIT": "1000000",
            "PLD_STUDENT_N_CTX": str(args.n_ctx), "PYTHONPATH": str(ROOT),
        }
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        token = subprocess.run([python, __file__, "--prepare"], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
        load_before = os.getloadavg()
        # The demo's command line (scripts/demo), in its own session so its workers stop with it.
        server = subprocess.Popen(
            [python, "-m", "gunicorn", "pldreview.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
             "--workers", "1", "--threads", "4", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "web.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            _wait_for(args.port, 60, server)
            bodies = _inputs()
            warm: list[tuple[bool, float, int, dict[str, float]]] = []
            _client(args.port, token, bodies, 0, time.monotonic() + 0.001, warm)  # loads the student once
            if warm[0][2] != 200:
                raise SystemExit(f"The warm-up call answered {warm[0][2]}; see {tmp}/web.log")
            results: list[tuple[bool, float, int, dict[str, float]]] = []
            until = time.monotonic() + args.seconds
            started = time.monotonic()
            threads = [threading.Thread(target=_client, args=(args.port, token, bodies, n, until, results))
                       for n in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        import sqlite3

        logged_rows = sqlite3.connect(f"{tmp}/db.sqlite3").execute(
            "SELECT COUNT(*) FROM evaluation_classifycall").fetchone()[0]
    ok = [r for r in results if r[2] == 200]
    logged = [r[1] for r in ok if r[0]]
    unlogged = [r[1] for r in ok if not r[0]]
    # The server's own timing of each logged call (Server-Timing): deciding, then writing the record.
    log_ms = [r[3]["log"] for r in ok if r[0] and "log" in r[3]]
    decide_ms = [r[3]["decide"] for r in ok if r[0] and "decide" in r[3]]
    figures = {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "calls": len(results),
        "rps": round(len(ok) / elapsed, 2),
        "p50_ms": round(_p([r[1] for r in ok], 0.5), 1),
        "p95_ms": round(_p([r[1] for r in ok], 0.95), 1),
        "errors": len(results) - len(ok),
        "p50_logged_ms": round(_p(logged, 0.5), 1),
        "p50_unlogged_ms": round(_p(unlogged, 0.5), 1),
        "log_overhead_ratio": round(_p(logged, 0.5) / _p(unlogged, 0.5), 3) if logged and unlogged else None,
        "server_log_write_p50_ms": round(_p(log_ms, 0.5), 2) if log_ms else None,
        "server_log_write_p95_ms": round(_p(log_ms, 0.95), 2) if log_ms else None,
        "server_log_share_of_call": round(sum(log_ms) / (sum(log_ms) + sum(decide_ms)), 4) if log_ms else None,
        "mean_logged_ms": round(statistics.fmean(logged), 1) if logged else None,
        "mean_unlogged_ms": round(statistics.fmean(unlogged), 1) if unlogged else None,
        # Every logged 200 (and the warm-up) left exactly one record; the unlogged ones none.
        "records_written": logged_rows,
        "records_expected": len(logged) + 1,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
