"""Evaluation runs and their predictions, promotions, API tokens and signed reports."""
from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from pldreview.constraints import in_choices
from rules.models import Example, PromptVersion, Split, Task


class EvaluationRunMode(models.TextChoices):
    ZERO_SHOT = "zero-shot", "Zero-shot"
    FEW_SHOT = "few-shot", "Few-shot"
    PLD = "pld", "PLD (compiled rules)"
    COT = "cot", "Chain-of-thought"


class EvaluationRunBackend(models.TextChoices):
    LLAMA_CPP = "llama_cpp", "In-process llama.cpp"
    SERVER = "server", "Inference server"


class RunStatus(models.TextChoices):
    """Where a run of the student stands: an evaluation run, each of its shards and a rule-impact run alike.

    "finished" is the stage a background job calls "succeeded" (``pldreview.models.Job.State``): the work is done
    and its results are saved. The two words are stored values, so each keeps its own.
    """

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class EvaluationRun(models.Model):
    """One run of the student on a split of a task, with everything needed to reproduce it."""

    Mode = EvaluationRunMode
    Backend = EvaluationRunBackend
    Status = RunStatus

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
    # Which backend decided (PLD_STUDENT_BACKEND), and for a server where and which model answered.
    student_backend = models.CharField(max_length=12, choices=Backend.choices, default=Backend.LLAMA_CPP)
    student_base_url = models.CharField(max_length=500, blank=True)
    student_model = models.CharField(max_length=200, blank=True, help_text="The model name the server answered with")
    scoring = models.CharField(max_length=200, blank=True, help_text="How the label scores were computed")
    n_approximate = models.PositiveIntegerField(
        default=0, help_text="Decisions whose label scores are approximations (the server backend)"
    )
    n_ctx = models.PositiveIntegerField(default=0)
    n_threads = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    n_examples = models.PositiveIntegerField(default=0)
    # {"macro_f1", "macro_f1_ci95", "accuracy", "per_class", "confusion", "latency_ms_p50", ...}
    metrics = models.JSONField(default=dict, blank=True)
    rule_adherence = models.FloatField(null=True, blank=True)
    adherence = models.JSONField(default=dict, blank=True)
    data_sha256 = models.CharField(max_length=64, blank=True, help_text="Hash of the evaluated examples")
    # The whole test split the examples were drawn from, as it was when the run was created
    # (rules.datasets.frozen_split.split_sha256): the gate judges only runs whose split is the frozen one.
    split_sha256 = models.CharField(max_length=64, blank=True, help_text="Hash of the whole test split at creation")
    error = models.TextField(blank=True)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_evaluation", "Can start, cancel and resume evaluation runs")]
        constraints = [
            in_choices(
                "evaluation_run_in_choices", mode=EvaluationRunMode.values, status=RunStatus.values,
                student_backend=EvaluationRunBackend.values,
                split=Split.values,
            ),
        ]

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

    run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="predictions")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="predictions")
    label = models.CharField(max_length=100)
    probabilities = models.JSONField(default=dict)
    correct = models.BooleanField()
    latency_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    tokens_processed = models.PositiveIntegerField(default=0)
    output_text = models.TextField(blank=True, help_text="Generated reasoning (cot mode)")
    approximation = models.TextField(blank=True, help_text="Why the label scores are approximate; empty when exact")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "example"], name="prediction_one_per_example")]


class LeasedShard(models.Model):
    """What every shard holds: its examples, who holds it under which lease, and what happened to it.

    Evaluation runs and rule impact runs are cut into shards the same way and leased by the same code
    (``evaluation/runs/shards.py``); each concrete shard adds the foreign key to its run as ``run``.
    """

    Status = RunStatus

    number = models.PositiveIntegerField(help_text="1, 2, … in the run's example order")
    example_ids = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Who holds it: worker id, host and pid")
    attempts = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    task_result_id = models.CharField(max_length=64, blank=True, help_text="The django-tasks result it was queued as")
    # [{"at", "event", "message"}]: retries after a lost worker, failures, cancellations.
    events = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"Shard {self.number} of run {self.run_id} ({self.get_status_display()})"  # type: ignore[attr-defined]


