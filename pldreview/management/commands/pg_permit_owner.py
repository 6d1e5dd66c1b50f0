"""Give PostgreSQL's delete permit a role of its own, so the application's role cannot write permits directly."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from pldreview.db_triggers import permit_owner_statements


class Command(BaseCommand):
    help = ("Print (or, connected as a superuser, apply with --apply) the statements that make a NOLOGIN role own "
            "pld_delete_permit and its two functions, leaving the application's role only SELECT and EXECUTE.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--owner", default="pld_permit_owner", help="The role to own the permit (made if missing)")
        parser.add_argument("--app-role", required=True, help="The role the application connects as")
        parser.add_argument("--apply", action="store_true", help="Run the statements instead of printing them")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Only PostgreSQL has roles; on SQLite the permit is on record through its triggers.")
        try:
            statements = permit_owner_statements(owner=options["owner"], app_role=options["app_role"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not options["apply"]:
            self.stdout.write(";\n".join(statements) + ";")
            return
        with transaction.atomic(), connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
        self.stdout.write(self.style.SUCCESS(
            f"pld_delete_permit now belongs to {options['owner']}; {options['app_role']} may read it and open or "
            "close a permit only through pld_delete_permit_open / pld_delete_permit_close."))
