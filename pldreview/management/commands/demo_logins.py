"""Print the demo logins, one per role, as created by ``seed_demo``."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from rules.demo import DEMO_USERS


class Command(BaseCommand):
    help = "Print the demo users, their roles and passwords."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/login/", help="The login page to print")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Demo logins ({options['url']}):")
        for username, role, password in DEMO_USERS:
            self.stdout.write(f"  {role:<9} {username:<6} password: {password}")
