"""Evaluation runs and their predictions, promotions, API tokens and signed reports."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from rules.models import Example, PromptVersion, Split, Task


class EvaluationRun(models.Model):
    """One run of the student on a split of a task, with everything needed to reproduce it."""

    class Mode(models.TextChoices):
        ZERO_SHOT = "zero-shot", "Zero-shot"
        FEW_SHOT = "few-shot", "Few-shot"
        PLD = "pld", "PLD (compiled rules)"
        COT = "cot", "Chain-of-thought"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="evaluation_runs")
    mode = models.CharField(max_length=12, choices=Mode.choices)
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="evaluation_runs"
    )
    prompt_text = models.TextField(blank=True, help_text="The rules prefix as given (pld from a file)")
    prompt_sha256 = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.TEST)
    limit = models.PositiveIntegerField(null=True, blank=True)
    seed = models.IntegerField(default=0)
    k_shot = models.PositiveIntegerField(default=0)
    calibrate = models.BooleanField(default=False)
    options = models.JSONField(default=dict, blank=True)
    # The student, recorded so the run can be reproduced.
    model_path = models.CharField(max_length=500)
    model_sha256 = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    quantization = models.CharField(max_length=50, blank=True)
    llama_cpp_version = models.CharField(max_length=30, blank=True)
    n_ctx = models.PositiveIntegerField(default=0)
    n_threads = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    n_examples = models.PositiveIntegerField(default=0)
    # {"macro_f1", "macro_f1_ci95", "accuracy", "per_class", "confusion", "latency_ms_p50", ...}
    metrics = models.JSONField(default=dict, blank=True)
    rule_adherence = models.FloatField(null=True, blank=True)
    adherence = models.JSONField(default=dict, blank=True)
    data_sha256 = models.CharField(max_length=64, blank=True, help_text="Hash of the evaluated examples")
    error = models.TextField(blank=True)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_evaluation", "Can start, cancel and resume evaluation runs")]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} ({self.get_mode_display()}, {self.task.name}/{self.split})"

    def get_absolute_url(self) -> str:
        return reverse("pld-evaluation-detail", args=[self.pk])

    @property
    def macro_f1(self) -> float | None:
        value = self.metrics.get("macro_f1")
        return float(value) if value is not None else None


class Prediction(models.Model):
    """The student's decision on one example in one run."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="predictions")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="predictions")
    label = models.CharField(max_length=100)
    probabilities = models.JSONField(default=dict)
    correct = models.BooleanField()
    latency_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    tokens_processed = models.PositiveIntegerField(default=0)
    output_text = models.TextField(blank=True, help_text="Generated reasoning (cot mode)")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "example"], name="prediction_one_per_example")]


class Promotion(models.Model):
    """An Admin putting a prompt version into production (or rolling back to an earlier one)."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="promotions")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="promotions")
    from_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by_promotions"
    )
    evaluation_run = models.ForeignKey(EvaluationRun, null=True, blank=True, on_delete=models.PROTECT)
    is_rollback = models.BooleanField(default=False)
    reason = models.TextField()
    override_justification = models.TextField(blank=True, help_text="Why the gate was overridden, if it was")
    gate = models.JSONField(default=dict, blank=True, help_text="The gate's evidence at promotion time")
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    # The Admin's electronic signature (meaning "Promoted to production" or "Rolled back", over the version's
    # text). Nullable only for promotions recorded before signatures existed; the service requires it.
    signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="promotions"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("promote_prompt", "Can promote a prompt version to production")]
        constraints = [
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False), name="promotion_signature_once"
            ),
        ]


class ApiToken(models.Model):
    """A bearer token for the classify API; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a token")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The Admin's electronic signature of the revocation (meaning "Token revoked").
    revoked_signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="revoked_tokens"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_api_tokens", "Can create and revoke API tokens")]
        constraints = [
            models.UniqueConstraint(
                fields=["revoked_signature"], condition=models.Q(revoked_signature__isnull=False),
                name="api_token_revoked_signature_once",
            ),
        ]

    @staticmethod
    def hash_token(raw: str) -> str:
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Report(models.Model):
    """A signed PDF audit report as issued: kept forever so a copy can be matched later."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="reports")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    file = models.CharField(max_length=500, blank=True, help_text="Path under MEDIA_ROOT")
    size = models.PositiveIntegerField(default=0)
    signer = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL)
    generated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    # A person's electronic signature of the issued PDF (meaning "Report signed", over its bytes), given
    # after reading it; the PDF's own digital signature is the server's.
    signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="reports"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False), name="report_signature_once"
            ),
        ]
        permissions = [
            ("generate_report", "Can generate signed reports"),
            ("verify_report", "Can verify a report file"),
        ]

    def get_absolute_url(self) -> str:
        return reverse("pld-report-detail", args=[self.pk])
