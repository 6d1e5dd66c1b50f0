"""Benchmark sharded evaluation runs: one db_worker (2 threads) against two db_workers (1 thread each).

A benchmark, not a test: it prints one JSON object (the last line). Run it from the project root on a
quiet machine, with PostgreSQL installed (the same throwaway cluster as scripts/test-postgres):

    .venv/bin/python benchmarks/evaluate_scale.py [--docs 6] [--rounds 2] [--datasets ../shared/datasets]

The same zero-shot evaluation of the first ``--docs`` ContractNLI test documents (all their hypotheses)
runs on one database with one worker and with two, in ``--rounds`` pairs whose order alternates (one-two,
two-one, …: a busy spell that lasts a run or two falls on both layouts alike); ``speedup`` is the median
one-worker time over the median two-worker time, and ``pair_speedups`` each pair's own. Each wall time runs
from the moment the run is queued (workers already started and idle) to the moment it is finished, so it includes each
worker loading the model. ``same_metrics`` compares every metric that depends on the decisions (not
latency); ``docs_processed`` counts the documents of the two-worker run that were read exactly once (one
hypothesis paid for the document, the others only for themselves). On two cores, two workers of one thread do
not add compute: the speedup measures what sharding costs (≥ 0.9 means little).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUALITY = ("n", "n_refused", "macro_f1", "macro_f1_ci95", "accuracy", "per_class", "confusion", "labels")


def _cluster(workdir: Path) -> tuple[str, Any]:
    """Start a throwaway PostgreSQL cluster (as scripts/test-postgres does); return its URL and a stopper."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: float(p.parent.name))
    if not bindirs or not (bindirs[-1] / "initdb").exists():
        raise SystemExit(json.dumps({"skipped": "PostgreSQL is not installed (apt-get install postgresql)"}))
    bindir = bindirs[-1]
    as_root = os.getuid() == 0

    def owner(*command: str) -> None:
        line = " ".join(f"'{part}'" for part in command)
        full = ["su", "postgres", "-s", "/bin/sh", "-c", line] if as_root else ["sh", "-c", line]
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL)

    if as_root:
        shutil.chown(workdir, "postgres")
    port = 55000 + os.getpid() % 5000
    owner(str(bindir / "initdb"), "-D", str(workdir / "data"), "-U", "pld", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    owner(str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-l", str(workdir / "log"), "-w", "-o", options,
          "start")

    def stop() -> None:
        owner(str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-m", "immediate", "stop")

    return f"postgres://pld@127.0.0.1:{port}/postgres", stop


def _subset(source: Path, docs: int, target: Path) -> None:
    data = json.loads(source.read_text())
    data["documents"] = data["documents"][:docs]
    target.write_text(json.dumps(data))


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _workers(count: int, threads: int, env: dict[str, str]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2",
             "--worker-id", f"bench-{threads}t-{n}"],
            cwd=ROOT, env={**env, "PLD_STUDENT_THREADS": str(threads)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for n in range(1, count + 1)
    ]


def _timed_run(*, task: Any, workers: int, threads: int, env: dict[str, str]) -> tuple[float, Any]:
    from django.db import transaction

    from evaluation.models import EvaluationRun
    from evaluation.runs.services import evaluation_run_start

    processes = _workers(workers, threads, env)
    try:
        time.sleep(5)  # the workers start (Django, llama-cpp import) before the clock does
        started = time.perf_counter()
        with transaction.atomic():
            run = evaluation_run_start(task=task, mode="zero-shot")
        while EvaluationRun.objects.filter(pk=run.pk, status__in=["queued", "running"]).exists():
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    run.refresh_from_db()
    if run.status != EvaluationRun.Status.FINISHED:
        raise SystemExit(json.dumps({"error": f"run {run.pk} ended {run.status}: {run.error}"}))
    return elapsed, run


def _docs_processed_once(run: Any) -> int:
    """Count the documents that were read once: exactly one of their hypotheses paid for the document."""
    from rules.models import Example

    groups = dict(Example.objects.filter(pk__in=run.options["example_ids"]).values_list("pk", "group_key"))
    processed: dict[str, list[int]] = {}
    for example_id, tokens in run.predictions.values_list("example_id", "tokens_processed"):
        processed.setdefault(groups[example_id], []).append(tokens)
    # A hypothesis that paid for the document processed far more tokens than the ones after it.
    return sum(1 for tokens in processed.values() if sum(t > max(tokens) / 2 for t in tokens) == 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs, ordered one-two, two-one, …")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args()
    source = args.datasets / "contractnli" / "test.json"
    if not source.exists():
        print(json.dumps({"skipped": f"{source} is absent (pass --datasets PATH to ../shared/datasets)"}))
        return
    workdir = Path(tempfile.mkdtemp(prefix="pld-scale-"))
    url, stop = _cluster(workdir)
    try:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "pldreview.settings",
            "DJANGO_SECRET_KEY": "benchmark-only-never-serves-requests-" + "x" * 30,
            "PLD_VAR_DIR": str(workdir / "var"),
        }
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY",
                                               "PLD_VAR_DIR")})
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        from rules.models import Task

        call_command("migrate", verbosity=0)
        subset = workdir / "contractnli-subset.json"
        _subset(source, args.docs, subset)
        call_command("import_dataset", str(subset), task="contractnli-scale", fmt="contractnli", split="test",
                     verbosity=0)
        task = Task.objects.get(name="contractnli-scale")
        load_before = _load_average()
        seconds: dict[int, list[float]] = {1: [], 2: []}
        finished: dict[int, Any] = {}
        for round_ in range(args.rounds):
            for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                elapsed, run = _timed_run(task=task, workers=workers, threads=2 // workers, env=env)
                seconds[workers].append(elapsed)
                finished.setdefault(workers, run)
        one_s, two_s = statistics.median(seconds[1]), statistics.median(seconds[2])
        one, two = finished[1], finished[2]
        same = {k: one.metrics.get(k) for k in QUALITY} == {k: two.metrics.get(k) for k in QUALITY}
        holders = sorted({shard.worker.split(" ")[0] for shard in two.shards.all()})
        print(json.dumps({
            "one_worker_s": round(one_s, 1),
            "two_workers_s": round(two_s, 1),
            "speedup": round(one_s / two_s, 2),
            "rounds": args.rounds,
            "one_worker_runs_s": [round(x, 1) for x in seconds[1]],
            "two_workers_runs_s": [round(x, 1) for x in seconds[2]],
            "pair_speedups": [round(a / b, 2) for a, b in zip(seconds[1], seconds[2], strict=True)],
            "same_metrics": same,
            "docs_processed": _docs_processed_once(two),
            "docs": args.docs,
            "examples": two.n_examples,
            "shards": two.shards.count(),
            "two_worker_shard_holders": holders,
            "same_labels": dict(one.predictions.values_list("example_id", "label"))
            == dict(two.predictions.values_list("example_id", "label")),
            "macro_f1": one.metrics.get("macro_f1"),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
        }))
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
