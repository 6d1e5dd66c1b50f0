"""The promotion page: the gate's conditions and evidence, and the forms that promote, override or roll back."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from evaluation.forms import PromotionForm
from evaluation.models import PromotionOverride
from evaluation.release.promotion import (
    earlier_promotions,
    flipped_examples,
    gate_baseline_start,
    is_rollback,
    pending_override,
    production_prompt_version,
    promotion_gate,
    promotion_meaning,
    promotion_override_confirm,
    promotion_override_request,
    promotion_override_withdraw,
    prompt_version_promote,
)
from pldreview.accounts.services import second_person_refusal
from pldreview.forms import SigningForm
from pldreview.signatures import (
    Meaning,
    e_signing,
    prompt_version_content_sha256,
    signature_sign_from_form,
    signing_context,
)
from pldreview.web import form_add_service_errors
from rules.models import PromptVersion
from rules.panels import task_banners
from rules.views.shortcuts import prompt_version_or_404

FLIPS_SHOWN = 50


def _override_or_404(version: PromptVersion, override_id: int) -> PromotionOverride:
    return get_object_or_404(PromotionOverride.objects.select_related("requested_by"), pk=override_id,
                             prompt_version=version)


def _page(
    request: HttpRequest, version: PromptVersion, form: PromotionForm, *, status: int = 200,
    override_errors: list[str] | None = None, confirm_form: SigningForm | None = None,
) -> HttpResponse:
    gate = promotion_gate(prompt_version=version, user=request.user)
    current = gate.production or production_prompt_version(version.task)
    flips = []
    if gate.candidate_run and gate.production_run:
        flips = flipped_examples(old_run=gate.production_run, new_run=gate.candidate_run, limit=FLIPS_SHOWN)
    return render(request, "evaluation/promotion.html", {
        "version": version, "gate": gate, "current": current, "flips": flips, "form": form,
        "n_fixed": sum(1 for f in flips if f.fixed), "n_broken": sum(1 for f in flips if not f.fixed),
        "flips_shown": FLIPS_SHOWN, "override": pending_override(version), "override_errors": override_errors or [],
        "meaning": Meaning(promotion_meaning(version)).label, "confirm_form": confirm_form or SigningForm(),
        "confirm_refusal": second_person_refusal(request.user), "banners": task_banners([version.task]),
        "is_rollback": is_rollback(version), "earlier": earlier_promotions(version),
        **signing_context(request),
    }, status=status)


@require_http_methods(["GET", "POST"])
@permission_required("evaluation.promote_prompt", raise_exception=True)
def promote_prompt(request: HttpRequest, version_id: int) -> HttpResponse:
    """Show the gate's conditions; promote a passing version, or request an override of a failing one."""
    version = prompt_version_or_404(version_id, user=request.user)
    form = PromotionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        justification = data["override_justification"].strip()
        content = prompt_version_content_sha256(version.text)
        try:
            with e_signing():
                if justification:
                    signature = signature_sign_from_form(
                        request, data, meaning=Meaning.GATE_OVERRIDE_REQUESTED, content_sha256=content
                    )
                    promotion_override_request(
                        prompt_version=version, user=request.user, reason=data["reason"],
                        justification=justification, signature=signature,
                    )
                else:
                    signature = signature_sign_from_form(
                        request, data, meaning=promotion_meaning(version), content_sha256=content
                    )
                    promotion = prompt_version_promote(
                        prompt_version=version, user=request.user, reason=data["reason"], signature=signature,
                    )
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            if justification:
                messages.success(request, "Override requested: a different Admin must confirm it before "
                                          f"{version} goes to production.")
                return redirect("pld-prompt-promote", version.pk)
            what = "Rolled back to" if promotion.is_rollback else "Promoted"
            messages.success(request, f"{what} {version}; the API serves it from the next request.")
            return redirect(version.get_absolute_url())
    return _page(request, version, form, status=400 if request.method == "POST" else 200)


@require_POST
@permission_required("evaluation.promote_prompt", raise_exception=True)
def confirm_override(request: HttpRequest, version_id: int, override_id: int) -> HttpResponse:
    """Confirm another Admin's override request as the second Admin (a signing), which promotes the version."""
    version = prompt_version_or_404(version_id, user=request.user)
    override = _override_or_404(version, override_id)
    confirm_form = SigningForm(request.POST)
    confirm_form.is_valid()
    try:
        with e_signing():
            signature = signature_sign_from_form(
                request, {**confirm_form.cleaned_data, "reason": override.reason},
                meaning=Meaning.GATE_OVERRIDE_CONFIRMED, content_sha256=prompt_version_content_sha256(version.text),
            )
            promotion_override_confirm(override=override, user=request.user, signature=signature)
    except ValidationError as exc:
        return _page(request, version, PromotionForm(), status=400, override_errors=exc.messages,
                     confirm_form=SigningForm())
    messages.success(request, f"Override confirmed: {version} is in production; both Admins are on the record.")
    return redirect(version.get_absolute_url())


@require_POST
@permission_required("evaluation.promote_prompt", raise_exception=True)
def withdraw_override(request: HttpRequest, version_id: int, override_id: int) -> HttpResponse:
    """Withdraw a pending override request."""
    version = prompt_version_or_404(version_id, user=request.user)
    override = _override_or_404(version, override_id)
    try:
        promotion_override_withdraw(override=override, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Override request withdrawn.")
    return redirect("pld-prompt-promote", version.pk)


@require_POST
@permission_required("evaluation.run_evaluation", raise_exception=True)
def start_gate_baseline(request: HttpRequest, version_id: int) -> HttpResponse:
    """Start the zero-shot run the gate needs on the version's test examples, and show its progress."""
    version = prompt_version_or_404(version_id, user=request.user)
    try:
        run = gate_baseline_start(prompt_version=version, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("pld-prompt-promote", version.pk)
    messages.success(request, f"Zero-shot baseline run {run.pk} started; the gate uses it once it has finished.")
    return redirect(run.get_absolute_url())
