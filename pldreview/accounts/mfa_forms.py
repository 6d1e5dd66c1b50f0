"""allauth's second-factor forms with the delay after failed attempts checked first (``MFA_FORMS``)."""
from __future__ import annotations

from typing import Any

from allauth.core import context
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from django.core.exceptions import ValidationError

from pldreview.accounts.lockout import delay_message, delay_until, refusal_note, refuse


def _refuse_during_delay(user: Any) -> None:
    # Before the code is looked at: during a wait even the right code is refused (django-axes' middleware then
    # answers 429 with the lockout page, as for a password).
    request = context.request
    until = delay_until(request, user.get_username())
    if until is not None:
        refusal_note(request, user.get_username())
        refuse(request, until)
        raise ValidationError(delay_message(until), code="delayed")


class DelayedAuthenticateForm(AuthenticateForm):
    """The login's second-factor step."""

    def clean_code(self) -> str:
        _refuse_during_delay(self.user)
        return super().clean_code()


class DelayedReauthenticateForm(ReauthenticateForm):
    """A logged-in user confirming a sensitive change with a code."""

    def clean_code(self) -> str:
        _refuse_during_delay(self.user)
        return super().clean_code()