class EvaluationShard(LeasedShard):
    """A slice of a run (whole shared-context groups) that one worker decides at a time.

    Each shard is its own django-tasks task, so any number of ``db_worker`` processes share a run.
    The worker holding a shard renews ``lease_expires_at`` while it decides; a shard whose lease ran
    out (its worker died) is queued again, and ``events`` says so on the run's page.
    """

    run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="shards")

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="evaluation_shard_one_per_number"),
            in_choices("evaluation_shard_in_choices", status=RunStatus.values),
            # A running shard is always held under a lease, so a dead worker's shard can be found.
            models.CheckConstraint(
                condition=~models.Q(status="running") | models.Q(lease_expires_at__isnull=False),
                name="evaluation_shard_running_has_lease",
            ),
        ]


class PromotionOverrideStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a second Admin"
    CONFIRMED = "confirmed", "Confirmed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class PromotionOverride(models.Model):
    """One Admin's request to promote a version whose gate fails, and a second Admin's confirmation.

    The request carries the written justification and the gate's failing figures as the requester
    saw them. A different Admin confirms it; only then is the version promoted (the ``Promotion``
    points back here). The database refuses a confirmation by the requester and any change after a
    request is settled. Each step is an electronic signature (``request_signature``, ``confirm_signature``).
    """

    Status = PromotionOverrideStatus

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="promotion_overrides")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="promotion_overrides")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(help_text="Why this version should serve production")
    justification = models.TextField(help_text="Why promoting against the failing gate is right")
    gate = models.JSONField(default=dict, blank=True, help_text="The gate's failing evidence when requested")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    # Part 11: both steps are signings, each over the version's text.
    request_signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="override_requests"
    )
    confirm_signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="override_confirmations"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(justification=""), name="promotion_override_has_justification"
            ),
            models.CheckConstraint(
                condition=models.Q(confirmed_by__isnull=True) | ~models.Q(confirmed_by=models.F("requested_by")),
                name="promotion_override_second_admin",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status="confirmed", confirmed_by__isnull=False, confirmed_at__isnull=False)
                    | (~models.Q(status="confirmed") & models.Q(confirmed_by__isnull=True))
                ),
                name="promotion_override_confirmed_by_someone",
            ),
            models.UniqueConstraint(
                fields=["prompt_version"], condition=models.Q(status="pending"),
                name="promotion_override_one_pending_per_version",
            ),
            models.UniqueConstraint(
                fields=["request_signature"], condition=models.Q(request_signature__isnull=False),
                name="promotion_override_request_signature_once",
            ),
            in_choices("promotion_override_in_choices", status=PromotionOverrideStatus.values),
            models.CheckConstraint(
                condition=(
                    models.Q(status="withdrawn", withdrawn_by__isnull=False, withdrawn_at__isnull=False)
                    | (~models.Q(status="withdrawn") & models.Q(withdrawn_by__isnull=True))
                ),
                name="promotion_override_withdrawn_by_someone",
            ),
        ]

    def __str__(self) -> str:
        return f"Override request {self.pk} for {self.prompt_version}"


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
    # A failing gate is overridden by two Admins: the one who asked (here) and the one who promoted.
    override = models.OneToOneField(
        PromotionOverride, null=True, blank=True, on_delete=models.PROTECT, related_name="promotion"
    )
    override_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
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
            # An override names its request and two different Admins; a promotion without one names neither.
            models.CheckConstraint(
                condition=(
                    models.Q(override_justification="", override__isnull=True, override_requested_by__isnull=True)
                    | (
                        ~models.Q(override_justification="")
                        & models.Q(override__isnull=False, override_requested_by__isnull=False)
                        & ~models.Q(override_requested_by=models.F("promoted_by"))
                    )
                ),
                name="promotion_override_by_two_admins",
            ),
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False), name="promotion_signature_once"
            ),
        ]

    @property
    def overridden(self) -> bool:
        return bool(self.override_justification)


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
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from this moment on; empty = no expiry")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty = PLD_API_DEFAULT_RATE_LIMIT"
    )
    tasks = models.ManyToManyField(Task, blank=True, related_name="+", help_text="Tasks it may classify; none = all")

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_api_tokens", "Can create and revoke API tokens")]
        constraints = [
            models.UniqueConstraint(
                fields=["revoked_signature"], condition=models.Q(revoked_signature__isnull=False),
                name="api_token_revoked_signature_once",
            ),
            models.CheckConstraint(
                condition=models.Q(revoked_signature__isnull=True) | models.Q(revoked_at__isnull=False),
                name="api_token_signed_revocation_is_revoked",
            ),
        ]

    @staticmethod
    def hash_token(raw: str) -> str:
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def rate_limit(self) -> int:
        """Return the requests per minute this token may make."""
        if self.rate_limit_per_minute is not None:
            return self.rate_limit_per_minute
        return int(settings.PLD_API_DEFAULT_RATE_LIMIT)


