"""Tasks, examples, teacher output, rules under review, and prompt versions.

Audited models (rules, revisions, decisions, prompt versions) carry django-simple-history and
are written only through ``rules.review.services`` so that every change has a user and a reason.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from pldreview.constraints import in_choices


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    DEV = "dev", "Dev"
    TEST = "test", "Test"
    # Production decisions a Reviewer marked wrong, with the right label: evidence for refine, never a test set.
    FEEDBACK = "feedback", "Feedback"


def sees_every_task(user: Any) -> bool:
    """Return whether the user sees every task without membership: Admins, and Auditors unless scoped.

    Reads permissions only (cached on the user after the page's own permission check: no query). Auditors are
    scoped like Reviewers when ``PLD_AUDITORS_SCOPED`` is on (docs/security.md, "Need-to-know").
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.has_perm("rules.view_all_tasks"):
        return True
    return not settings.PLD_AUDITORS_SCOPED and user.has_perm("rules.audit_all_tasks")


class TaskQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> TaskQuerySet:
        """Return the tasks the user may see: all of them for Admins (and unscoped Auditors), else their tasks.

        The one rule of need-to-know. Every page, export, search, badge and API call reaches tasks, and objects
        of tasks, through it (``rules.membership.visible``, ``rules.views.shortcuts``).
        """
        if sees_every_task(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user_id=user.pk)


class Task(models.Model):
    """One decision the organisation wants automated: its labels and the input fields of an example."""

    name = models.SlugField(max_length=100, unique=True, help_text="Short identifier, e.g. contractnli-test")
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True, help_text="Plain-language description of the decision")
    # [{"name": "Entailment", "description": "..."}, ...] in display order.
    labels = models.JSONField(default=list)
    # ["premise", "hypothesis"]; the last field is the one each example asks about.
    input_fields = models.JSONField(default=list)
    # Field whose value several examples share (the ContractNLI document); processed once per run.
    shared_context_field = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("import_dataset", "Can import datasets into a task"),
            ("export_review_log", "Can export a task's review log"),
            ("view_all_tasks", "Sees every task without being a member"),
            ("audit_all_tasks", "Sees every task unless PLD_AUDITORS_SCOPED is on"),
            ("manage_task_members", "Can add and remove task members"),
        ]

    def __str__(self) -> str:
        return self.title or self.name

    def get_absolute_url(self) -> str:
        return reverse("pld-task-detail", args=[self.name])

    @property
    def label_names(self) -> list[str]:
        return [label["name"] for label in self.labels]

    def label_description(self, name: str) -> str:
        for label in self.labels:
            if label["name"] == name:
                return str(label.get("description", ""))
        return ""

    def clean(self) -> None:
        names = [label.get("name", "") for label in self.labels if isinstance(label, dict)]
        if len(names) != len(self.labels) or not all(names):
            raise ValidationError({"labels": "Every label needs a name."})
        if len(set(names)) != len(names):
            raise ValidationError({"labels": "Label names must be unique."})
        if len(names) < 2:
            raise ValidationError({"labels": "A task needs at least two labels."})
        if not self.input_fields:
            raise ValidationError({"input_fields": "A task needs at least one input field."})
        if self.shared_context_field and self.shared_context_field not in self.input_fields:
            raise ValidationError({"shared_context_field": "The shared context must be one of the input fields."})


class TaskMembership(models.Model):
    """A person's need-to-know of one task: a Reviewer (or scoped Auditor) sees and decides only their tasks.

    Added and removed through ``rules.membership`` by an Admin, each change a signing ("Task member added" /
    "Task member removed") kept in the append-only ``TaskMembershipChange``; removing deletes this row, the
    changes keep who had access when, on whose signature.
    """

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="task_memberships")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    added_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=500, blank=True)
    # The Admin's signature of the addition. Empty only on rows nobody added (access kept at the upgrade to
    # membership) and rows added before additions were signed: a trigger, not a check constraint, so those rows
    # stay as they were, refuses every new row that names who added it without a signature, and any UPDATE.
    signature = models.OneToOneField(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="task_membership"
    )

    class Meta:
        ordering = ["task__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="task_membership_once")]

    def __str__(self) -> str:
        return f"{self.user} in {self.task.name}"


class TaskMembershipChange(models.Model):
    """An Admin adding a person to a task or removing them: one append-only, signed row each (Part 11 §11.10(d)).

    Rows are never changed or deleted (database triggers); the signature is required by the database, so no
    change of who may see a task exists without the e-signature of the Admin who made it.
    """

    class Action(models.TextChoices):
        ADD = "add", "Added"
        REMOVE = "remove", "Removed"

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="membership_changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    signature = models.OneToOneField(
        "pldreview.Signature", on_delete=models.PROTECT, related_name="task_membership_change"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            in_choices("taskmembershipchange_action_in_choices", action=["add", "remove"]),
            models.CheckConstraint(condition=~models.Q(reason=""), name="taskmembershipchange_reason_given"),
        ]

    def __str__(self) -> str:
        verb = "added to" if self.action == self.Action.ADD else "removed from"
        return f"{self.user} {verb} {self.task.name} ({self.created_at:%Y-%m-%d %H:%M} UTC)"


