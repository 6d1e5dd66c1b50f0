"""Stop or resume a task's production serving from the command line, as the serving page does (a signing).

For an operator without the web pages at hand: ``manage.py serving stop TASK --user adam --reason "…"``.
"""
from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.production.serving_stops import serving_stop_current, task_serving_resume, task_serving_stop
from pldreview.signatures import Meaning, e_signing, serving_content_sha256, signature_sign
from rules.models import Task


class Command(BaseCommand):
    help = "Stop (or resume) TASK's production serving as USER, with a reason: an electronic signature."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["stop", "resume"], help="stop: the API answers 503; resume: it decides")
        parser.add_argument("task", help="The task's name")
        parser.add_argument("--user", required=True, help="The Admin who signs (username)")
        parser.add_argument("--reason", required=True, help="Why; on the record and, for a stop, in the API's 503")
        parser.add_argument(
            "--password-stdin", action="store_true",
            help="Read the user's password from the first line of stdin, not a prompt",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        task = Task.objects.filter(name=options["task"]).first()
        if task is None:
            raise CommandError(f"There is no task named {options['task']!r}.")
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"There is no active user named {options['user']!r}.")
        stopping = options["action"] == "stop"
        meaning = Meaning.SERVING_STOPPED if stopping else Meaning.SERVING_RESUMED
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password of {user} (signs “{meaning.label}” for {task.name}): ")
        stop = None if stopping else serving_stop_current(task)
        content = serving_content_sha256(task_id=task.pk, task_name=task.name, action=options["action"],
                                         lifts=stop.pk if stop is not None else None)
        try:
            with e_signing():
                signature = signature_sign(user=user, password=password, meaning=meaning, reason=options["reason"],
                                           content_sha256=content)
                service = task_serving_stop if stopping else task_serving_resume
                row = service(task=task, user=user, reason=options["reason"], signature=signature)
        except PermissionDenied as exc:
            raise CommandError(f"{user} may not stop or resume serving: {exc}") from exc
        except ValidationError as exc:
            raise CommandError("Refused: " + " ".join(exc.messages)) from exc
        what = "stopped: the API answers 503 serving_stopped" if stopping else "resumed: the API decides again"
        self.stdout.write(f"Serving of {task.name} {what} (record {row.pk}).")
        self.stdout.write(signature.manifestation)
