"""Forms of the Admin's account pages and the Auditor's security events."""
from __future__ import annotations

from django import forms

from pldreview.roles import ROLES


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    first_name = forms.CharField(max_length=150, label="Given name")
    last_name = forms.CharField(max_length=150, label="Family name")
    roles = forms.MultipleChoiceField(choices=[(r, r) for r in ROLES], widget=forms.CheckboxSelectMultiple)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class UserActionForm(forms.Form):
    ACTIONS = [
        ("grant", "Grant role"),
        ("revoke", "Revoke role"),
        ("deactivate", "Deactivate"),
        ("activate", "Activate"),
        ("unlock", "Unlock failed logins"),
        ("reset_password", "Force a password reset"),
        ("reset_mfa", "Reset the second factor"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    role = forms.ChoiceField(choices=[("", "—"), *[(r, r) for r in ROLES]], required=False)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class SecurityEventFilter(forms.Form):
    user = forms.CharField(required=False, label="Username")
    event = forms.CharField(required=False, label="Event", help_text="e.g. security.login_failed")
    since = forms.DateField(required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (UTC)", widget=forms.DateInput(attrs={"type": "date"}))
