"""Small pieces every app's views share: a service's ValidationError onto a form, the end of an htmx poll."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django_htmx.http import HttpResponseStopPolling


def form_add_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form: on the field it names, else on the whole form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            # Services name model fields; one the form lacks still has to reach the user.
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def stop_polling_and_refresh(response: HttpResponse) -> HttpResponse:
    """Return the poll's last fragment with htmx told to stop polling and reload the page once."""
    # The finished page shows what the progress fragment cannot: results, links, messages.
    stop = HttpResponseStopPolling(response.content)
    stop["HX-Refresh"] = "true"
    return stop
