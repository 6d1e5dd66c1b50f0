"""Load the demo story on the fixture task; safe to run again (each step skips what exists)."""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

# Each step is ``step(stdout) -> None`` in the app that owns that part of the story, in story order.
STEPS = [
    "rules.demo.seed_users_and_tasks",
    "pldreview.accounts.demo.seed_second_factors",
    "rules.demo_teacher.seed_teacher_rules",
    "rules.demo_review.seed_review_decisions",
    "evaluation.demo_prompts.seed_prompt_versions",
    "evaluation.demo_student.seed_evaluations",
    "evaluation.demo_prompts.seed_promotion",
    "evaluation.demo_production.seed_production_calls",
    "evaluation.demo_reports.seed_report",
]


class Command(BaseCommand):
    help = "Load the demo data (users per role, the fixture tasks, rules, decisions, prompt versions, a report)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--only", help="Run only the steps whose dotted path contains this text")
        parser.add_argument(
            "--allow-production-demo",
            action="store_true",
            help="Load the demo users (with their printed passwords) although DJANGO_DEBUG is off",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The demo users have published passwords: never in a real deployment by accident.
        if not settings.DEBUG and not options["allow_production_demo"]:
            raise CommandError(
                "seed_demo creates users with published passwords and DJANGO_DEBUG is off. If this is a demo "
                "(scripts/demo is), pass --allow-production-demo."
            )
        for dotted in STEPS:
            if options.get("only") and options["only"] not in dotted:
                continue
            try:
                step = import_string(dotted)
            except ImportError as exc:
                raise CommandError(f"Demo step {dotted} is missing: {exc}") from exc
            self.stdout.write(f"==> {dotted}")
            started = time.monotonic()
            step(self.stdout)
            self.stdout.write(f"    ({time.monotonic() - started:.1f} s)")
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
