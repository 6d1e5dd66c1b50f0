"""Benchmark the decision records at volume: pages, exports, ledger verification and the purge (issue 28).

A benchmark, not a test: it prints one JSON object (the last line). It builds a throwaway database — SQLite with
production settings (WAL, IMMEDIATE) in a temporary directory, or a throwaway PostgreSQL cluster started as
``scripts/test-postgres`` starts one (initdb, trust, fsync=off) — measures at demo size (6 calls), inserts
``--calls`` realistic ClassifyCall rows (bulk, in batches, spread over 60 days; rollups recounted by
``rollups_rebuild``) and ``--ledger`` chained ledger entries, and measures again. Run from the project root:

    .venv/bin/python benchmarks/records_scale.py [--calls 1000000] [--ledger 100000] [--database sqlite|postgres]

Bars at 1,000,000 calls on both databases: production page p95 <= 300 ms; every listed page <= 2x its demo-size
p95 + 50 ms; export RSS growth <= 100 MB; CSV >= 20k rows/s; verify >= 100k entries/s; purge ratio <= 2.
``purge_api_p95_ratio`` is the p95 of the decision-log write (``classify_call_save``, what a classify call
adds to the database) while ``purge_decisions`` runs in another process, over its p95 idle: the model's own
seconds are left out, which makes the ratio stricter than the API's. The load average is part of the output.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ["Entailment", "Contradiction", "NotMentioned"]
INPUTS = {"premise": "The Recipient may share Confidential Information with its employees who need to know it.",
          "hypothesis": "The receiving party may share some confidential information with its employees."}
DAYS = 60


def _postgres(workdir: Path) -> tuple[str, callable]:
    """Start a throwaway cluster as scripts/test-postgres does; return its URL and how to stop it."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    bindir, data, port = bindirs[-1], workdir / "pg", 55000 + random.randrange(5000)  # noqa: S311

    def as_owner(command: str) -> None:
        if os.getuid() == 0:
            subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True, capture_output=True)
        else:
            subprocess.run(["sh", "-c", command], check=True, capture_output=True)

    if os.getuid() == 0:
        shutil.chown(workdir, "postgres")
    as_owner(f"'{bindir}/initdb' -D '{data}' -U pld --auth=trust -E UTF8")
    as_owner(f"'{bindir}/pg_ctl' -D '{data}' -l '{workdir}/pg.log' -w -o \"-p {port} -k '{workdir}' "
             f"-c listen_addresses=127.0.0.1 -c fsync=off\" start")

    def stop() -> None:
        as_owner(f"'{bindir}/pg_ctl' -D '{data}' -m immediate stop")

    return f"postgres://pld@127.0.0.1:{port}/postgres", stop


