"""Forms of the evaluation pages: runs, refine, promotion, production, reports and API tokens."""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from evaluation.models import ClassifyCall, EvaluationRun, InputRetention, ProviderInformation
from evaluation.runs.refine import DEFAULT_DEV_LIMIT, DEFAULT_MAX_GROUPS
from pldreview.forms import SigningForm
from rules.forms import TeacherEndpointForm
from rules.membership import visible
from rules.models import PromptVersion, Split, Task


class RunStartForm(forms.Form):
    task = forms.ModelChoiceField(queryset=Task.objects.order_by("name"), to_field_name="name")
    mode = forms.ChoiceField(choices=EvaluationRun.Mode.choices, initial=EvaluationRun.Mode.PLD)
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TEST)
    prompt_version = forms.ModelChoiceField(
        queryset=PromptVersion.objects.select_related("task").order_by("task__name", "-number"),
        required=False,
        help_text="pld: the compiled prompt version to evaluate.",
    )
    prompt_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        help_text="pld without a prompt version: paste the rules prompt here.",
    )
    limit = forms.IntegerField(
        min_value=1, required=False,
        help_text="Evaluate at most this many examples. A test-split run with a limit never gates a promotion.",
    )
    seed = forms.IntegerField(
        initial=0, help_text="Only a test-split run with the task's seed (0) and no limit can gate a promotion."
    )
    k_shot = forms.IntegerField(label="k (few-shot)", min_value=1, max_value=32, initial=4)
    calibrate = forms.BooleanField(
        required=False, help_text="Subtract the label prior measured on a content-free input."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        version = data.get("prompt_version")
        if version is not None and data.get("task") is not None and version.task_id != data["task"].pk:
            self.add_error("prompt_version", "That prompt version belongs to another task.")
        if data.get("mode") == EvaluationRun.Mode.PLD and version is None and not data.get("prompt_text", "").strip():
            self.add_error("prompt_text", "A pld run needs a prompt version or a pasted rules prompt.")
        return data


class RefineForm(TeacherEndpointForm):
    max_groups = forms.IntegerField(initial=DEFAULT_MAX_GROUPS, min_value=1, max_value=20,
                                    label="Failure groups to diagnose")
    dev_limit = forms.IntegerField(initial=DEFAULT_DEV_LIMIT, min_value=1, max_value=500,
                                   label="Dev examples for the before/after measurement")
    include_feedback = forms.BooleanField(
        required=False, initial=True, label="Also diagnose the task's feedback examples",
        help_text="Production decisions Reviewers marked wrong, listed under Inputs.",
    )


class PromotionForm(SigningForm):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label="Reason",
        help_text="Why this version should serve production now. Kept forever in the audit record.",
    )
    override_justification = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Override justification",
        help_text="Only when the gate fails: why promoting anyway is right. A second Admin must confirm it; "
                  "it is shown on the report with the failing figures.",
    )


class WatchFilter(forms.Form):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    version = forms.ModelChoiceField(queryset=PromptVersion.objects.none(), required=False, label="Prompt version",
                                     empty_label="The version in production")

    def __init__(self, *args: Any, task: Task, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = task.prompt_versions.order_by("-number")
        self.fields["version"].label_from_instance = lambda v: f"v{v.number} ({v.get_status_display()})"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ValidationError("The start date is after the end date.")
        return data


class FeedbackForm(forms.Form):
    correct_label = forms.ChoiceField(label="The right label")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             label="Why the decision was wrong")

    def __init__(self, *args: Any, call: ClassifyCall, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["correct_label"].choices = [
            (name, name) for name in call.task.label_names if name != call.label
        ]


class OverrideForm(SigningForm):
    """Override a logged decision: the right label, why, and the signer's credentials."""

    overridden_label = forms.ChoiceField(label="The right label")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             label="Why the decision is overridden")

    def __init__(self, *args: Any, call: ClassifyCall, **kwargs: Any) -> None:
        # Its own ids: the feedback form on the same page has a "reason" field too.
        kwargs.setdefault("auto_id", "override_%s")
        super().__init__(*args, **kwargs)
        self.fields["overridden_label"].choices = [
            (name, name) for name in call.task.label_names if name != call.label
        ]


class WebhookForm(forms.Form):
    url = forms.CharField(max_length=500, label="Address (https://…)",
                          widget=forms.URLInput(attrs={"placeholder": "https://example.org/pld-events"}))


class PolicyForm(forms.Form):
    input_retention = forms.ChoiceField(choices=InputRetention.choices, label="Keep inputs as")
    retention_days = forms.IntegerField(required=False, min_value=1, label="Keep calls for (days)",
                                        help_text="Empty = PLD_DECISION_RETENTION_DAYS.")
    reason = forms.CharField(max_length=500, label="Why")


MAX_VERIFY_BYTES = 50 * 1024 * 1024


class GenerateReportForm(forms.Form):
    prompt_version = forms.ModelChoiceField(queryset=PromptVersion.objects.select_related("task"))

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user is not None:
            # Need-to-know: a version of a task the user may not see is "not one of the available choices".
            self.fields["prompt_version"].queryset = visible(PromptVersion.objects.select_related("task"), user)


class SignReportForm(SigningForm):
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}), label="Reason (optional)",
        help_text="E.g. “Read in full; the decisions and figures are correct.”",
    )


class VerifyReportForm(forms.Form):
    file = forms.FileField(label="Report PDF", help_text="The signed PDF exactly as you received it.")

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_VERIFY_BYTES:
            raise ValidationError(f"The file is larger than {MAX_VERIFY_BYTES // (1024 * 1024)} MiB.")
        return upload


class TokenForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"), label="For user",
        help_text="Requests made with the token act for this user.",
    )
    name = forms.CharField(max_length=100, label="Name", help_text="What uses it, e.g. contract-intake service")
    expires_at = forms.DateTimeField(
        required=False, label="Expires", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Refused from then on (UTC); empty = never.",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False, min_value=1, label="Requests per minute",
        help_text=f"Empty = the default, {settings.PLD_API_DEFAULT_RATE_LIMIT}.",
    )
    tasks = forms.ModelMultipleChoiceField(
        queryset=Task.objects.order_by("name"), required=False, label="Tasks",
        help_text="The tasks it may classify; none chosen = every task.",
    )


class RevokeForm(SigningForm):
    reason = forms.CharField(required=False, max_length=2000, label="Why revoke it? (optional)")


class ServingStopForm(SigningForm):
    """Stop or resume a task's serving: a reason and the signer's credentials."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
        help_text="On the record with your signature, and in the API's answer while the task is stopped.",
    )


class ProviderInformationForm(forms.ModelForm):
    """The provider's statements for a task's technical file; blank fields are listed as still to write."""

    class Meta:
        model = ProviderInformation
        fields = list(ProviderInformation.FIELDS)
        widgets = {name: forms.Textarea(attrs={"rows": 2}) for name in ProviderInformation.FIELDS
                   if name not in ("provider_name", "provider_contact")}