class ApiTokenWindow(models.Model):
    """How many requests one token made in one clock minute: the rate limit's counter, shared by all workers."""

    token = models.ForeignKey(ApiToken, on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "window_start"], name="api_token_window_unique_minute"),
        ]


class InputRetention(models.TextChoices):
    FULL = "full", "Full text"
    HASH = "hash", "Hash only"
    REDACT = "redact", "Redacted by the configured patterns"


class DecisionLogPolicy(models.Model):
    """A task's own rule for logged inputs, overriding PLD_DECISION_INPUT_RETENTION and the retention period."""

    task = models.OneToOneField(Task, on_delete=models.PROTECT, related_name="decision_log_policy")
    input_retention = models.CharField(max_length=10, choices=InputRetention.choices)
    retention_days = models.PositiveIntegerField(null=True, blank=True, help_text="Empty = PLD_DECISION_RETENTION_DAYS")
    history = HistoricalRecords()

    class Meta:
        constraints = [in_choices("decision_log_policy_in_choices", input_retention=InputRetention.values)]


class ClassifyCallSource(models.TextChoices):
    API = "api", "HTTP API"
    COMMAND = "command", "manage.py classify"


class ClassifyCall(models.Model):
    """One logged production decision: which version decided what, for which integrator, how surely."""

    Source = ClassifyCallSource

    request_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    api_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.PROTECT, related_name="calls")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="classify_calls")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="classify_calls")
    prompt_sha256 = models.CharField(max_length=64)
    model_sha256 = models.CharField(max_length=64)
    label = models.CharField(max_length=100)
    probabilities = models.JSONField(default=dict)
    top_probability = models.FloatField()
    latency_ms = models.FloatField(help_text="From the request's arrival to the decision")
    input_retention = models.CharField(max_length=10, choices=InputRetention.choices)
    # Empty when only the hash is kept; redacted text when the task redacts.
    inputs = models.JSONField(default=dict, blank=True)
    input_sha256 = models.CharField(max_length=64)
    # Who computed the decision (PLD_STUDENT_BACKEND): this process's llama.cpp, or an inference server
    # (its URL and the model name it answered with), and why its scores are approximate (empty: exact).
    student_backend = models.CharField(
        max_length=12, choices=EvaluationRunBackend.choices, default=EvaluationRunBackend.LLAMA_CPP
    )
    student_base_url = models.CharField(max_length=500, blank=True)
    student_model = models.CharField(max_length=200, blank=True, help_text="The model name the server answered with")
    approximation = models.TextField(blank=True, help_text="Why the label scores are approximate; empty when exact")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["task", "created_at"], name="classify_call_task_day_idx")]
        constraints = [
            in_choices(
                "classify_call_in_choices", source=ClassifyCallSource.values, input_retention=InputRetention.values,
                student_backend=EvaluationRunBackend.values,
            ),
        ]
        permissions = [
            ("watch_production", "Can watch a task's production decisions and export them"),
            ("give_feedback", "Can mark a logged production decision wrong"),
            ("set_decision_retention", "Can set how a task's logged inputs are kept and for how long"),
            ("override_decision", "Can override a logged production decision (a signing)"),
        ]

    def __str__(self) -> str:
        return f"Call {self.request_id} ({self.task.name} → {self.label})"

    @property
    def inputs_kept(self) -> bool:
        return self.input_retention != InputRetention.HASH and bool(self.inputs)