def _setup(workdir: Path, database: str) -> callable:
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 40)
    os.environ.setdefault("PLD_VAR_DIR", str(workdir))
    stop = lambda: None  # noqa: E731
    if database == "postgres":
        url, stop = _postgres(workdir)
        os.environ["DATABASE_URL"] = url
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'records-bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "pldreview.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    # force_login has no second factor to show; the gate is one session check and not what is measured.
    os.environ["PLD_MFA_REQUIRED"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not (ROOT / "staticfiles" / "staticfiles.json").exists():
        call_command("collectstatic", interactive=False, verbosity=0)  # the pages name hashed static files
    return stop


def _world() -> dict:
    from django.contrib.auth.models import Group, User

    from rules.audit import audited_save
    from rules.models import PromptVersion, Task

    users = {}
    for name, role in (("adam", "Admin"), ("aude", "Auditor"), ("rita", "Reviewer")):
        user = User.objects.create_user(name, password="benchmark-password-1")  # noqa: S106
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
        users[role] = user
    task = Task(name="nda-bench", labels=[{"name": n, "description": n} for n in LABELS],
                input_fields=["premise", "hypothesis"])
    task.full_clean()
    task.save()
    # Written plainly: compiling needs approved rules, and the pages measured here only need a version to exist.
    text = "Label the clause. Rules: none."
    digest = hashlib.sha256(text.encode()).hexdigest()
    version = PromptVersion(task=task, number=1, text=text, sha256=digest, rule_set_hash="0" * 64,
                            template_version="bench")
    audited_save(version, user=users["Admin"], reason="benchmark")
    return {"task": task, "version": version, "users": users}


def _call(world: dict, rng: random.Random, created_at) -> object:
    from evaluation.models import ClassifyCall
    from evaluation.production.decision_log import inputs_sha256

    label = rng.choice(LABELS)
    top = round(rng.uniform(0.4, 0.99), 4)
    rest = (1 - top) / 2
    return ClassifyCall(
        request_id=uuid.uuid4(), created_at=created_at, source="api", task=world["task"],
        prompt_version=world["version"], prompt_sha256=world["version"].sha256, model_sha256="m" * 64, label=label,
        probabilities={name: (top if name == label else rest) for name in LABELS}, top_probability=top,
        latency_ms=round(rng.lognormvariate(5.5, 0.6), 3), input_retention="full", inputs=INPUTS,
        input_sha256=inputs_sha256(INPUTS), student_backend="llama_cpp",
    )


def _insert(world: dict, n: int, *, batch: int = 10_000) -> float:
    """Insert n calls spread over the last DAYS days with bulk_create, then recount the rollups; return seconds."""
    from django.db import transaction
    from django.utils import timezone

    from evaluation.models import ClassifyCall
    from evaluation.production.rollups import rollups_rebuild

    rng = random.Random(28)
    now = timezone.now()
    began = time.perf_counter()
    step = DAYS * 86400 / max(n, 1)
    rows = []
    for i in range(n):
        rows.append(_call(world, rng, now - timedelta(seconds=DAYS * 86400 - i * step)))
        if len(rows) == batch:
            with transaction.atomic():
                ClassifyCall.objects.bulk_create(rows)
            rows = []
    if rows:
        ClassifyCall.objects.bulk_create(rows)
    rollups_rebuild()
    return time.perf_counter() - began


def _p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20)[-1], 2) if len(samples) > 1 else round(samples[0], 2)


def _page_ms(client, url: str, repeat: int) -> dict[str, float]:
    client.get(url, secure=True)  # warm
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url, secure=True)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.get("Location"))
    return {"p95": _p95(samples), "p50": round(statistics.median(samples), 2), "max": round(max(samples), 2)}


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pages(world: dict, repeat: int) -> dict:
    from django.test import Client
    from django.utils import timezone

    task = world["task"].name
    watcher, reviewer = Client(), Client()
    today = timezone.localdate().isoformat()
    watcher.force_login(world["users"]["Auditor"])
    reviewer.force_login(world["users"]["Reviewer"])
    figures = {}
    for name, client, url in (
        ("production_page", watcher, f"/tasks/{task}/production/"),
        ("calls_list", watcher, f"/tasks/{task}/calls/"),
        ("review_queue", reviewer, "/review/"),
        ("ledger_page", watcher, "/ledger/"),
        # Filtered: every filled entry is a bench.fill of today, so both filters match all of them at scale.
        ("ledger_event_page", watcher, "/ledger/?event=bench.fill"),
        ("ledger_dates_page", watcher, f"/ledger/?since={today}&until={today}"),
    ):
        timed = _page_ms(client, url, repeat)
        figures[f"{name}_ms_p95"] = timed["p95"]
        # The median and the slowest beside the p95: one pause among the requests shows as a max, not a trend.
        figures[f"{name}_ms_p50"], figures[f"{name}_ms_max"] = timed["p50"], timed["max"]
    # The JSON export of every call (60 days): its RSS peak over the RSS before it (clear_refs resets the peak).
    start = (world["version"].created_at.date() - timedelta(days=DAYS + 1)).isoformat()
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_mb("VmRSS")
    response = watcher.get(f"/tasks/{task}/production/export.json?start={start}", secure=True)
    size = sum(len(piece) for piece in response.streaming_content)
    figures["export_json_rss_growth_mb"] = round(_rss_mb("VmHWM") - before, 1)
    figures["export_json_mb"] = round(size / 2**20, 1)
    began = time.perf_counter()
    response = watcher.get(f"/tasks/{task}/production/export.csv?start={start}", secure=True)
    lines = sum(piece.count(b"\n") for piece in response.streaming_content)
    seconds = time.perf_counter() - began
    figures["export_csv_rows"] = lines - 1
    figures["export_csv_rows_per_s"] = round((lines - 1) / seconds) if lines > 1 else 0
    return figures


