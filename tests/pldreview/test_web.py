"""Helpers the views share: service errors onto forms, the end of an htmx poll."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpResponse

from pldreview.web import form_add_service_errors, stop_polling_and_refresh


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False)


def _bound_form() -> ReasonForm:
    form = ReasonForm({"reason": "x"})
    assert form.is_valid()
    return form


def test_an_error_on_a_field_of_the_form_lands_on_that_field() -> None:
    form = _bound_form()
    form_add_service_errors(form, ValidationError({"reason": "Say why."}))
    assert form.errors == {"reason": ["Say why."]}


def test_an_error_on_a_field_the_form_lacks_lands_on_the_whole_form() -> None:
    form = _bound_form()
    form_add_service_errors(form, ValidationError({"prompt_text": "A pld run needs rules."}))
    assert form.non_field_errors() == ["A pld run needs rules."]


def test_a_plain_error_lands_on_the_whole_form() -> None:
    form = _bound_form()
    form_add_service_errors(form, ValidationError(["First problem.", "Second problem."]))
    assert form.non_field_errors() == ["First problem.", "Second problem."]


def test_the_last_poll_stops_polling_and_reloads_the_page_once() -> None:
    response = stop_polling_and_refresh(HttpResponse("<p>done</p>"))
    assert response.status_code == 286
    assert response["HX-Refresh"] == "true"
    assert response.content == b"<p>done</p>"
