"""Form pieces every app shares: the credentials of an electronic signature."""
from __future__ import annotations

from django import forms


class SigningForm(forms.Form):
    """The signer's password (and, on a session's first signing with MFA on, the authenticator code).

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
