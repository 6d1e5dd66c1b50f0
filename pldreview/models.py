"""Project-wide records: background jobs, the ledger and electronic signatures."""
from __future__ import annotations

import os
import socket
from datetime import UTC, timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from pldreview.constraints import in_choices


class JobState(models.TextChoices):
    """Where a background job stands. "succeeded" is the stage a run of the student calls "finished"
    (``evaluation.models.RunStatus``); both are stored values, so each keeps its word."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """One background job: what it runs, how far it got, and how it ended.

    Handlers report progress into it (``done`` of ``total``) and check ``cancel_requested``.
    A failed or cancelled job can be retried; handlers skip the work already stored, so a
    retry resumes where the job stopped.
    """

    State = JobState

    kind = models.CharField(
        max_length=100, help_text="What the job does: the short name its handler is registered under, e.g. extract"
    )
    title = models.CharField(max_length=200)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    task_result_id = models.CharField(max_length=64, blank=True)
    # Which process runs the job, so a job whose worker died can be told from one that is just slow.
    worker_host = models.CharField(max_length=255, blank=True)
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_job", "Can start, cancel and retry background jobs")]
        constraints = [
            in_choices("job_in_choices", state=JobState.values),
            # A total of 0 is "not declared yet"; once declared, progress never passes it (JobProgress).
            models.CheckConstraint(
                condition=models.Q(total=0) | models.Q(done__lte=models.F("total")), name="job_done_within_total"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_state_display()})"

    def get_absolute_url(self) -> str:
        return reverse("pld-job-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.SUCCEEDED, self.State.FAILED, self.State.CANCELLED}

    @property
    def worker_is_gone(self) -> bool:
        """Say whether the job is marked running but the process running it no longer exists.

        Only a worker on this host can be checked; elsewhere the answer is False and the job's
        silence (``updated_at``) is what tells a stopped worker.
        """
        if self.state != self.State.RUNNING or not self.worker_pid or self.worker_host != socket.gethostname():
            return False
        try:
            os.kill(self.worker_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by another user
            return False
        return False

    def lost_its_worker(self, *, silent_for: timedelta) -> bool:
        """Say whether a running job has nobody running it: its worker process is gone, or silent for so long."""
        return self.state == self.State.RUNNING and (
            self.worker_is_gone or timezone.now() - self.updated_at > silent_for
        )

    @property
    def can_retry(self) -> bool:
        return self.state in {self.State.FAILED, self.State.CANCELLED}

    @property
    def percent(self) -> int:
        if self.total <= 0:
            return 100 if self.state == self.State.SUCCEEDED else 0
        return min(100, round(100 * self.done / self.total))

    @property
    def eta(self) -> timedelta | None:
        """Estimate the time left from the rate so far; None until there is a rate."""
        if self.state != self.State.RUNNING or not self.started_at or self.done <= 0 or self.total <= 0:
            return None
        elapsed = timezone.now() - self.started_at
        return elapsed * (self.total - self.done) / self.done


class LedgerHead(models.Model):
    """The chain's last sequence number and hash: one row, locked by every append so the chain cannot fork."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="ledger_head_single_row")]


class LedgerEntry(models.Model):
    """One audited event, chained to the one before it: ``hash = SHA-256(prev_hash ‖ payload)``.

    ``payload`` is the canonical JSON (sorted keys, no spaces) exactly as hashed; it repeats the
    sequence, time, actor, event and object so that the hash covers them too.
    """

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="The actor's username when it happened")
    # Kept beside ledger_event_idx: dropping it remakes the table on SQLite (and its append-only triggers), and on
    # PostgreSQL it brings the pattern index a prefix filter ("security.") uses.
    event = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True, help_text="app_label.model of the object, if any")
    object_id = models.CharField(max_length=64, blank=True)
    payload = models.TextField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["sequence"]
        # Each filter of the auditor's page with the sequence behind it: a filtered page walks its index newest
        # first and stops after 50, where a filter's index alone meant sorting every match (docs/ledger.md).
        indexes = [
            models.Index(fields=["object_type", "object_id", "sequence"], name="ledger_object_idx"),
            models.Index(fields=["event", "sequence"], name="ledger_event_idx"),
            models.Index(fields=["actor_name", "sequence"], name="ledger_actor_idx"),
            models.Index(fields=["created_at", "sequence"], name="ledger_created_idx"),
            # With dates the page is in time order: an event or an actor on given days is read the same way.
            models.Index(fields=["event", "created_at", "sequence"], name="ledger_event_time_idx"),
            models.Index(fields=["actor_name", "created_at", "sequence"], name="ledger_actor_time_idx"),
        ]
        permissions = [("view_ledger", "Can view, verify and download the audit ledger")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event}"


