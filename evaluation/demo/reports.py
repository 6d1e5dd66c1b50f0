"""Demo step: a signing identity and one signed report on nda-demo's production version."""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth import get_user_model

from evaluation.models import Report
from evaluation.release.pdf_signing import signing_identity_create, signing_passphrase_keep
from evaluation.release.reports import report_generate, report_path
from pldreview.roles import ADMIN, AUDITOR
from rules.models import PromptVersion

DEMO_TASK = "nda-demo"
DEMO_SIGNER = "PLD Review demo signer"


def _demo_identity(stdout: TextIO) -> None:
    path = Path(settings.PLD_SIGNING_P12)
    if path.exists():
        return
    # The passphrase is PLD_SIGNING_PASSPHRASE, else the one scripts/setup keeps in var/signing/passphrase (made
    # here when seed_demo runs in a checkout scripts/setup has not prepared).
    passphrase, _made = signing_passphrase_keep()
    identity = signing_identity_create(
        path=path, passphrase=passphrase, common_name=DEMO_SIGNER, organization="PLD Review demo"
    )
    stdout.write(f"  created the demo signing identity {path} (certificate SHA-256 {identity.fingerprint})\n")


def _demo_user() -> object | None:
    users = get_user_model().objects.filter(is_active=True).order_by("id")
    return users.filter(groups__name=AUDITOR).first() or users.filter(groups__name=ADMIN).first()


def seed_report(stdout: TextIO) -> None:
    """Ensure the demo identity exists and nda-demo's production version has one signed report."""
    _demo_identity(stdout)
    version = PromptVersion.objects.in_production().filter(task__name=DEMO_TASK).first()
    if version is None:
        stdout.write(f"  skipped: {DEMO_TASK} has no prompt version in production yet\n")
        return
    report = Report.objects.filter(prompt_version=version, status=Report.Status.READY).order_by("id").first()
    if report is None:
        user = _demo_user()
        if user is None:
            stdout.write("  skipped: no Auditor or Admin user to generate the report as\n")
            return
        report = report_generate(prompt_version=version, user=user)
        if report.status != Report.Status.READY:
            stdout.write(f"  report {report.pk} on {version} was not issued: {report.error}\n")
            return
        stdout.write(f"  signed report {report.pk} on {version} ({report.size // 1024} KiB)\n")
    else:
        stdout.write(f"  report {report.pk} on {version} is already issued\n")
    stdout.write(f"  verify it: python manage.py verify_report {report_path(report)}\n")
