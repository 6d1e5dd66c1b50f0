"""Small pieces every app's views share: a form submitted to a service, a service's ValidationError onto a
form, starting a job from a form, the end of an htmx poll."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from pldreview.jobs import job_start_from_form

T = TypeVar("T")


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware: ``request.htmx`` says whether htmx sent it."""

    htmx: HtmxDetails


def form_add_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form: on the field it names, else on the whole form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            # Services name model fields; one the form lacks still has to reach the user.
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def form_submit(form: forms.BaseForm, service: Callable[[dict[str, Any]], T]) -> T | None:
    """Call the service with a valid form's cleaned data and return what it made; None if either refused.

    The service's refusal (a ValidationError) goes onto the form, which the caller shows again.
    """
    if not form.is_valid():
        return None
    try:
        return service(form.cleaned_data)
    except ValidationError as exc:
        form_add_service_errors(form, exc)
        return None


def job_start_or_form_page(
    request: HttpRequest, *, form: forms.BaseForm, kind: str, title: str, params: dict[str, Any], template: str,
    page: Callable[[], dict[str, Any]],
) -> HttpResponse:
    """Start a job from a valid form and go to the job's page; else show the form's page again (400)."""
    job = job_start_from_form(form=form, kind=kind, title=title, params=params, user=request.user)
    if job is None:
        return render(request, template, page(), status=400)
    return redirect(job)


def stop_polling_and_refresh(response: HttpResponse) -> HttpResponse:
    """Return the poll's last fragment with htmx told to stop polling and reload the page once."""
    # The finished page shows what the progress fragment cannot: results, links, messages.
    stop = HttpResponseStopPolling(response.content)
    stop["HX-Refresh"] = "true"
    return stop
