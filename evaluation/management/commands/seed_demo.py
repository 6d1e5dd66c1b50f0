"""Load the demo story on the fixture task; safe to run again (each step skips what exists)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluation.demo.story import demo_seed


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
        demo_seed(stdout=self.stdout, only=options.get("only"))
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
