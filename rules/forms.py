"""Forms of the review workspace: decisions on a rule, hand-written rules and rule-set order proposals."""
from __future__ import annotations

from typing import Any

from django import forms

from pldreview.forms import SigningForm
from rules.models import Example, Task
from rules.teacher import default_teacher_endpoint, teacher_endpoint_choices

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
