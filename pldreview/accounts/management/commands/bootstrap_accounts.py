"""Create the first Admin account(s) of a deployment, only while no active Admin exists; the ledger says who and why.

Every later account is requested by one Admin and confirmed by another on /users/.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pldreview.accounts.services import BootstrapAccount, accounts_bootstrap, operator
from pldreview.roles import ADMIN


class Command(BaseCommand):
    help = (
        "Create the first Admin accounts while no active Admin exists; print each temporary password once. "
        "The ledger records the operating-system user, the host and the reason."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", dest="admins", action="append", required=True, metavar="USERNAME",
                            help="An Admin account to create (repeat for two: each change needs a second Admin)")
        parser.add_argument("--reason", required=True, help="Why the accounts are bootstrapped (kept in the ledger)")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = [BootstrapAccount(username=name.strip(), roles=(ADMIN,)) for name in options["admins"]]
        run_by, host = operator()
        try:
            passwords = accounts_bootstrap(
                accounts=accounts, reason=options["reason"], run_by=run_by, host=host,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for username, password in passwords.items():
            self.stdout.write(f"Admin {username}: temporary password {password} (change it at first login)")
        if len(passwords) < 2:
            self.stdout.write(
                "Only one Admin: every account change needs a second Admin to confirm it, so none can be made. "
                "Bootstrap two Admins (--admin a --admin b) on an empty deployment."
            )