class LedgerCheckpoint(models.Model):
    """A signed statement of the ledger's head: entry #``sequence`` had ``hash`` when it was made.

    The file is a small PDF signed with the reports' identity (PAdES, RFC 3161 timestamp when
    ``PLD_TSA_URL`` is set) whose signed reason states ``ledger head #N <hash>``. An auditor keeps a copy:
    a ledger whose tail was cut, or rewritten and re-hashed, no longer holds entry #N with that hash.
    Rows are append-only, and each is itself appended to the ledger as ``ledger.checkpoint``.
    """

    sequence = models.PositiveBigIntegerField(help_text="The ledger head's sequence number that was signed")
    hash = models.CharField(max_length=64, help_text="The hash of entry #sequence that was signed")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True, help_text="Why: schedule, the ledger page, a command")
    file = models.CharField(max_length=300, help_text="The signed PDF, under MEDIA_ROOT")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the signed PDF")
    signer = models.CharField(max_length=300, help_text="The signing certificate's subject and fingerprint")
    timestamped = models.BooleanField(default=False, help_text="An RFC 3161 timestamp is in the signature")

    class Meta:
        ordering = ["-sequence", "-id"]

    def __str__(self) -> str:
        return f"Checkpoint of ledger entry #{self.sequence}"

    @property
    def file_name(self) -> str:
        return self.file.rsplit("/", 1)[-1]


class SignatureMeaning(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EDITED = "edited", "Edited"
    WRITTEN = "written", "Written"
    REORDER_PROPOSED = "reorder_proposed", "Reorder proposed"
    REORDERED = "reordered", "Reordered"
    REORDER_REJECTED = "reorder_rejected", "Reorder rejected"
    PROMOTED = "promoted", "Promoted to production"
    ROLLED_BACK = "rolled_back", "Rolled back"
    GATE_OVERRIDE_REQUESTED = "gate_override_requested", "Gate override requested"
    GATE_OVERRIDE_CONFIRMED = "gate_override_confirmed", "Gate override confirmed"
    TOKEN_REVOKED = "token_revoked", "Token revoked"
    REPORT_SIGNED = "report_signed", "Report signed"
    ACCOUNT_CHANGE_REQUESTED = "account_change_requested", "Account change requested"
    ACCOUNT_CHANGE_CONFIRMED = "account_change_confirmed", "Account change confirmed"
    SERVING_STOPPED = "serving_stopped", "Serving stopped"
    SERVING_RESUMED = "serving_resumed", "Serving resumed"
    DECISION_OVERRIDDEN = "decision_overridden", "Decision overridden"
    TASK_MEMBER_ADDED = "task_member_added", "Task member added"
    TASK_MEMBER_REMOVED = "task_member_removed", "Task member removed"


class SignatureAuthMethod(models.TextChoices):
    PASSWORD = "password", "Password"
    PASSWORD_TOTP = "password_totp", "Password and authenticator code"
    OIDC = "oidc", "Re-authentication at the OpenID Connect identity provider"
    SAML = "saml", "Re-authentication at the SAML identity provider"
    PASSKEY = "passkey", "Passkey"


class Signature(models.Model):
    """An electronic signature (21 CFR Part 11): who signed what content, meaning what, when and why.

    The signer's printed name is copied at signing, so a later rename never changes what was signed.
    Rows are append-only: database triggers refuse UPDATE (and DELETE on PostgreSQL).
    """

    Meaning = SignatureMeaning

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signatures")
    username = models.CharField(max_length=150, help_text="The signer's username at signing")
    full_name = models.CharField(max_length=300, help_text="The signer's printed name at signing")
    signed_at = models.DateTimeField(default=timezone.now)
    meaning = models.CharField(max_length=30, choices=Meaning.choices)
    reason = models.TextField(blank=True)
    content_sha256 = models.CharField(
        max_length=64, validators=[RegexValidator(r"^[0-9a-f]{64}$", "A SHA-256 in lowercase hex.")],
        help_text="SHA-256 of the exact content signed",
    )
    reauth_policy = models.CharField(max_length=20, help_text="PLD_SIGNING_REAUTH in force at signing")
    password_checked = models.BooleanField(help_text="The password was entered and checked for this signing")
    second_factor_checked = models.BooleanField(default=False)
    auth_method = models.CharField(
        max_length=20, choices=SignatureAuthMethod.choices, default=SignatureAuthMethod.PASSWORD,
        help_text="How the signer's identity was checked for this signing (or, in a signing window, last checked)",
    )

    AuthMethod = SignatureAuthMethod

    class Meta:
        ordering = ["signed_at", "id"]
        constraints = [
            in_choices("signature_in_choices", meaning=SignatureMeaning.values, auth_method=SignatureAuthMethod.values)
        ]

    def __str__(self) -> str:
        return self.manifestation

    @property
    def manifestation(self) -> str:
        """Return the §11.50 line: printed name, date and time with zone, and meaning."""
        when = self.signed_at.astimezone(UTC)
        return (
            f"{self.get_meaning_display()} by {self.full_name} on {when:%Y-%m-%d %H:%M:%S} UTC"
            f" — meaning: {self.get_meaning_display()}"
        )