# Upper bounds (ms) of the latency histogram's buckets; the last bucket takes everything slower.
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000)
LATENCY_FIELDS = tuple(f"latency_le_{bound}" for bound in LATENCY_BUCKETS_MS) + ("latency_over",)


class ClassifyCallRollup(models.Model):
    """Derived counts of logged calls per task, prompt version, day and label: what the production page reads.

    Written in the same transaction as each ClassifyCall (``evaluation.production.rollups``) and decremented by
    the purge; ``manage.py rebuild_rollups [--check]`` recounts them from the calls. Not audited: they hold
    nothing the calls do not (docs/production.md, "Rollups").
    """

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="+")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    day = models.DateField(help_text="The call's date in TIME_ZONE")
    label = models.CharField(max_length=100)
    calls = models.BigIntegerField(default=0)
    # Millionths, summed as integers, so a recount gives exactly the same number whatever the order.
    top_probability_micros = models.BigIntegerField(default=0)
    latency_le_50 = models.BigIntegerField(default=0)
    latency_le_100 = models.BigIntegerField(default=0)
    latency_le_250 = models.BigIntegerField(default=0)
    latency_le_500 = models.BigIntegerField(default=0)
    latency_le_1000 = models.BigIntegerField(default=0)
    latency_le_2500 = models.BigIntegerField(default=0)
    latency_le_5000 = models.BigIntegerField(default=0)
    latency_over = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "day", "prompt_version", "label"], name="classify_rollup_key"),
        ]


class DecisionFeedback(models.Model):
    """A Reviewer's statement that a logged decision was wrong: the right label, why, who, when. Never changed."""

    call = models.OneToOneField(ClassifyCall, null=True, on_delete=models.SET_NULL, related_name="feedback")
    # Kept when the call is purged, so the provenance outlives the call's retention.
    request_id = models.UUIDField()
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    logged_label = models.CharField(max_length=100)
    correct_label = models.CharField(max_length=100)
    reason = models.TextField()
    example = models.OneToOneField(Example, null=True, on_delete=models.PROTECT, related_name="feedback")
    given_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # The electronic signature of this statement, once the signing service exists (see docs/production.md).
    signature_ref = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]


class DecisionOverride(models.Model):
    """A Reviewer's or Admin's signed statement that a logged decision is overridden: the right label, why, who.

    Append-only (database triggers refuse UPDATE and DELETE, pldreview/db_triggers.py) and on the ledger. It
    names its call by request id, not by a foreign key: the decision log's retention purge deletes calls, and
    the override outlives it as the record of a human's decision.
    """

    request_id = models.UUIDField(unique=True)
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="+")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    # The token that made the call: its webhooks hear of the override, and the decisions API answers it.
    api_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    logged_label = models.CharField(max_length=100)
    overridden_label = models.CharField(max_length=100)
    reason = models.TextField()
    overridden_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Part 11: the override is a signing (meaning "Decision overridden") over decision_override_content_sha256.
    signature = models.ForeignKey("pldreview.Signature", on_delete=models.PROTECT, related_name="decision_overrides")
    # The feedback example that follows from it (none when the call kept only a hash of its input).
    feedback = models.OneToOneField(
        DecisionFeedback, null=True, blank=True, on_delete=models.PROTECT, related_name="override"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(reason=""), name="decision_override_has_reason"),
            models.CheckConstraint(
                condition=~models.Q(overridden_label=models.F("logged_label")),
                name="decision_override_changes_the_label",
            ),
            models.UniqueConstraint(fields=["signature"], name="decision_override_signature_once"),
        ]

    def __str__(self) -> str:
        return f"Override of {self.request_id}: {self.logged_label} → {self.overridden_label}"


