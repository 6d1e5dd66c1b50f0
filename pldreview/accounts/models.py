"""What an account needs beyond Django's user: a forced password change, when it last gained power, and the
requests through which two Admins change who may do what."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from pldreview.constraints import in_choices
from pldreview.signatures import account_change_content_sha256


class AccountState(models.Model):
    """Per-user security state: set ``must_change_password`` and the user can do nothing but choose a new one.

    ``privileged_at`` is when a confirmed request last created, activated or granted a role to the account: for
    ``PLD_PRIVILEGE_COOLDOWN_HOURS`` after it, the account is never the second person of a two-person control.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_state")
    must_change_password = models.BooleanField(default=False)
    privileged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("manage_users", "Create and deactivate users, grant and revoke roles, unlock and reset accounts"),
            ("view_security_events", "Read the security events in the ledger"),
        ]

    def __str__(self) -> str:
        return f"account state of user {self.user_id}"


class AccountChangeKind(models.TextChoices):
    CREATE = "create_account", "Create an account"
    GRANT_ROLE = "grant_role", "Grant a role"
    REVOKE_ROLE = "revoke_role", "Revoke a role"
    RESET_PASSWORD = "reset_password", "Force a password reset"
    RESET_SECOND_FACTOR = "reset_second_factor", "Reset the second factor"
    UNLOCK = "unlock", "Unlock failed logins"
    ACTIVATE = "activate", "Activate a deactivated account"


class AccountChangeStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a second Admin"
    CONFIRMED = "confirmed", "Confirmed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class AccountChangeRequest(models.Model):
    """One Admin's request to change an account, which takes effect only when a different Admin confirms it.

    Both steps are electronic signatures over the same content (what changes, for whom). The requester, the
    account concerned and nobody else confirm: the database refuses a confirmation by either, and any change
    of what was asked or of a settled request (triggers in ``0004_account_change_request``).
    """

    Kind = AccountChangeKind
    Status = AccountChangeStatus

    kind = models.CharField(max_length=30, choices=Kind.choices)
    target = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="account_changes")
    # The account's username when asked: what the signatures are over (a created account has no other name yet).
    target_username = models.CharField(max_length=150)
    params = models.JSONField(default=dict, blank=True, help_text="The role, or a new account's names and roles")
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    request_signature = models.ForeignKey(
        "pldreview.Signature", on_delete=models.PROTECT, related_name="account_change_requests"
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirm_signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT,
        related_name="account_change_confirmations",
    )
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            in_choices("account_change_in_choices", kind=AccountChangeKind.values, status=AccountChangeStatus.values),
            models.CheckConstraint(condition=~models.Q(reason=""), name="account_change_has_reason"),
            models.CheckConstraint(
                condition=~models.Q(requested_by=models.F("target")), name="account_change_not_for_oneself"
            ),
            models.CheckConstraint(
                condition=models.Q(confirmed_by__isnull=True)
                | (~models.Q(confirmed_by=models.F("requested_by")) & ~models.Q(confirmed_by=models.F("target"))),
                name="account_change_second_admin",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status="confirmed", confirmed_by__isnull=False, confirmed_at__isnull=False,
                             confirm_signature__isnull=False)
                    | (~models.Q(status="confirmed") & models.Q(confirmed_by__isnull=True,
                                                               confirm_signature__isnull=True))
                ),
                name="account_change_confirmed_by_someone",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status="withdrawn", withdrawn_by__isnull=False, withdrawn_at__isnull=False)
                    | (~models.Q(status="withdrawn") & models.Q(withdrawn_by__isnull=True))
                ),
                name="account_change_withdrawn_by_someone",
            ),
            models.UniqueConstraint(fields=["request_signature"], name="account_change_request_signature_once"),
            models.UniqueConstraint(
                fields=["confirm_signature"], condition=models.Q(confirm_signature__isnull=False),
                name="account_change_confirm_signature_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.target_username} (request {self.pk})"

    @property
    def role(self) -> str:
        return str(self.params.get("role", ""))

    @property
    def roles(self) -> list[str]:
        """Return the roles the change gives: a new account's roles, or the one role granted."""
        if self.kind == AccountChangeKind.CREATE:
            return list(self.params.get("roles", []))
        return [self.role] if self.kind == AccountChangeKind.GRANT_ROLE else []

    @property
    def summary(self) -> str:
        """Return the change in a few words, as the pending list shows it."""
        if self.kind == AccountChangeKind.CREATE:
            names = " ".join(filter(None, [self.params.get("first_name", ""), self.params.get("last_name", "")]))
            return f"Create {self.target_username} ({names}) with roles {', '.join(self.roles) or 'none'}"
        if self.kind in (AccountChangeKind.GRANT_ROLE, AccountChangeKind.REVOKE_ROLE):
            return f"{self.get_kind_display()} {self.role} for {self.target_username}"
        return f"{self.get_kind_display()} for {self.target_username}"

    def content_sha256(self) -> str:
        """Return the hash both signatures of this request are over."""
        return account_change_content_sha256(change=self.kind, username=self.target_username, params=self.params)
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
