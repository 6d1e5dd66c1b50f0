"""The promotion page: the gate's evidence side by side, and the form that promotes or rolls back."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods

from evaluation.promotion import (
    flipped_examples,
    production_version,
    promotion_gate,
    promotion_meaning,
    prompt_version_promote,
)
from pldreview.forms import SigningForm
from pldreview.signatures import (
    Meaning,
    prompt_version_content_sha256,
    signature_sign_from_form,
    signing,
    signing_context,
)
from pldreview.web import form_add_service_errors
from rules.models import PromptVersion

FLIPS_SHOWN = 50


class PromotionForm(SigningForm):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label="Reason",
        help_text="Why this version should serve production now. Kept forever in the audit record.",
    )
    override_justification = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Override justification",
        help_text="Only when the gate blocks: why promoting anyway is right. Shown on the report.",
    )


def _get_version_for_user(request: HttpRequest, version_id: int) -> PromptVersion:
    return get_object_or_404(PromptVersion.objects.select_related("task"), pk=version_id)


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("evaluation.promote_prompt", raise_exception=True)
def promote_prompt(request: HttpRequest, version_id: int) -> HttpResponse:
    """Show both versions' evidence and promote (or roll back to) this version with a reason."""
    version = _get_version_for_user(request, version_id)
    form = PromotionForm(request.POST or None)
    meaning = promotion_meaning(version)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with signing():
                signature = signature_sign_from_form(
                    request, data, meaning=meaning, content_sha256=prompt_version_content_sha256(version.text)
                )
                promotion = prompt_version_promote(
                    prompt_version=version, user=request.user, reason=data["reason"],
                    override_justification=data["override_justification"], signature=signature,
                )
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            what = "Rolled back to" if promotion.is_rollback else "Promoted"
            override = " (gate overridden)" if promotion.override_justification else ""
            messages.success(request, f"{what} {version}{override}; the API serves it from the next request.")
            return redirect(version.get_absolute_url())
    gate = promotion_gate(prompt_version=version)
    current = gate.production or production_version(version.task)
    flips = []
    if gate.candidate_run and gate.production_run:
        flips = flipped_examples(old_run=gate.production_run, new_run=gate.candidate_run, limit=FLIPS_SHOWN)
    status = 400 if request.method == "POST" else 200
    return render(request, "evaluation/promotion.html", {
        "version": version, "gate": gate, "current": current, "flips": flips, "form": form,
        "n_fixed": sum(1 for f in flips if f.fixed), "n_broken": sum(1 for f in flips if not f.fixed),
        "flips_shown": FLIPS_SHOWN, "meaning": Meaning(meaning).label,
        **signing_context(request),
    }, status=status)


urlpatterns = [
    path("prompts/<int:version_id>/promote/", promote_prompt, name="pld-prompt-promote"),
]
