"""Benchmark the classify API end to end: gunicorn as scripts/demo starts it, N clients over loopback.

A benchmark, not a test: it prints one JSON object (the last line). Run it from the project root:

    .venv/bin/python benchmarks/classify_api.py [--clients 16] [--seconds 60] [--port 8765] [--max-queue 2]

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

Reviewers against integrators: as scripts/demo serves it (``--layout split``, the default), the review pages
come from one gunicorn (PLD_WEB_ROLE=pages, never loads the model) and the API from another (PLD_WEB_ROLE=api,
niced); ``--layout single`` is the old one-process layout. A signed-in reviewer fetches the review queue
(``/review/``) every ``--review-interval`` seconds (0.1; 0 for back to back), first alone for
``--review-seconds`` (``review_p95_ms_idle``), then all through the clients' calls (``review_p95_ms_under_api``);
the bar is ``review_ratio`` ≤ 2.

The idle reviewer, the single client and the loaded phase come in ``--rounds`` slices taken in turn, so each
ratio compares moments of the same stretch of a shared machine's load.

Admission (evaluation/production/admission.py): before each loaded slice, one client alone (the reviewer
fetching beside it, as under load) gives ``single_p95_ms``; under load the
clients honour a 503 ``queue_full``'s Retry-After, and ``accepted_p95_ms`` (the 200s) must stay within
(``max_queue`` + 1) × ``single_p95_ms``. Beside them a second token limited to ``--limited-rate`` calls a minute
offers one call every ``--limited-interval`` seconds (far above its limit, ignoring Retry-After): ``p95_429_ms``,
the p95 of its 429 answers, must stay ≤ 50 ms however busy the model is. Who got the places, which no bar checks:
``admitted_per_client`` (each loaded client's 200s, fewest first), ``clients_never_admitted`` and
``limited_within_limit_admitted`` (the limited token's 200s over its 200s and 503s).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
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

    from evaluation.demo.users import seed_users_and_tasks
    from evaluation.production.api_tokens import api_token_create
    from rules.models import Rule, Task
    from rules.prompts.compiler import prompt_version_compile
    from rules.review.services import rule_approve, rule_propose
    from tests.support.prompt_versions import promote_by_override
    from tests.support.signatures import persona_password, sign_approval

    seed_users_and_tasks(open(os.devnull, "w"))  # noqa: SIM115 - the demo step wants a stream
    task = Task.objects.get(name="nda-demo")
    reviewer, admin, second = (User.objects.get(username=name) for name in ("rita", "adam", "alex"))
    # A throwaway database: the personas sign with the test suite's passwords.
    for user in (reviewer, admin, second):
        user.set_password(persona_password(user))
        user.save()
    for text, label in RULES:
        rule = rule_propose(task=task, text=text, label=label, origin=Rule.Origin.TEACHER,
                            proposed_by_model="benchmark")
        rule_approve(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Benchmark rule set",
                     signature=sign_approval(reviewer, rule))
    version, _ = prompt_version_compile(task=task, user=admin)
    # This measures serving, not the gate: the version goes to production by a two-Admin override.
    promote_by_override(version, admin=admin, second_admin=second, reason="Benchmark")
    from django.conf import settings
    from django.test import Client

    session = Client()
    session.force_login(reviewer)
    name = settings.SESSION_COOKIE_NAME
    limited = api_token_create(user=reviewer, name="limited", created_by=admin,
                               rate_limit_per_minute=int(os.environ["PLD_BENCHMARK_LIMITED_RATE"]))[1]
    print(json.dumps({"token": api_token_create(user=reviewer, name="benchmark", created_by=admin)[1],
                      "limited": limited, "cookie": f"{name}={session.cookies[name].value}"}))


def _inputs() -> list[bytes]:
    rows = [json.loads(line) for line in (ROOT / "fixtures" / "nda_demo.jsonl").read_text().splitlines() if line]
    return [json.dumps({"premise": r["premise"], "hypothesis": r["hypothesis"]}).encode() for r in rows]


def _wait_for(port: int, seconds: float, server: subprocess.Popen, path: str = "/login/", status: int = 200) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == status:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("gunicorn did not answer in time")


def _server_timing(header: str) -> dict[str, float]:
    parts = (item.strip().split(";dur=") for item in header.split(",") if ";dur=" in item)
    return {name: float(value) for name, value in parts}


def _client(port: int, token: str, bodies: list[bytes], offset: int, until: float,
            results: list[tuple[bool, float, int, dict[str, float]]], admitted: list[int] | None = None) -> None:
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
            retry_after = float(response.getheader("Retry-After") or 0) if status == 503 else 0.0
        except (OSError, http.client.HTTPException):
            status, timing, retry_after = 0, {}, 0.0
        # The server closes every connection (gunicorn.conf.py keepalive = 0).
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        results.append((not unlogged, (time.perf_counter() - started) * 1000, status, timing))
        if admitted is not None and status == 200:
            admitted[offset] += 1
        i += 1
        if retry_after:
            # A well-behaved integrator: a full queue says when to come back.
            time.sleep(max(0.0, min(retry_after, until - time.monotonic())))
    conn.close()


def _limited_call(port: int, headers: dict[str, str], body: bytes, results: list[tuple[float, int]]) -> None:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/api/v1/tasks/nda-demo/classify", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    results.append(((time.perf_counter() - started) * 1000, status))


def _limited(port: int, token: str, body: bytes, interval: float, until: float,
             results: list[tuple[float, int]]) -> None:
    """Call with a token limited below this offered rate: one call every ``interval`` s whatever the answers (each
    in its own thread, so a call the model takes seconds to decide does not lower the rate), ignoring Retry-After."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    calls = []
    due = time.monotonic()
    while due < until:
        call = threading.Thread(target=_limited_call, args=(port, headers, body, results))
        call.start()
        calls.append(call)
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))
    for call in calls:
        call.join()