WEBHOOK_EVENTS = ("decision.overridden", "task.stopped", "task.resumed")


class Webhook(models.Model):
    """An integrator's URL that hears, for one API token, of overridden decisions and stopped or resumed tasks.

    ``secret`` signs every body (HMAC-SHA256); it is shown once, when the webhook is registered, and kept
    because the server must sign with it (docs/production.md, "Webhooks").
    """

    token = models.ForeignKey(ApiToken, on_delete=models.PROTECT, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Webhook {self.pk} → {self.url}"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class WebhookDeliveryState(models.TextChoices):
    PENDING = "pending", "Being delivered"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (no attempts left)"


class WebhookDelivery(models.Model):
    """One event for one webhook: the exact body sent, and where its delivery stands."""

    State = WebhookDeliveryState

    webhook = models.ForeignKey(Webhook, on_delete=models.PROTECT, related_name="deliveries")
    event_id = models.UUIDField(unique=True, default=uuid.uuid4)
    event = models.CharField(max_length=40)
    body = models.TextField(help_text="The JSON body as sent, byte for byte (UTF-8)")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            in_choices("webhook_delivery_in_choices", state=WebhookDeliveryState.values, event=list(WEBHOOK_EVENTS)),
        ]


class WebhookAttempt(models.Model):
    """One try at delivering an event: when, how long, the answer's status code or the error. Append-only."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique_number"),
        ]


class ReportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Report(models.Model):
    """A signed PDF audit report as issued: kept forever so a copy can be matched later."""

    Status = ReportStatus

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
    # The copy a person signed off: the issued file byte for byte, then a second PAdES signature naming them,
    # the meaning and the time (an incremental update). A new file; the issued one stays as it was.
    signed_off_file = models.CharField(max_length=500, blank=True, help_text="Path under MEDIA_ROOT")
    signed_off_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    signed_off_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # The ledger head when the report was signed, also stated in the PDF: an older report catches a
    # ledger rewritten after it was issued (``verify_report --ledger``).
    ledger_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    ledger_hash = models.CharField(max_length=64, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False), name="report_signature_once"
            ),
            in_choices("report_in_choices", status=ReportStatus.values),
            # A ready report is one whose file and hash are stored (report_build); downloads rely on both.
            models.CheckConstraint(
                condition=~models.Q(status="ready") | (~models.Q(sha256="") & ~models.Q(file="")),
                name="report_ready_has_file",
            ),
            # A signed-off copy exists only for a report a person signed, and then with its hash.
            models.CheckConstraint(
                condition=models.Q(signed_off_file="", signed_off_sha256="")
                | (models.Q(signature__isnull=False) & ~models.Q(signed_off_file="") & ~models.Q(signed_off_sha256="")),
                name="report_signed_off_copy_is_signed",
            ),
        ]
        permissions = [
            ("generate_report", "Can generate signed reports"),
            ("verify_report", "Can verify a report file"),
        ]

    def get_absolute_url(self) -> str:
        return reverse("pld-report-detail", args=[self.pk])


class ServingStop(models.Model):
    """An Admin stopping a task's production serving, or resuming it: one append-only row each (EU AI Act Art. 14).

    A task is stopped when its latest row is a stop. Rows are never changed or deleted (database triggers); a
    resume is a new row naming the stop it lifts, and ``verify_ledger`` finds a row changed, removed or added
    behind the ledger's back.
    """

    class Action(models.TextChoices):
        STOP = "stop", "Stopped"
        RESUME = "resume", "Resumed"

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="serving_stops")
    action = models.CharField(max_length=10, choices=Action.choices)
    # A resume lifts exactly one stop; a stop lifts none.
    lifts = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="lifted_by"
    )
    reason = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The Admin's electronic signature ("Serving stopped" / "Serving resumed", over the task and the action).
    signature = models.OneToOneField("pldreview.Signature", on_delete=models.PROTECT, related_name="serving_stop")
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("stop_serving", "Can stop and resume a task's production serving")]
        indexes = [models.Index(fields=["task", "-id"], name="servingstop_task_latest")]
        constraints = [
            in_choices("servingstop_action_in_choices", action=["stop", "resume"]),
            models.CheckConstraint(
                condition=models.Q(action="stop", lifts__isnull=True) | models.Q(action="resume", lifts__isnull=False),
                name="servingstop_resume_lifts_a_stop",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="servingstop_reason_given"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} serving {self.task.name} ({self.created_at:%Y-%m-%d %H:%M} UTC)"

    @property
    def is_stop(self) -> bool:
        return self.action == self.Action.STOP


class ProviderInformation(models.Model):
    """What the provider states about a task's system for its technical file (EU AI Act Annex IV, section 1).

    An Admin fills it once; the record cannot know these facts, so a blank field is listed in the technical
    file as something the organisation must still write.
    """

    task = models.OneToOneField(Task, on_delete=models.PROTECT, related_name="provider_information")
    provider_name = models.CharField(
        max_length=300, blank=True, help_text="The legal entity placing the system on the market or into service"
    )
    provider_contact = models.CharField(
        max_length=300, blank=True, help_text="Address or contact point for the authorities"
    )
    intended_purpose = models.TextField(blank=True, help_text="What the system is for, and what it is not for")
    intended_users = models.TextField(blank=True, help_text="Who operates the system (the deployer's staff)")
    affected_persons = models.TextField(blank=True, help_text="Persons or groups the decisions are about")
    deployment_context = models.TextField(
        blank=True, help_text="Where and how it is used: hardware, software, integrations"
    )
    instructions_for_use = models.TextField(blank=True, help_text="Where the deployer's instructions for use are kept")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    FIELDS = ("provider_name", "provider_contact", "intended_purpose", "intended_users", "affected_persons",
              "deployment_context", "instructions_for_use")

    def __str__(self) -> str:
        return f"Provider information of {self.task}"


class TechnicalFile(models.Model):
    """A signed technical file (Annex IV) as issued for a task and its production version: kept forever."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="technical_files")
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="technical_files"
    )
    file = models.CharField(max_length=500, help_text="The signed PDF, path under MEDIA_ROOT")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveIntegerField(default=0)
    json_file = models.CharField(max_length=500, help_text="The same facts as JSON, path under MEDIA_ROOT")
    json_sha256 = models.CharField(max_length=64, help_text="Stated in the signed PDF, so the signature covers it")
    signer = models.CharField(max_length=300, blank=True)
    generated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    ledger_sequence = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Technical file {self.pk} on {self.task}"


