"""Forms of the rules pages: decisions on a rule, hand-written rules, rule-set order proposals, dataset import
and the teacher's jobs."""
from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from pldreview.forms import SigningForm
from rules.datasets.dataset_import import DEFAULT_SPLIT_SEED
from rules.datasets.parsers import DEFAULT_LABEL_FIELD, KNOWN_FORMATS, FieldMap
from rules.models import Example, Split, Task
from rules.teacher.client import default_teacher_endpoint, teacher_endpoint_choices
from rules.teacher.clustering import DEFAULT_EPS, DEFAULT_MIN_SAMPLES

_REASON_ROWS = {"rows": 2}


class DecisionForm(SigningForm):
    """What every decision carries: the version of the rule the reviewer saw, and the reviewer's signature."""

    lock_version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


class ApproveForm(DecisionForm):
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs=_REASON_ROWS), label="Reason (optional)"
    )


class RejectForm(DecisionForm):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs=_REASON_ROWS),
        label="Why reject it? (required)",
        error_messages={"required": "Say why you reject this rule."},
    )


class _RuleFieldsForm(forms.Form):
    text = forms.CharField(
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Rule",
        help_text="The condition and what it implies, e.g. “If the clause … then Entailment.”",
    )
    label = forms.ChoiceField(choices=())
    topic = forms.CharField(required=False, max_length=200)
    precedence_note = forms.CharField(
        required=False,
        label="Which rule wins (optional)",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="When this rule wins or yields to another, e.g. “Takes precedence over the general rule on …”",
    )

    def __init__(self, *args: Any, task: Task | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if task is not None:
            self.fields["label"].choices = [(name, name) for name in task.label_names]


class EditForm(_RuleFieldsForm, DecisionForm):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs=_REASON_ROWS),
        label="Why this edit? (required)",
        error_messages={"required": "Say why you edit this rule."},
    )


class RuleCreateForm(_RuleFieldsForm, SigningForm):
    """A hand-written rule for one task, chosen first so that only its labels and examples are offered."""

    task = forms.ModelChoiceField(
        queryset=Task.objects.order_by("name"), to_field_name="name", empty_label=None, widget=forms.HiddenInput
    )
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs=_REASON_ROWS), label="Why add it? (optional)"
    )
    examples = forms.ModelMultipleChoiceField(
        queryset=Example.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
        label="Cited examples",
        error_messages={"invalid_choice": "Example %(value)s is not an example of this task."},
    )
    field_order = [
        "task", "text", "label", "topic", "precedence_note", "reason", "examples", "password", "second_factor",
    ]

    def __init__(self, *args: Any, task: Task, **kwargs: Any) -> None:
        super().__init__(*args, task=task, **kwargs)
        self.fields["examples"].queryset = Example.objects.filter(task=task)


class ReorderProposalForm(SigningForm):
    """A number for every rule of the rule set and why the new order is better; it becomes a proposal."""

    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs=_REASON_ROWS),
        label="Why this order? (required)",
        error_messages={"required": "Say why the rules should run in this order."},
    )

    def __init__(self, *args: Any, rule_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rule_ids = rule_ids
        for number, pk in enumerate(rule_ids, start=1):
            self.fields[f"number_{pk}"] = forms.IntegerField(
                min_value=1, max_value=len(rule_ids), initial=number, label=f"Number of rule {pk}"
            )

    def numbers(self) -> dict[int, int]:
        """Return the number typed for each rule id."""
        return {pk: self.cleaned_data[f"number_{pk}"] for pk in self.rule_ids}


class ProposalDecisionForm(SigningForm):
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs=_REASON_ROWS))


