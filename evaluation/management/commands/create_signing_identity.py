"""Create a self-signed signing identity (PKCS#12) for signed reports, or export its certificate."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluation.release.pdf_signing import (
    SigningError,
    signing_identity_create,
    signing_identity_load,
    signing_passphrase,
    signing_passphrase_keep,
)


class Command(BaseCommand):
    help = (
        "Write a self-signed PKCS#12 identity for signing reports (demo and tests; use a CA-issued one in "
        "production). With --export-cert, write the certificate of the existing identity instead."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--out", default=settings.PLD_SIGNING_P12, help="PKCS#12 file (default PLD_SIGNING_P12)")
        parser.add_argument(
            "--passphrase",
            default=None,
            help="Passphrase of the file (default: PLD_SIGNING_PASSPHRASE, else the one kept in PLD_VAR_DIR/signing/, "
            "made now when there is none)",
        )
        parser.add_argument("--common-name", default="PLD Review report signer", help="Subject common name")
        parser.add_argument("--organization", default="", help="Subject organisation")
        parser.add_argument("--years", type=int, default=5, help="Validity in years (default 5)")
        parser.add_argument("--force", action="store_true", help="Replace an existing identity")
        parser.add_argument("--export-cert", metavar="PEM", help="Write the existing identity's certificate here")

    def handle(self, *args: Any, **options: Any) -> None:
        passphrase = options["passphrase"]
        out = Path(options["out"])
        try:
            if options["export_cert"]:
                identity = signing_identity_load(
                    p12_path=out, passphrase=signing_passphrase() if passphrase is None else passphrase
                )
                Path(options["export_cert"]).write_text(identity.certificate_pem)
                self.stdout.write(f"Wrote the certificate of {identity.subject} to {options['export_cert']}")
                self.stdout.write(f"SHA-256 fingerprint: {identity.fingerprint}")
                return
            if options["years"] < 1:
                raise CommandError("--years must be at least 1")
            if passphrase is None and (options["force"] or not out.exists()):
                # The settings only read the kept passphrase; the command that needs one makes it.
                passphrase, made = signing_passphrase_keep()
                if made:
                    self.stdout.write(f"Kept a new passphrase in {Path(settings.VAR_DIR) / 'signing' / 'passphrase'}")
            elif passphrase is None:
                passphrase = signing_passphrase()  # the identity exists: signing_identity_create refuses below
            identity = signing_identity_create(
                path=out,
                passphrase=passphrase,
                common_name=options["common_name"],
                organization=options["organization"],
                years=options["years"],
                force=options["force"],
            )
        except SigningError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote a self-signed signing identity to {out}"))
        self.stdout.write(f"Subject: {identity.subject}; valid until {identity.not_valid_after:%Y-%m-%d}")
        self.stdout.write(f"Certificate SHA-256 fingerprint: {identity.fingerprint}")
        if not passphrase:
            self.stdout.write(self.style.WARNING("No passphrase: the file is readable by its owner only (mode 600)."))