def _reviewer(port: int, cookie: str, until: float, results: list[tuple[float, int]], interval: float) -> None:
    """Fetch the review queue until the deadline, one request every ``interval`` s (0: back to back)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    due = time.monotonic()
    while due < until:
        time.sleep(max(0.0, due - time.monotonic()))
        due += interval
        started = time.perf_counter()
        try:
            conn.request("GET", "/review/", headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        results.append(((time.perf_counter() - started) * 1000, status))
    conn.close()


def _gunicorn(python: str, port: int, env: dict[str, str], log: Path, *, nice: int = 0,
              threads: int = 4) -> subprocess.Popen:
    # The demo's command line (scripts/demo), in its own session so its workers stop with it.
    command = [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "pldreview.wsgi:application",
               "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)]
    process = subprocess.Popen(
        (["nice", "-n", str(nice)] if nice else []) + command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=open(log, "w"), start_new_session=True,  # noqa: SIM115
    )
    if nice:
        # As scripts/demo's lower_group: under autogroup scheduling a nice value ranks threads only inside their
        # session's group, so the session's group is lowered too (nothing to do where there is none).
        try:
            Path(f"/proc/{process.pid}/autogroup").write_text(str(nice))
        except OSError:
            pass
    return process


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _timing_p(results: list[tuple[bool, float, int, dict[str, float]]], q: float, part: str) -> float | None:
    # "model": the decision itself (decide - wait - admit); "wait": behind the calls admitted before it; "admit": the
    # checks before the queue (token, scope, rate, stop, body).
    values = [t["decide"] - t["wait"] - t.get("admit", 0) if part == "model" else t[part]
              for _l, _ms, _s, t in results if "decide" in t and "wait" in t and (part == "model" or part in t)]
    return round(_p(values, q), 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--n-ctx", type=int, default=4096, help="PLD_STUDENT_N_CTX for the server")
    parser.add_argument("--layout", choices=["split", "single"], default="split",
                        help="split: pages and API in two processes, as scripts/demo; single: one process for both")
    # A request every 0.1 s is many times a person's pace and gives 200 samples per 20 s. Back to back (0), the
    # reviewer alone takes most of a core of the two the API and the clients share, so the figures measure the
    # machine's saturation as much as the API's admission (docs/benchmarks.md).
    parser.add_argument("--review-interval", type=float, default=0.1,
                        help="seconds between the reviewer's requests (0: back to back)")
    parser.add_argument("--review-seconds", type=float, default=20.0, help="the reviewer alone, before the API load")
    # 40 s: about 300 calls. The bound is three times this p95; from 150 calls (20 s) its own sampling error was
    # 2.7% (bootstrap), most of the accepted-call ratio's run-to-run spread (docs/benchmarks.md).
    parser.add_argument("--single-seconds", type=float, default=40.0, help="one client alone: single_p95_ms")
    parser.add_argument("--rounds", type=int, default=3, help="quiet and loaded slices taken in turn")
    parser.add_argument("--max-queue", type=int, default=2, help="PLD_API_MAX_QUEUE of the API's process")
    parser.add_argument("--api-threads", type=int, default=8, help="gunicorn threads of the API (scripts/demo: 8)")
    parser.add_argument("--api-nice", type=int, default=10, help="the API's nice level (scripts/demo: 10)")
    parser.add_argument("--limited-rate", type=int, default=30, help="calls a minute the limited token may make")
    parser.add_argument("--limited-interval", type=float, default=0.2, help="seconds between its calls")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare()
        return
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="pld-classify-bench-") as tmp:
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "pldreview.settings", "DJANGO_DEBUG": "1",
            # One key for every process: without it each signs sessions with a key of its own, and the
            # reviewer's session, made by --prepare, is refused by the pages' server (every /review/ a 302).
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3", "PLD_VAR_DIR": tmp,
            "PLD_BENCHMARK_UNLOGGED_CALLS": "1", "PLD_API_DEFAULT_RATE_LIMIT": "1000000",
            "PLD_STUDENT_N_CTX": str(args.n_ctx), "PYTHONPATH": str(ROOT),
            "PLD_API_MAX_QUEUE": str(args.max_queue), "PLD_BENCHMARK_LIMITED_RATE": str(args.limited_rate),
        }
        # As scripts/demo: the API restores the production prefix at start and says so on /readyz.
        api_env = {**env, "PLD_WEB_ROLE": "api", "PLD_STUDENT_PRELOAD": "1"}
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        prepared = json.loads(subprocess.run([python, __file__, "--prepare"], cwd=ROOT, env=env, check=True,
                                             stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
        token, limited, cookie = prepared["token"], prepared["limited"], prepared["cookie"]
        load_before = os.getloadavg()
        api_port = args.port + 1 if args.layout == "split" else args.port
        servers = []
        if args.layout == "split":
            servers.append(_gunicorn(python, args.port, {**env, "PLD_WEB_ROLE": "pages"}, Path(tmp) / "web.log"))
            servers.append(_gunicorn(python, api_port, api_env, Path(tmp) / "api.log", nice=args.api_nice,
                                     threads=args.api_threads))
        else:
            servers.append(_gunicorn(python, args.port, {**api_env, "PLD_WEB_ROLE": "all"}, Path(tmp) / "web.log",
                                     threads=args.api_threads))
        try:
            _wait_for(args.port, 60, servers[0])
            _wait_for(api_port, 300, servers[-1], path="/readyz", status=200)
            bodies = _inputs()
            warm: list[tuple[bool, float, int, dict[str, float]]] = []
            _client(api_port, token, bodies, 0, time.monotonic() + 0.001, warm)  # loads the student once
            if warm[0][2] != 200:
                raise SystemExit(f"The warm-up call answered {warm[0][2]}; see {tmp}/*.log")
            review_idle: list[tuple[float, int]] = []
            single: list[tuple[bool, float, int, dict[str, float]]] = []
            limited_results: list[tuple[float, int]] = []
            results: list[tuple[bool, float, int, dict[str, float]]] = []
            review_loaded: list[tuple[float, int]] = []
            review_single: list[tuple[float, int]] = []
            # Each loaded client's 200s: who gets the places, not only how many there are (docs/benchmarks.md).
            admitted = [0] * args.clients
            elapsed = 0.0
            # The quiet and the loaded figures come in --rounds slices taken in turn, so a busy spell on a shared
            # machine falls on both sides of each ratio alike.
            for _round in range(args.rounds):
                _reviewer(args.port, cookie, time.monotonic() + args.review_seconds / args.rounds, review_idle,
                          args.review_interval)
                # The reviewer keeps fetching meanwhile, as under load: the single client and the 16 then differ
                # only in the API's own traffic (the pages process, not niced, takes a core from the model).
                until = time.monotonic() + args.single_seconds / args.rounds
                beside = threading.Thread(target=_reviewer, args=(args.port, cookie, until, review_single,
                                                                  args.review_interval))
                beside.start()
                _client(api_port, token, bodies, 0, until, single)
                beside.join()
                until = time.monotonic() + args.seconds / args.rounds
                started = time.monotonic()
                threads = [threading.Thread(target=_client, args=(api_port, token, bodies, n, until, results,
                                                                  admitted))
                           for n in range(args.clients)]
                threads.append(threading.Thread(target=_reviewer, args=(args.port, cookie, until, review_loaded,
                                                                        args.review_interval)))
                threads.append(threading.Thread(target=_limited, args=(
                    api_port, limited, bodies[0], args.limited_interval, until, limited_results)))
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed += time.monotonic() - started
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
        import sqlite3

        logged_rows = sqlite3.connect(f"{tmp}/db.sqlite3").execute(
            "SELECT COUNT(*) FROM evaluation_classifycall").fetchone()[0]
    ok = [r for r in results if r[2] == 200]
    single_p95 = _p([r[1] for r in single if r[2] == 200], 0.95)
    logged = [r[1] for r in ok if r[0]]
    unlogged = [r[1] for r in ok if not r[0]]
    # The server's own timing of each logged call (Server-Timing): deciding, then writing the record.
    log_ms = [r[3]["log"] for r in ok if r[0] and "log" in r[3]]
    decide_ms = [r[3]["decide"] for r in ok if r[0] and "decide" in r[3]]
    limited_statuses = {code: sum(1 for _ms, c in limited_results if c == code)
                        for code in sorted({c for _ms, c in limited_results})}
    figures = {
        "clients": args.clients,
        "rounds": args.rounds,
        "seconds": round(elapsed, 1),
        "calls": len(results),
        "rps": round(len(ok) / elapsed, 2),
        "p50_ms": round(_p([r[1] for r in ok], 0.5), 1),
        "p95_ms": round(_p([r[1] for r in ok], 0.95), 1),
        # Refusals of a full queue (503 queue_full) are admission doing its job, not errors.
        "errors": sum(1 for r in results if r[2] not in (200, 503)),
        "queue_full_503": sum(1 for r in results if r[2] == 503),
        "max_queue": args.max_queue,
        "api_threads": args.api_threads,
        "api_nice": args.api_nice,
        "single_p95_ms": round(single_p95, 1),
        "single_p50_ms": round(_p([r[1] for r in single if r[2] == 200], 0.5), 1),
        # The server's own split of a 200 (Server-Timing): deciding (decide - wait) and waiting for the calls
        # admitted before it, alone and under load: is a slow accepted call slow deciding, or slow waiting?
        "single_model_p50_ms": _timing_p([r for r in single if r[2] == 200], 0.5, "model"),
        "loaded_model_p50_ms": _timing_p(ok, 0.5, "model"),
        "loaded_model_p95_ms": _timing_p(ok, 0.95, "model"),
        "single_admit_p50_ms": _timing_p([r for r in single if r[2] == 200], 0.5, "admit"),
        "loaded_admit_p50_ms": _timing_p(ok, 0.5, "admit"),
        "loaded_admit_p95_ms": _timing_p(ok, 0.95, "admit"),
        "loaded_wait_p50_ms": _timing_p(ok, 0.5, "wait"),
        "loaded_wait_p95_ms": _timing_p(ok, 0.95, "wait"),
        "accepted_p95_ms": round(_p([r[1] for r in ok], 0.95), 1),
        "accepted_bound_ms": round((args.max_queue + 1) * single_p95, 1),
        "limited_rate_per_minute": args.limited_rate,
        "limited_offered_per_minute": round(60 / args.limited_interval),
        "limited_statuses": {str(code): count for code, count in limited_statuses.items()},
        # Fairness, which no bar checks: each client's admitted calls (fewest first), the clients never admitted,
        # and the share of the limited token's calls within its limit that a full queue let through.
        "admitted_per_client": sorted(admitted),
        "clients_never_admitted": sum(1 for count in admitted if count == 0),
        "limited_within_limit_admitted": round(
            limited_statuses.get(200, 0) / max(1, limited_statuses.get(200, 0) + limited_statuses.get(503, 0)), 2),
        "p95_429_ms": round(_p([ms for ms, code in limited_results if code == 429], 0.95), 1),
        "p50_429_ms": round(_p([ms for ms, code in limited_results if code == 429], 0.5), 1),
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
        # ... and so did the single client's logged 200s and the limited token's 200s (always logged).
        "records_expected": len(logged) + 1 + sum(1 for r in single if r[0] and r[2] == 200)
        + sum(1 for _ms, code in limited_results if code == 200),
        "layout": args.layout,
        "review_p50_ms_idle": round(_p([ms for ms, code in review_idle if code == 200], 0.5), 1),
        "review_p95_ms_idle": round(_p([ms for ms, code in review_idle if code == 200], 0.95), 1),
        "review_p50_ms_under_api": round(_p([ms for ms, code in review_loaded if code == 200], 0.5), 1),
        "review_p95_ms_under_api": round(_p([ms for ms, code in review_loaded if code == 200], 0.95), 1),
        "review_ratio": round(_p([ms for ms, code in review_loaded if code == 200], 0.95)
                              / _p([ms for ms, code in review_idle if code == 200], 0.95), 2),
        "review_p95_ms_beside_single": round(_p([ms for ms, code in review_single if code == 200], 0.95), 1),
        "review_requests": [len(review_idle), len(review_loaded)],
        "review_interval_s": args.review_interval,
        "review_errors": sum(1 for _ms, code in review_idle + review_loaded if code != 200),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    figures["bars"] = {
        "p95_429_ms<=50": figures["p95_429_ms"] <= 50,
        "accepted_p95<=(max_queue+1)*single_p95": figures["accepted_p95_ms"] <= figures["accepted_bound_ms"],
        "review_ratio<=2": figures["review_ratio"] <= 2,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
