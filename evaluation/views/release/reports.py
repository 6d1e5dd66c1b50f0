"""Signed reports: list, detail, download, generate (as a job) and the auditor's verification upload."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from evaluation.forms import GenerateReportForm, SignReportForm, VerifyReportForm
from evaluation.models import Report
from evaluation.release.reports import (
    ReportError,
    report_filename,
    report_path,
    report_request,
    report_sign,
    report_signed_content,
    report_signed_off_path,
)
from evaluation.release.verification import report_verify
from pldreview.signatures import Meaning, e_signing, signature_sign_from_form, signing_context
from pldreview.web import HtmxHttpRequest, form_submit
from rules.membership import visible
from rules.views.shortcuts import prompt_version_or_404, task_object_or_404

REPORTS_SHOWN = 200


def _report_or_404(report_id: int, user: Any) -> Report:
    """Return the report if the user may see its task, or 404."""
    reports = Report.objects.select_related(
        "prompt_version", "prompt_version__task", "generated_by", "job", "signature"
    )
    return task_object_or_404(reports, user=user, task_path="prompt_version__task", pk=report_id)


@require_GET
@permission_required("evaluation.view_report", raise_exception=True)
def report_list(request: HtmxHttpRequest) -> HttpResponse:
    reports = visible(Report.objects.select_related("prompt_version", "prompt_version__task", "generated_by"),
                      request.user, task_path="prompt_version__task")
    version = None
    version_id = request.GET.get("version", "")
    if version_id.isdigit():
        version = prompt_version_or_404(int(version_id), user=request.user)
        reports = reports.filter(prompt_version=version)
    context = {"reports": list(reports[:REPORTS_SHOWN]), "version": version, "shown": REPORTS_SHOWN}
    return render(request, "evaluation/report_list.html", context)


@require_GET
@permission_required("evaluation.view_report", raise_exception=True)
def report_detail(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    report = _report_or_404(report_id, request.user)
    if request.htmx:
        return render(request, "evaluation/report_detail.html#report-status", {"report": report})
    return _detail_page(request, report, SignReportForm())


def _detail_page(request: HtmxHttpRequest, report: Report, form: SignReportForm, status: int = 200) -> HttpResponse:
    return render(request, "evaluation/report_detail.html", {
        "report": report, "sign_form": form, **signing_context(request),
    }, status=status)


@require_POST
@permission_required("evaluation.generate_report", raise_exception=True)
def sign_report(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Sign an issued report with the password (meaning "Report signed", over the PDF's bytes)."""
    report = _report_or_404(report_id, request.user)
    form = SignReportForm(request.POST)

    def sign(data: dict[str, Any]) -> Report:
        with e_signing():
            signature = signature_sign_from_form(
                request, data, meaning=Meaning.REPORT_SIGNED, content_sha256=report_signed_content(report)
            )
            return report_sign(report=report, user=request.user, signature=signature)

    if form_submit(form, sign) is not None:
        messages.success(request, f"You signed report {report.pk}.")
        return redirect(report.get_absolute_url())
    return _detail_page(request, _report_or_404(report_id, request.user), form, status=400)


@require_GET
@permission_required("evaluation.view_report", raise_exception=True)
def report_download(request: HtmxHttpRequest, report_id: int) -> FileResponse:
    """Send the signed-off copy once a person signed the report (``?copy=issued``: the file as issued)."""
    report = _report_or_404(report_id, request.user)
    if report.status != Report.Status.READY:
        raise Http404("This report has no file to download.")
    signed_off = report_signed_off_path(report) if request.GET.get("copy") != "issued" else None
    try:
        handle = (signed_off or report_path(report)).open("rb")
    except (ReportError, OSError) as exc:
        raise Http404("The report's file is missing from storage.") from exc
    return FileResponse(handle, as_attachment=True, filename=report_filename(report, signed_off=bool(signed_off)),
                        content_type="application/pdf")


@require_POST
@permission_required("evaluation.generate_report", raise_exception=True)
def generate_report(request: HtmxHttpRequest) -> HttpResponse:
    form = GenerateReportForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, "Choose a prompt version to report on.")
        return redirect("pld-report-list")
    version = form.cleaned_data["prompt_version"]
    try:
        report = report_request(prompt_version=version, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(f"{reverse('pld-report-list')}?version={version.pk}")
    messages.success(request, f"Report {report.pk} on {version} is being generated and signed.")
    url = report.job.get_absolute_url() if report.job else report.get_absolute_url()
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_http_methods(["GET", "POST"])
@permission_required("evaluation.verify_report", raise_exception=True)
def verify_report(request: HtmxHttpRequest) -> HttpResponse:
    verdict = None
    if request.method == "POST":
        form = VerifyReportForm(request.POST, request.FILES)
        if form.is_valid():
            verdict = report_verify(data=form.cleaned_data["file"].read(), ledger=True)
    else:
        form = VerifyReportForm()
    context = {"form": form, "verdict": verdict}
    if request.htmx:
        return render(request, "evaluation/report_verify.html#verify-result", context)
    return render(request, "evaluation/report_verify.html", context)
