"""Form pieces every app shares (the credentials of an electronic signature) and the ledger page's filter."""
from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from pldreview.dates import day_after, day_start
from pldreview.models import LedgerEntry


class SigningForm(forms.Form):
    """The signer's password (and, on a session's first signing with MFA on, the authenticator code), or a passkey.

    Both are optional here: whether they are needed depends on PLD_SIGNING_REAUTH and the session, so
    ``signature_sign`` decides, and its refusal comes back on these fields. Neither is ever re-displayed.
    """

    password = forms.CharField(
        required=False, strip=False, label="Password (to sign)",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    second_factor = forms.CharField(
        required=False, max_length=20, label="Authenticator code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    # A WebAuthn assertion (JSON), filled in by static/pldreview/passkey_sign.js when the signer uses a passkey.
    passkey = forms.CharField(required=False, max_length=20_000, widget=forms.HiddenInput)


class LedgerFilterForm(forms.Form):
    """What an auditor narrows the ledger to; every field is optional."""

    actor = forms.CharField(required=False, max_length=150, help_text="Username, exactly")
    event = forms.CharField(
        required=False, max_length=60,
        help_text="An event (decision.created) or a prefix ending in a dot (security.)",
        widget=forms.TextInput(attrs={"list": "ledger-events"}),
    )
    object = forms.CharField(
        required=False, max_length=130, help_text="app_label.model, optionally :id — e.g. rules.decision:12"
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, entries: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
        """Return the entries that match the cleaned filters, newest first."""
        data = self.cleaned_data
        if data.get("actor"):
            entries = entries.filter(actor_name=data["actor"])
        event = data.get("event", "")
        if event.endswith("."):
            entries = entries.filter(event__startswith=event)
        elif event:
            entries = entries.filter(event=event)
        if data.get("object"):
            object_type, _, object_id = data["object"].partition(":")
            entries = entries.filter(object_type=object_type.strip().lower())
            if object_id.strip():
                entries = entries.filter(object_id=object_id.strip())
        if data.get("since"):
            entries = entries.filter(created_at__gte=day_start(data["since"]))
        if data.get("until"):
            entries = entries.filter(created_at__lt=day_after(data["until"]))
        if data.get("since") or data.get("until"):
            # Within dates, newest first is by time, then sequence: the same order, as each entry takes its time
            # under the head's lock, unless the clock was set back. The (created_at, sequence) index then yields
            # a page without a sort, where by sequence a day of a million entries was sorted to show 50 (0.8 s).
            entries = entries.order_by("-created_at", "-sequence")
        return entries
