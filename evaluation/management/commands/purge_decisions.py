"""Enforce the decision log's retention: delete logged classify calls older than a number of days."""
from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.decision_log import decisions_purge
from rules.models import Task


class Command(BaseCommand):
    help = (
        "Delete logged classify calls older than --older-than DAYS (feedback examples of those calls lose their "
        "text, keep their label and provenance); the purge itself goes into the ledger. Prints what it removed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help="Age in days")
        parser.add_argument("--task", help="Only this task's calls (its name)")
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
        try:
            facts = decisions_purge(older_than_days=options["older_than"], actor=actor, task=task)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(json.dumps(facts, indent=2))