class DatasetImport(models.Model):
    """A record of one file imported into a task: where from, how split, what it added."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="imports")
    format = models.CharField(max_length=30)
    source_name = models.CharField(max_length=500)
    source_sha256 = models.CharField(max_length=64)
    split = models.CharField(max_length=10, blank=True, help_text="Fixed split, or blank when split by seed")
    split_seed = models.IntegerField(null=True, blank=True)
    n_records = models.PositiveIntegerField(default=0)
    n_added = models.PositiveIntegerField(default=0)
    n_skipped = models.PositiveIntegerField(default=0)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class Example(models.Model):
    """A labelled input of a task, in one split, traceable to the record it was imported from."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="examples")
    inputs = models.JSONField(help_text="Field name → text, one entry per task input field")
    gold_label = models.CharField(max_length=100)
    split = models.CharField(max_length=10, choices=Split.choices, db_index=True)
    source_file = models.CharField(max_length=500, blank=True)
    source_ref = models.CharField(max_length=200, blank=True, help_text="Record index or id inside the file")
    content_hash = models.CharField(max_length=64)
    # Examples with the same group key share a context (e.g. one ContractNLI document).
    group_key = models.CharField(max_length=200, blank=True, db_index=True)
    # ContractNLI evidence: [{"start": int, "end": int}] character offsets into the shared context.
    evidence = models.JSONField(default=list, blank=True)
    dataset_import = models.ForeignKey(DatasetImport, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task", "split", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "content_hash"], name="example_unique_content_per_task"),
            in_choices("example_in_choices", split=Split.values),
        ]

    def __str__(self) -> str:
        return f"{self.task.name} #{self.pk} ({self.gold_label})"

    def get_absolute_url(self) -> str:
        return reverse("pld-example-detail", args=[self.pk])

    @staticmethod
    def hash_content(inputs: dict[str, Any], gold_label: str) -> str:
        """Return the SHA-256 that identifies an example's inputs and gold label."""
        payload = json.dumps({"inputs": inputs, "label": gold_label}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class FrozenTestSplit(models.Model):
    """The task's test split as it was when a version of the task was first gated: its SHA-256, kept forever.

    One per task, written once by ``rules.datasets.frozen_split.split_freeze`` with a ledger entry; the database
    refuses any UPDATE or DELETE (append-only triggers). The gate judges only runs drawn from this split and
    fails, naming both hashes, when the task's test examples no longer hash to it.
    """

    task = models.OneToOneField(Task, on_delete=models.PROTECT, related_name="frozen_test_split")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the test examples' ids, inputs and gold labels")
    n_examples = models.PositiveIntegerField()
    # The version whose gating froze the split, and who opened that gate.
    prompt_version = models.ForeignKey(
        "PromptVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    frozen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task"]
        constraints = [
            models.CheckConstraint(condition=models.Q(n_examples__gt=0), name="frozen_test_split_not_empty"),
        ]

    def __str__(self) -> str:
        return f"Test split of {self.task.name} frozen at {self.sha256[:12]}…"


class TeacherCall(models.Model):
    """One request to the teacher and its response, kept so a repeated request costs nothing."""

    # SHA-256 of the request body with the endpoint's name, base URL and model (rules.teacher.client.request_hash).
    request_hash = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=30, help_text="extract, consolidate or refine")
    endpoint_name = models.CharField(max_length=50, blank=True, help_text="PLD_TEACHER_ENDPOINTS name that answered")
    base_url = models.CharField(max_length=300)
    model = models.CharField(max_length=200)
    request = models.JSONField()
    response = models.JSONField(null=True, blank=True)
    response_text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0)
    job = models.ForeignKey("pldreview.Job", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class ClusteringRun(models.Model):
    """One clustering of a task's micro-rules: its parameters and outcome."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="clustering_runs")
    eps = models.FloatField()
    min_samples = models.PositiveIntegerField()
    embedding = models.CharField(max_length=100, help_text="tfidf-svd or the endpoint's embedding model")
    n_rules = models.PositiveIntegerField(default=0)
    n_clusters = models.PositiveIntegerField(default=0)
    n_noise = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    @property
    def unmerged_clusters(self) -> dict[int, str]:
        """Return the clusters the teacher could not merge into a usable rule, with the reason for each."""
        return {
            int(item["cluster"]): item["error"]
            for item in self.params.get("failed_clusters", [])
            if item.get("cluster") is not None
        }


class MicroRule(models.Model):
    """The teacher's rationale and one general rule for a single training example (phase 1)."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="micro_rules")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="micro_rules")
    rationale = models.TextField()
    condition = models.TextField()
    label = models.CharField(max_length=100)
    teacher_model = models.CharField(max_length=200)
    teacher_endpoint = models.CharField(max_length=300)
    teacher_endpoint_name = models.CharField(max_length=50, blank=True)
    teacher_settings = models.JSONField(default=dict, blank=True)
    teacher_call = models.ForeignKey(TeacherCall, null=True, blank=True, on_delete=models.PROTECT)
    clustering_run = models.ForeignKey(ClusteringRun, null=True, blank=True, on_delete=models.PROTECT)
    cluster = models.IntegerField(null=True, blank=True, help_text="-1 = noise (no cluster)")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["example", "teacher_model"], name="micro_rule_one_per_example_and_teacher"),
        ]

    @property
    def text(self) -> str:
        return f"If {self.condition}, then {self.label}."

    @property
    def is_noise(self) -> bool:
        return self.cluster == -1

    @property
    def unmerged_reason(self) -> str:
        """Return why the teacher could not merge this micro-rule's cluster into a rule, or '' if it did or may."""
        if self.clustering_run is None or self.cluster is None:
            return ""
        return self.clustering_run.unmerged_clusters.get(self.cluster, "")


class RuleStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class RuleOrigin(models.TextChoices):
    TEACHER = "teacher", "Teacher extraction"
    REFINE = "refine", "Refine proposal"
    MANUAL = "manual", "Written by hand"


class RuleDiagnosis(models.TextChoices):
    MISSING = "MISSING", "Missing: no rule covers these cases"
    WRONG = "WRONG", "Wrong: a rule points the wrong way"
    CONFLICT = "CONFLICT", "Conflict: two rules disagree"


class Rule(models.Model):
    """A candidate or approved instruction for the student, reviewed by people.

    The text, label, topic and precedence note mirror the current revision. ``lock_version``
    increases with every change and is how a stale action is detected.
    """

    Status = RuleStatus
    Origin = RuleOrigin
    Diagnosis = RuleDiagnosis

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="rules")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    origin = models.CharField(max_length=10, choices=Origin.choices)
    topic = models.CharField(max_length=200, blank=True)
    label = models.CharField(max_length=100)
    text = models.TextField(help_text="The condition and what it implies, in plain words")
    precedence_note = models.TextField(blank=True)
    current_revision = models.ForeignKey(
        "RuleRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lock_version = models.PositiveIntegerField(default=1)
    position = models.PositiveIntegerField(null=True, blank=True, help_text="Order in the compiled rule set")
    support = models.PositiveIntegerField(default=0)
    label_balance = models.JSONField(default=dict, blank=True)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_by_model = models.CharField(max_length=200, blank=True)
    teacher_endpoint = models.CharField(max_length=300, blank=True)
    teacher_endpoint_name = models.CharField(max_length=50, blank=True)
    clustering_run = models.ForeignKey(ClusteringRun, null=True, blank=True, on_delete=models.PROTECT)
    micro_rules = models.ManyToManyField(MicroRule, blank=True, related_name="rules")
    examples = models.ManyToManyField(Example, blank=True, related_name="rules")
    # Refine proposals (phase 3).
    diagnosis = models.CharField(max_length=10, choices=Diagnosis.choices, blank=True)
    refines = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="refinements")
    # {"evaluation_run": id, "failure_example_ids": [...], "dev_before": {...}, "dev_after": {...},
    #  "flips": {"right_to_wrong": [...], "wrong_to_right": [...]}, "patch": "new|edit|precedence"}
    proposal = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-support", "id"]
        permissions = [
            ("review_rule", "Can approve, edit and reject rules"),
            ("reorder_ruleset", "Can reorder a task's approved rule set"),
            ("run_teacher", "Can run teacher extraction, clustering and refinement"),
        ]
        indexes = [models.Index(fields=["task", "status", "-support"], name="rule_queue_idx")]
        constraints = [
            in_choices(
                "rule_in_choices", status=RuleStatus.values, origin=RuleOrigin.values,
                diagnosis=["", *RuleDiagnosis.values],
            ),
            # The compiler orders the rule set by position: an approved rule always has one (rule_approve).
            models.CheckConstraint(
                condition=~models.Q(status="approved") | models.Q(position__isnull=False),
                name="rule_approved_has_position",
            ),
        ]

    def __str__(self) -> str:
        return f"Rule {self.pk}: {self.text[:60]}"

    def get_absolute_url(self) -> str:
        return reverse("pld-rule-detail", args=[self.pk])

    @property
    def proposer_display(self) -> str:
        """Say who proposed the rule: a person's username or the teacher model's name."""
        if self.proposed_by_id:
            return str(self.proposed_by)
        if self.proposed_by_model:
            return f"{self.proposed_by_model} (teacher model)"
        return "unknown"