class TeacherEndpointForm(forms.Form):
    """The teacher a run asks: one of the endpoints operators configured (PLD_TEACHER_ENDPOINTS), by name.

    There is deliberately no URL field: an endpoint and the key that goes with it are configuration,
    so no form can send a configured key, or the training data, to a host someone typed.
    """

    endpoint = forms.ChoiceField(
        choices=teacher_endpoint_choices, label="Teacher endpoint",
        help_text="Operators configure endpoints in PLD_TEACHER_ENDPOINTS.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].initial = default_teacher_endpoint()


FORMAT_CHOICES = [
    ("jsonl", "JSON Lines (one object a line; map its keys below)"),
    ("csv", "CSV with a header row (map its columns below)"),
    ("contractnli", "ContractNLI official JSON (documents × hypotheses, evidence spans)"),
    ("stereoset", "StereoSet flattened JSONL (one example per sentence)"),
    ("logiqa2", "LogiQA 2.0 JSON lines (passage, question, options → answer letter)"),
]


class DatasetImportForm(forms.Form):
    task = forms.SlugField(
        max_length=100, label="Task name",
        help_text="An existing task, or a new name (letters, digits and hyphens) to create one from the file.",
    )
    fmt = forms.ChoiceField(choices=FORMAT_CHOICES, label="Format")
    file = forms.FileField(label="Dataset file")
    split = forms.ChoiceField(
        required=False, label="Split",
        choices=[("", "Split by seed: 60/20/20 train/dev/test, stratified by label")]
        + [c for c in Split.choices if c[0] != Split.FEEDBACK],
        help_text="Put every example in one split, or let the seed split them.",
    )
    split_seed = forms.IntegerField(
        required=False, min_value=0, initial=DEFAULT_SPLIT_SEED, label="Split seed",
        help_text="The same file and seed always give the same split.",
    )
    fields = forms.CharField(
        required=False, label="Field mapping (jsonl and csv)", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One task_field=column a line, e.g. premise=clause. Empty: columns named like the task's fields.",
    )
    label_field = forms.CharField(required=False, initial=DEFAULT_LABEL_FIELD, label="Label column (jsonl and csv)")
    id_field = forms.CharField(required=False, label="Id column (optional)")
    group_field = forms.CharField(
        required=False, label="Group column (optional)", help_text="Rows with the same value stay in one split."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("fmt") in KNOWN_FORMATS and (data.get("fields") or "").strip():
            self.add_error("fields", "This format fixes its fields; leave the mapping empty.")
        try:
            data["field_map"] = FieldMap.parse(
                data.get("fields") or "",
                label=data.get("label_field") or DEFAULT_LABEL_FIELD,
                id=data.get("id_field") or "",
                group=data.get("group_field") or "",
            )
        except ValidationError as exc:
            self.add_error("fields", exc)
        return data


class ExtractionForm(TeacherEndpointForm):
    limit = forms.IntegerField(
        required=False, min_value=1, label="Limit", help_text="Only the first N training examples (all labels mixed)."
    )


class ClusteringForm(TeacherEndpointForm):
    eps = forms.FloatField(initial=DEFAULT_EPS, min_value=0.01, max_value=2.0, label="eps (cosine distance)")
    min_samples = forms.IntegerField(initial=DEFAULT_MIN_SAMPLES, min_value=1, label="min_samples")
    adapt = forms.BooleanField(
        required=False, initial=True, label="Adapt min_samples for small sets",
        help_text="A cluster needs at least 5% of the micro-rules (at least 2, at most min_samples).",
    )


class PromoteForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, label="Why promote it (optional)")


class TaskMemberForm(SigningForm):
    """Add a person to a task, or remove them (need-to-know): a signing, with the reason kept on the ledger."""

    action = forms.ChoiceField(choices=[("add", "Add as member"), ("remove", "Remove from the task")])
    user = forms.ModelChoiceField(queryset=None, to_field_name="username", label="Person")  # type: ignore[arg-type]
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs=_REASON_ROWS), label="Reason")

    def __init__(self, *args: Any, task: Task, **kwargs: Any) -> None:
        from django.contrib.auth.models import User

        from rules.membership import MEMBER_ROLES

        super().__init__(*args, **kwargs)
        # Admins see every task already; members are the people whose roles are scoped.
        people = User.objects.filter(is_active=True, groups__name__in=MEMBER_ROLES)
        self.fields["user"].queryset = people.distinct().order_by("username")


class UserTaskForm(SigningForm):
    """Add one person to a task, or remove them, from their user page: a signing, with the reason on the ledger."""

    action = forms.ChoiceField(choices=[("add", "Add to the task"), ("remove", "Remove from the task")])
    task = forms.ModelChoiceField(queryset=Task.objects.order_by("name"), to_field_name="name", label="Task")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs=_REASON_ROWS), label="Reason")
