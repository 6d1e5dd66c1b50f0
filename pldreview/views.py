"""Project-level pages: the glossary, the background jobs and the 403 page."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from pldreview.glossary import TERMS
from pldreview.jobs import job_cancel, job_retry, jobs_visible_to
from pldreview.models import Job
from pldreview.web import HtmxHttpRequest, stop_polling_and_refresh


@login_not_required
def permission_denied(request: HtmxHttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Explain a refusal inside the normal page, with the menu and a way back (the project's 403 handler)."""
    referer = request.META.get("HTTP_REFERER", "")
    safe = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    back = referer if referer and safe and referer != request.build_absolute_uri() else ""
    return render(request, "403.html", {"back_url": back}, status=403)


@require_GET
@permission_required("rules.view_rule", raise_exception=True)
def glossary(request: HtmxHttpRequest) -> HttpResponse:
    """Explain every statistic and term of the app in plain words, with the technical name where there is one."""
    return render(request, "pldreview/glossary.html", {"terms": TERMS})


@require_GET
@permission_required("pldreview.view_job", raise_exception=True)
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    """List recent jobs; the htmx poll gets the table alone and stops once nothing is unfinished."""
    jobs = list(jobs_visible_to(Job.objects.select_related("created_by"), request.user)[:200])
    context = {"jobs": jobs, "any_unfinished": any(not job.is_finished for job in jobs)}
    if request.htmx:
        response = render(request, "pldreview/job_list.html#job-table", context)
        return response if context["any_unfinished"] else HttpResponseStopPolling(response.content)
    return render(request, "pldreview/job_list.html", context)


@require_GET
@permission_required("pldreview.view_job", raise_exception=True)
def job_detail(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Show a job's progress; the htmx poll gets the progress fragment and stops when it has finished."""
    job = get_object_or_404(jobs_visible_to(Job.objects.select_related("created_by"), request.user), pk=job_id)
    if request.htmx:
        response = render(request, "pldreview/job_detail.html#job-progress", {"job": job})
        return stop_polling_and_refresh(response) if job.is_finished else response
    return render(request, "pldreview/job_detail.html", {"job": job})


@require_POST
@permission_required("pldreview.run_job", raise_exception=True)
def cancel_job(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Ask a job to stop."""
    job = get_object_or_404(jobs_visible_to(Job.objects.all(), request.user), pk=job_id)
    job_cancel(job=job)
    messages.info(request, "Cancellation requested. The job stops at its next step; retry resumes it.")
    return redirect(job)


@require_POST
@permission_required("pldreview.run_job", raise_exception=True)
def retry_job(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Queue a failed or cancelled job again; it resumes from its stored work."""
    job = get_object_or_404(jobs_visible_to(Job.objects.all(), request.user), pk=job_id)
    if not job.can_retry:
        state = job.get_state_display().lower()
        messages.error(request, f"This job is {state}; only failed or cancelled jobs can be retried.")
        return redirect(job)
    job_retry(job=job)
    messages.success(request, "The job is queued again and resumes where it stopped.")
    return redirect(job)