class RuleRevision(models.Model):
    """One version of a rule's wording; an edit makes a new revision, old ones stay."""

    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    label = models.CharField(max_length=100)
    topic = models.CharField(max_length=200, blank=True)
    precedence_note = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    author_model = models.CharField(max_length=200, blank=True, help_text="Teacher model, when a model wrote it")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rule", "number"]
        constraints = [models.UniqueConstraint(fields=["rule", "number"], name="rule_revision_unique_number")]

    def __str__(self) -> str:
        return f"Rule {self.rule_id} r{self.number}"

    @property
    def author_display(self) -> str:
        if self.author_id:
            return str(self.author)
        return f"{self.author_model} (teacher model)" if self.author_model else "unknown"


class DecisionAction(models.TextChoices):
    APPROVE = "approve", "Approved"
    EDIT = "edit", "Edited"
    REJECT = "reject", "Rejected"
    UNDO = "undo", "Undid the last decision"
    REORDER = "reorder", "Reordered"
    CREATE = "create", "Written by hand"
    PROMOTE_NOISE = "promote_noise", "Promoted a noise micro-rule to a candidate"


class Decision(models.Model):
    """A person's recorded action on a rule: who, when, what and why. Never deleted."""

    Action = DecisionAction

    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="decisions")
    revision = models.ForeignKey(RuleRevision, null=True, blank=True, on_delete=models.PROTECT)
    action = models.CharField(max_length=20, choices=Action.choices)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    reason = models.TextField(blank=True)
    status_before = models.CharField(max_length=10, blank=True)
    status_after = models.CharField(max_length=10, blank=True)
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")
    # The reviewer's electronic signature of this decision. Required for the signed actions on every row
    # written since migration 0003 (an INSERT trigger); older rows keep none, rather than a forged one.
    signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    created_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    # The actions that are signings, and the meaning their signature must carry.
    SIGNED_ACTIONS = {
        Action.APPROVE: "approved", Action.REJECT: "rejected", Action.EDIT: "edited",
        Action.CREATE: "written", Action.REORDER: "reordered",
    }

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # One signature signs one decision (Part 11 §11.70: it cannot be copied to another record); the one
            # exception is an applied order, whose approval signature signs the reorder of every rule it moved.
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False) & ~models.Q(action="reorder"),
                name="decision_signature_once",
            ),
            in_choices(
                "decision_in_choices", action=DecisionAction.values,
                status_before=["", *RuleStatus.values], status_after=["", *RuleStatus.values],
            ),
            # An undo names the decision it undoes, and only an undo does (decision_undo).
            models.CheckConstraint(
                condition=models.Q(action="undo", undoes__isnull=False) | (
                    ~models.Q(action="undo") & models.Q(undoes__isnull=True)
                ),
                name="decision_undo_names_what_it_undoes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} rule {self.rule_id} by {self.reviewer}"


class PromptVersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    EVALUATED = "evaluated", "Evaluated"
    PRODUCTION = "production", "Production"
    RETIRED = "retired", "Retired"


class PromptVersionQuerySet(models.QuerySet):
    def in_production(self) -> PromptVersionQuerySet:
        """Return the versions in production with their tasks: at most one per task (a constraint)."""
        return self.filter(status=PromptVersionStatus.PRODUCTION).select_related("task")


class PromptVersion(models.Model):
    """An immutable compiled system prompt for a task's student, built from approved rule revisions."""

    Status = PromptVersionStatus

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="prompt_versions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    sha256 = models.CharField(max_length=64)
    # Hash of the ordered (rule, revision) list and template version: equal means "unchanged rule set".
    rule_set_hash = models.CharField(max_length=64)
    template_version = models.CharField(max_length=20)
    token_count = models.PositiveIntegerField(default=0)
    tokenizer = models.CharField(max_length=200, blank=True, help_text="Model file whose tokenizer counted the tokens")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    revisions = models.ManyToManyField(RuleRevision, through="PromptVersionRule", related_name="prompt_versions")
    compiled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the compiler once the rule entries are written; the database then refuses to add, change or
    # remove entries, and never lets it go back to False (triggers in migration 0002).
    sealed = models.BooleanField(default=False, editable=False)
    history = HistoricalRecords()

    objects = PromptVersionQuerySet.as_manager()

    class Meta:
        ordering = ["task", "-number"]
        permissions = [("compile_prompt", "Can compile a prompt version")]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="prompt_version_unique_number"),
            models.UniqueConstraint(fields=["task", "rule_set_hash"], name="prompt_version_unique_rule_set"),
            models.UniqueConstraint(
                fields=["task"], condition=models.Q(status="production"), name="prompt_version_one_production"
            ),
            in_choices("prompt_version_in_choices", status=PromptVersionStatus.values),
        ]

    def __str__(self) -> str:
        return f"{self.task.name} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("pld-prompt-version-detail", args=[self.pk])


