"""What an account needs beyond Django's user: a forced password change, and the account-management permissions."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class AccountState(models.Model):
    """Per-user security state: set ``must_change_password`` and the user can do nothing but choose a new one."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_state")
    must_change_password = models.BooleanField(default=False)

    class Meta:
        permissions = [
            ("manage_users", "Create and deactivate users, grant and revoke roles, unlock and reset accounts"),
            ("view_security_events", "Read the security events in the ledger"),
        ]

    def __str__(self) -> str:
        return f"account state of user {self.user_id}"


class FailureCounter(models.Model):
    """Failed attempts counted under one key, and until when that key must wait before its next attempt.

    The keys (``pldreview/accounts/lockout.py``): an account, an account at one address, the unknown usernames
    tried from one address (so invented names cannot make unbounded keys), and a device cookie of one account.
    """

    class Scope(models.TextChoices):
        ACCOUNT = "account", "account"
        ACCOUNT_ADDRESS = "account_address", "account at an address"
        UNKNOWN_ADDRESS = "unknown_address", "unknown usernames at an address"
        DEVICE = "device", "known device of an account"

    key = models.CharField(max_length=400, unique=True)
    scope = models.CharField(max_length=20, choices=Scope.choices)
    username = models.CharField(max_length=150, blank=True, db_index=True)
    ip_address = models.CharField(max_length=45, blank=True, db_index=True)
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField(db_index=True)
    delayed_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.failures} failures"


class SecurityEventWindow(models.Model):
    """The open window of unauthenticated security events for one account (or unknown accounts) at one address.

    Its first event is written to the ledger at once; the rest are counted here and written as one closing entry
    with the counts when the window closes (``pldreview/accounts/security_log.py``).
    """

    username = models.CharField(max_length=150, blank=True)  # blank: usernames that do not exist
    ip_address = models.CharField(max_length=45, blank=True)
    opened_at = models.DateTimeField()
    closes_at = models.DateTimeField(db_index=True)
    counts = models.JSONField(default=dict, blank=True)
    # A few of the unknown usernames tried, for the Auditor (a typo of a real name shows); never more than five.
    unknown_usernames = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["username", "ip_address"], name="one_open_security_window_per_key"),
        ]

    def __str__(self) -> str:
        return f"security events of {self.username or 'unknown accounts'} at {self.ip_address}"
