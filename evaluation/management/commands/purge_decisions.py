"""Enforce the decision log's retention: delete logged classify calls older than a number of days."""
from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.production.decision_log import (
    PURGE_BATCH_SIZE,
    PURGE_PAUSE_SECONDS,
    PURGE_SQLITE_YIELD,
    decision_policy,
    decisions_purge,
)
from rules.models import Task


class Command(BaseCommand):
    help = (
        "Delete logged classify calls older than --older-than DAYS (feedback examples of those calls lose their "
        "text, keep their label and provenance) in short batches, each batch a ledger entry with what it removed "
        "and the rollups kept equal to the calls. Prints the totals."
    )

    def add_arguments(self, parser: Any) -> None:
        age = parser.add_mutually_exclusive_group(required=True)
        age.add_argument("--older-than", type=int, metavar="DAYS", help="Age in days")
        age.add_argument("--by-policy", action="store_true",
                         help="Each task by its own retention (its policy, else PLD_DECISION_RETENTION_DAYS)")
        parser.add_argument("--task", help="Only this task's calls (its name)")
        parser.add_argument("--batch-size", type=int, default=PURGE_BATCH_SIZE, metavar="N",
                            help=f"Calls deleted per short transaction, each with its ledger entry "
                                 f"(default {PURGE_BATCH_SIZE})")
        parser.add_argument("--pause-ms", type=float, default=PURGE_PAUSE_SECONDS * 1000, metavar="MS",
                            help="Least pause between batches, so classify calls waiting to write go first")
        parser.add_argument("--yield-ratio", type=float, default=None, metavar="R",
                            help=f"Pause R times as long as each batch took, if longer (default "
                                 f"{PURGE_SQLITE_YIELD:g} on SQLite: the purge holds its write lock at most "
                                 f"1/(1+R) of the time; 0 on PostgreSQL)")
        parser.add_argument("--actor", help="Username recorded as running the purge (default: the system)")

    def handle(self, *args: Any, **options: Any) -> None:
        task = None
        if options.get("task"):
            task = Task.objects.filter(name=options["task"]).first()
            if task is None:
                raise CommandError(f"There is no task named {options['task']!r}.")
        actor = None
        if options.get("actor"):
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"There is no user named {options['actor']!r}.")
        if options["by_policy"]:
            tasks = [task] if task else list(Task.objects.filter(classify_calls__isnull=False).distinct())
            pace = {"batch_size": options["batch_size"], "pause_seconds": options["pause_ms"] / 1000,
                    "yield_ratio": options["yield_ratio"]}
            purged = [decisions_purge(older_than_days=decision_policy(t)[1], actor=actor, task=t, **pace)
                      for t in tasks]
            self.stdout.write(json.dumps(purged, indent=2))
            return
        try:
            facts = decisions_purge(older_than_days=options["older_than"], actor=actor, task=task,
                                    batch_size=options["batch_size"], pause_seconds=options["pause_ms"] / 1000,
                                    yield_ratio=options["yield_ratio"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(json.dumps(facts, indent=2))