class PromptVersionRule(models.Model):
    """The exact rule revision at a numbered position of a prompt version."""

    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="entries")
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="prompt_entries")
    revision = models.ForeignKey(RuleRevision, on_delete=models.PROTECT)
    position = models.PositiveIntegerField(help_text="The rule's number in the prompt, from 1")

    class Meta:
        ordering = ["prompt_version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_version", "position"], name="prompt_entry_unique_position"),
        ]


class RuleSetReorderProposalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class RuleSetReorderProposal(models.Model):
    """A reviewer's proposed order of a task's rule set; it takes effect only once other reviewers approve it.

    Order decides which rule applies first, so it is reviewed like a rule: until enough reviewers other
    than the proposer approve, the compiled order stays the last approved one.
    """

    Status = RuleSetReorderProposalStatus

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="reorder_proposals")
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Rule ids, first to last: the order proposed, and the rule set's order when it was proposed.
    order = models.JSONField()
    base_order = models.JSONField()
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Part 11: proposing and rejecting an order are signings (meanings "Reorder proposed", "Reorder rejected").
    signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="reorder_proposals"
    )
    decision_signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="reorder_rejections"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False),
                name="reorder_proposal_signature_once",
            ),
            models.UniqueConstraint(
                fields=["decision_signature"], condition=models.Q(decision_signature__isnull=False),
                name="reorder_rejection_signature_once",
            ),
            # Four eyes in the database too: whoever proposed an order never is the one who approved it.
            models.CheckConstraint(
                condition=~models.Q(status="approved") | ~models.Q(decided_by=models.F("proposed_by")),
                name="reorder_proposal_not_approved_by_proposer",
            ),
            models.CheckConstraint(
                condition=models.Q(status="pending", decided_by__isnull=True)
                | (~models.Q(status="pending") & models.Q(decided_by__isnull=False)),
                name="reorder_proposal_decided_by_iff_decided",
            ),
            in_choices("reorder_proposal_in_choices", status=RuleSetReorderProposalStatus.values),
        ]

    def __str__(self) -> str:
        return f"Order proposal {self.pk} for {self.task.name}"


class RuleSetReorderApproval(models.Model):
    """One reviewer's approval of a rule-set order proposal; never deleted."""

    proposal = models.ForeignKey(RuleSetReorderProposal, on_delete=models.PROTECT, related_name="approvals")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Approving an order is a signing (meaning "Reordered"); the reorder decisions it applies carry it too.
    signature = models.ForeignKey(
        "pldreview.Signature", null=True, blank=True, on_delete=models.PROTECT, related_name="reorder_approvals"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["proposal", "reviewer"], name="reorder_approval_one_per_reviewer"),
            models.UniqueConstraint(
                fields=["signature"], condition=models.Q(signature__isnull=False),
                name="reorder_approval_signature_once",
            ),
        ]


class RuleComment(models.Model):
    """A remark in a rule's discussion: who, when, what. Append-only: never edited or deleted (database triggers)."""

    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rule_comments")
    text = models.TextField(max_length=4000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Comment {self.pk} on rule {self.rule_id} by {self.author}"
