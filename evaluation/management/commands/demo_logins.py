"""Print the demo logins, one per role, as created by ``seed_demo``; with ``--codes``, their current TOTP codes."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from evaluation.demo.second_factors import demo_totp
from evaluation.demo.users import DEMO_USERS

# scripts/demo writes where it serves the pages, so a later `demo_logins --codes` names the right port.
DEMO_URL_FILE = "demo_url"


def demo_login_url() -> str:
    """Return the login page of the running demo: what scripts/demo recorded, else the default port 8000."""
    recorded = settings.VAR_DIR / DEMO_URL_FILE
    base = recorded.read_text().strip() if recorded.is_file() else ""
    return f"{base or 'http://127.0.0.1:8000'}/login/"


class Command(BaseCommand):
    help = "Print the demo users, their roles and passwords (and with --codes their current second-factor codes)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=None, help="The login page to print (default: where the demo runs)")
        parser.add_argument("--codes", action="store_true", help="Print each user's current TOTP code and secret")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Demo logins ({options['url'] or demo_login_url()}):")
        for username, role, password in DEMO_USERS:
            line = f"  {role:<9} {username:<6} password: {password}"
            if options["codes"]:
                totp = demo_totp(username)
                line += f"  code now: {totp[1]}  (secret {totp[0]})" if totp else "  (no second factor)"
            self.stdout.write(line)
        if not options["codes"]:
            self.stdout.write(
                "After the password, the login asks for a second-factor code: "
                "`manage.py demo_logins --codes` prints each user's current code (and the secret for an app)."
            )
