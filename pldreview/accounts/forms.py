"""Forms of the Admin's account pages and the Auditor's security events."""
from __future__ import annotations

from django import forms

from pldreview.accounts.models import AccountChangeKind
from pldreview.forms import SigningForm
from pldreview.roles import ROLES


class UserCreateForm(SigningForm):
    """Request a new account: a second Admin confirms it, and only then can it log in."""

    username = forms.CharField(max_length=150)
    first_name = forms.CharField(max_length=150, label="Given name")
    last_name = forms.CharField(max_length=150, label="Family name")
    roles = forms.MultipleChoiceField(choices=[(r, r) for r in ROLES], widget=forms.CheckboxSelectMultiple)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    field_order = ["username", "first_name", "last_name", "roles", "reason"]


class UserActionForm(SigningForm):
    """Request a change of an account (a signing), or deactivate it at once (no second Admin: it removes power)."""

    # Each requested action and the kind of request it makes.
    KINDS = {
        "grant": AccountChangeKind.GRANT_ROLE,
        "revoke": AccountChangeKind.REVOKE_ROLE,
        "activate": AccountChangeKind.ACTIVATE,
        "unlock": AccountChangeKind.UNLOCK,
        "reset_password": AccountChangeKind.RESET_PASSWORD,
        "reset_mfa": AccountChangeKind.RESET_SECOND_FACTOR,
    }
    ACTIONS = [
        ("grant", "Grant role"),
        ("revoke", "Revoke role"),
        ("activate", "Activate"),
        ("unlock", "Unlock failed logins"),
        ("reset_password", "Force a password reset"),
        ("reset_mfa", "Reset the second factor"),
        ("deactivate", "Deactivate"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    role = forms.ChoiceField(choices=[("", "—"), *[(r, r) for r in ROLES]], required=False)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class SecurityEventFilter(forms.Form):
    user = forms.CharField(required=False, label="Username")
    event = forms.CharField(required=False, label="Event", help_text="e.g. security.login_failed")
    since = forms.DateField(required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (UTC)", widget=forms.DateInput(attrs={"type": "date"}))
