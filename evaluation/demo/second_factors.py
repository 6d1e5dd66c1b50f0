"""Demo step: enrol each demo user's second factor, so the demo runs with MFA required as production does.

pyotp only computes the current codes that ``manage.py demo_logins --codes`` prints; allauth verifies them.
"""
from __future__ import annotations

from typing import TextIO

import pyotp
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.utils import decrypt
from django.contrib.auth.models import User
from django.db import transaction

from evaluation.demo.users import DEMO_USERS
from pldreview.ledger import ledger_append


def demo_usernames() -> list[str]:
    """Return the demo users' names in the order the demo prints them."""
    return [username for username, _role, _password in DEMO_USERS]


@transaction.atomic
def seed_second_factors(stdout: TextIO) -> None:
    """Enrol a TOTP authenticator and recovery codes for every demo user who has none; a rerun changes nothing."""
    for user in User.objects.filter(username__in=demo_usernames()).order_by("username"):
        if Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
            continue
        TOTP.activate(user, generate_totp_secret())
        RecoveryCodes.activate(user)
        ledger_append(event="security.mfa_enrolled", actor=None, obj=user, facts={"type": "totp", "by": "seed_demo"})
        stdout.write(f"  enrolled a TOTP authenticator for {user.username}\n")


def demo_totp(username: str) -> tuple[str, str] | None:
    """Return the demo user's TOTP secret and current code, or None when they have no authenticator."""
    authenticator = Authenticator.objects.filter(user__username=username, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        return None
    secret = decrypt(authenticator.data["secret"])
    return secret, pyotp.TOTP(secret).now()
