"""The background job that produces a signed report (kind ``report``)."""
from __future__ import annotations

from typing import Any

from evaluation.models import Report
from evaluation.release.reports import ReportError, report_build, report_create
from pldreview.jobs import JobProgress
from pldreview.models import Job

STEPS = 3  # gather, render, sign and check


def generate_report(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Build the job's queued report; a retry after a refused signature makes a new record."""
    report = Report.objects.select_related("prompt_version", "generated_by").get(pk=job.params["report_id"])
    if report.status == Report.Status.READY:
        return {"url": report.get_absolute_url(), "report_id": report.pk}
    if report.status == Report.Status.FAILED:
        # A refused report stays on record as refused; trying again is a new report.
        report = report_create(prompt_version=report.prompt_version, user=report.generated_by, job=job)
    progress.set_total(STEPS, f"Preparing report {report.pk} on {report.prompt_version}")
    report = report_build(report=report, progress=progress)
    if report.status != Report.Status.READY:
        raise ReportError(f"Report {report.pk} was not issued: {report.error}")
    return {"url": report.get_absolute_url(), "report_id": report.pk, "sha256": report.sha256}
