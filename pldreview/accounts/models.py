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