def _verify() -> dict:
    from pldreview.ledger_verify import ledger_verify

    verdict = ledger_verify()
    assert verdict.ok, verdict.message
    return {"verify_entries": verdict.entries_checked, "verify_seconds": round(verdict.seconds, 2),
            "verify_entries_per_s": round(verdict.entries_checked / verdict.seconds)}


def _purge(world: dict, workdir: Path, days: int) -> dict:
    """Time decision-log writes idle, then while purge_decisions runs in its own process; return the ratio."""
    from django.db import connection
    from django.utils import timezone

    from evaluation.production.decision_log import classify_call_save

    rng = random.Random(5)
    samples: dict[str, list[float]] = {"idle": [], "purge": []}
    phase = ["idle"]
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            call = _call(world, rng, timezone.now())
            began = time.perf_counter()
            classify_call_save(call)
            samples[phase[0]].append((time.perf_counter() - began) * 1000)
            time.sleep(0.02)  # ~40 calls a second, about the rate the integrator sends
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(8)
    phase[0] = "purge"
    began = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "purge_decisions", "--older-than", str(days)],
                          capture_output=True, text=True, env=dict(os.environ), cwd=ROOT, check=False)
    purge_seconds = time.perf_counter() - began
    stop.set()
    thread.join()
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    facts = json.loads(done.stdout)
    return {
        "purged_calls": facts["calls_deleted"], "purge_batches": facts["batches"],
        "purge_seconds": round(purge_seconds, 1),
        "purge_calls_per_s": round(facts["calls_deleted"] / purge_seconds),
        "log_write_ms_p95_idle": _p95(samples["idle"]), "log_write_ms_p95_during_purge": _p95(samples["purge"]),
        "log_writes_during_purge": len(samples["purge"]),
        "purge_api_p95_ratio": round(_p95(samples["purge"]) / _p95(samples["idle"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    # 100: with 20 requests the p95 (statistics.quantiles, exclusive) sits 95% of the way from the 19th to the
    # 20th slowest, so it is nearly the slowest request, and one pause in twenty decides it.
    parser.add_argument("--repeat", type=int, default=100, help="Requests per page for its p95")
    parser.add_argument("--purge-days", type=int, default=20,
                        help="Purge calls older than this (the calls span 60 days: 40/60 of them go)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="pld-records-"))
    stop = _setup(workdir, args.database)
    try:
        from django.db import connection

        from benchmarks.ledger import _bulk_fill
        from evaluation.production.decision_log import classify_call_save
        from evaluation.production.rollups import rollups_rebuild

        world = _world()
        rng = random.Random(1)
        from django.utils import timezone

        for i in range(6):
            classify_call_save(_call(world, rng, timezone.now() - timedelta(hours=i)))
        demo = {**_pages(world, args.repeat), **_verify()}
        insert_seconds = _insert(world, args.calls)
        began = time.perf_counter()
        check = rollups_rebuild(check=True)
        rollup_check_seconds = time.perf_counter() - began
        _bulk_fill(args.ledger)
        scale = {**_pages(world, args.repeat), **_verify()}
        purge = _purge(world, workdir, args.purge_days)
        check_after = rollups_rebuild(check=True)
        result = {
            "database": args.database, "server": connection.vendor + " " + ".".join(
                str(n) for n in (connection.pg_version // 10000, connection.pg_version % 10000)
            ) if args.database == "postgres" else "sqlite " + __import__("sqlite3").sqlite_version,
            "calls": args.calls + 6, "ledger_entries": args.ledger, "insert_and_rollup_seconds": round(insert_seconds),
            "rollup_check_seconds": round(rollup_check_seconds, 1), "rollups_equal_recount": check.ok,
            "rollups_equal_recount_after_purge": check_after.ok,
            **scale, **purge,
            "demo": demo,
            "ratios_to_demo": {k: round(scale[k] / demo[k], 2) for k in (
                "production_page_ms_p95", "calls_list_ms_p95", "review_queue_ms_p95", "ledger_page_ms_p95",
                "ledger_event_page_ms_p95", "ledger_dates_page_ms_p95")},
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result))
    finally:
        from django.db import connections

        connections.close_all()
        stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