class RuleImpactRun(models.Model):
    """A counterfactual leave-one-out of one prompt version: every sampled example decided with all its rules
    and with each rule left out (evaluation/runs/impact.py, docs/attribution.md).

    Tied to the version and the model file's SHA-256; once finished the database refuses any change
    (migration ``0014_rule_impact``), and its decisions are append-only.
    """

    Status = RunStatus

    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="impact_runs")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="impact_runs")
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.DEV)
    sample = models.PositiveIntegerField(null=True, blank=True, help_text="How many examples were drawn; empty = all")
    seed = models.IntegerField(default=0)
    # {"example_ids": [...], "variants": [{"number", "rule_id", "revision_id"}], "prefix_tokens": {...}}
    options = models.JSONField(default=dict, blank=True)
    n_examples = models.PositiveIntegerField(default=0)
    n_rules = models.PositiveIntegerField(default=0)
    data_sha256 = models.CharField(max_length=64, blank=True, help_text="Hash of the sampled examples")
    model_path = models.CharField(max_length=500)
    model_sha256 = models.CharField(max_length=64)
    model_name = models.CharField(max_length=200, blank=True)
    llama_cpp_version = models.CharField(max_length=30, blank=True)
    n_ctx = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # {"rules": [...per rule...], "set": {...}, "full": {...}, "warnings": [...]} (impact.rule_impact_results)
    results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            in_choices("rule_impact_run_in_choices", status=RunStatus.values, split=Split.values),
            models.CheckConstraint(
                condition=~models.Q(status="finished") | models.Q(finished_at__isnull=False),
                name="rule_impact_run_finished_at",
            ),
        ]

    def __str__(self) -> str:
        return f"Rule impact {self.pk} of {self.prompt_version} ({self.split})"

    def get_absolute_url(self) -> str:
        return reverse("pld-rule-impact-detail", args=[self.pk])


class RuleImpactDecision(models.Model):
    """The student's decision on one example under one variant of an impact run (0: every rule; k: rule k left out)."""

    run = models.ForeignKey(RuleImpactRun, on_delete=models.PROTECT, related_name="decisions")
    variant = models.PositiveIntegerField(help_text="0 = the whole rule set; k = the rule at number k left out")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="+")
    label = models.CharField(max_length=100, blank=True, help_text="Empty when the example was refused (too long)")
    probabilities = models.JSONField(default=dict, blank=True)
    tokens_processed = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0.0)

    class Meta:
        ordering = ["run", "variant", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "variant", "example"], name="rule_impact_decision_once"),
        ]


class RuleImpactShard(LeasedShard):
    """A slice of an impact run's examples (whole groups) on which one worker decides every variant.

    Cut, claimed, leased and taken back from a dead worker exactly like an evaluation run's shards
    (``evaluation/runs/shards.py``); ``evaluation/runs/impact_runs.py`` decides one.
    """

    run = models.ForeignKey(RuleImpactRun, on_delete=models.PROTECT, related_name="shards")

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="rule_impact_shard_one_per_number"),
            in_choices("rule_impact_shard_in_choices", status=RunStatus.values),
            models.CheckConstraint(
                condition=~models.Q(status="running") | models.Q(lease_expires_at__isnull=False),
                name="rule_impact_shard_running_has_lease",
            ),
        ]


class DecisionExplanation(models.Model):
    """Why one decision came out as it did: the same leave-one-out for one input (a logged call or a prediction).

    Written once when computed, never changed (database triggers); a newer explanation of the same
    decision is another row, and each one is on the ledger.
    """

    call = models.ForeignKey(
        ClassifyCall, null=True, blank=True, on_delete=models.PROTECT, related_name="explanations"
    )
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.PROTECT, related_name="explanations"
    )
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    prompt_sha256 = models.CharField(max_length=64)
    model_sha256 = models.CharField(max_length=64)
    label = models.CharField(max_length=100, help_text="The label with every rule, as recomputed for the explanation")
    probabilities = models.JSONField(default=dict)
    # [{"number", "rule_id", "revision_id", "label", "probabilities", "changes"}], in rule order.
    rules = models.JSONField(default=list, blank=True)
    deciding_numbers = models.JSONField(
        default=list, blank=True, help_text="Numbers of the rules whose removal changes the label"
    )
    seconds = models.FloatField(default=0.0)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("explain_decision", "Can ask why a decision came out as it did, and measure rule impact")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(call__isnull=False, prediction__isnull=True)
                | models.Q(call__isnull=True, prediction__isnull=False),
                name="decision_explanation_one_subject",
            ),
        ]

    @property
    def decided_by_rules(self) -> list[dict]:
        """Return the entries of the rules whose removal changes the label."""
        return [entry for entry in self.rules if entry.get("changes")]
