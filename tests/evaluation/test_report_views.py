"""Report pages: who may list, download, generate and verify, and what each page shows."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.contrib.auth.context_processors import PermWrapper
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import Client

from evaluation.models import Report
from evaluation.release.pdf_signing import pdf_sign
from pldreview.jobs import job_execute
from pldreview.models import Job
from rules.models import PromptVersion, Task
from tests.support.reports import PASSPHRASE, build_report_story


@pytest.fixture(scope="session")
def signed_pdf(identity_file: Path) -> bytes:
    import weasyprint

    return pdf_sign(
        weasyprint.HTML(string="<h1>Report</h1>").write_pdf(), p12_path=identity_file, passphrase=PASSPHRASE
    )


@pytest.fixture
def version(task: Task) -> PromptVersion:
    return PromptVersion.objects.create(
        task=task, number=1, text="1. If it says so, Entailment.", sha256="a" * 64, rule_set_hash="b" * 64,
        template_version="1", status=PromptVersion.Status.PRODUCTION,
    )


def _issued(version: PromptVersion, user: User, data: bytes, media: Path) -> Report:
    """Record a report as issued with the given bytes, the way report_build stores it."""
    relative = f"reports/{version.task.name}-v{version.number}-report-test.pdf"
    (media / "reports").mkdir(parents=True, exist_ok=True)
    (media / relative).write_bytes(data)
    return Report.objects.create(
        prompt_version=version, generated_by=user, status=Report.Status.READY, file=relative,
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), signer="CN=PLD Review test signer",
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_log_in(db: None) -> None:
    response = Client().get("/reports/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_reviewer_may_not_list_generate_or_verify_reports(reviewer: User, version: PromptVersion) -> None:
    client = _client(reviewer)
    assert client.get("/reports/").status_code == 403
    assert client.post("/reports/generate/", {"prompt_version": version.pk}).status_code == 403
    assert client.get("/reports/verify/").status_code == 403
    assert not Report.objects.exists()
    assert not Job.objects.exists()


def test_an_auditor_lists_reports_with_a_fixed_number_of_queries(
    pdf_signing: Path, settings, auditor: User, admin_user: User, version: PromptVersion, signed_pdf: bytes,  # noqa: ANN001
    django_assert_max_num_queries,  # noqa: ANN001
) -> None:
    reports = [_issued(version, admin_user, signed_pdf, Path(settings.MEDIA_ROOT)) for _ in range(3)]
    client = _client(auditor)
    with django_assert_max_num_queries(8):
        response = client.get("/reports/")
    assert response.status_code == 200
    for report in reports:
        assert f"/reports/{report.pk}/download/" in response.content.decode()
    filtered = client.get(f"/reports/?version={version.pk}")
    assert f"Generate a new signed report on {version}" in filtered.content.decode()


def test_an_auditor_downloads_the_issued_file(
    pdf_signing: Path, settings, auditor: User, admin_user: User, version: PromptVersion, signed_pdf: bytes,  # noqa: ANN001
) -> None:
    report = _issued(version, admin_user, signed_pdf, Path(settings.MEDIA_ROOT))
    response = _client(auditor).get(f"/reports/{report.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == signed_pdf


def test_a_report_without_a_file_cannot_be_downloaded(
    auditor: User, admin_user: User, version: PromptVersion
) -> None:
    report = Report.objects.create(
        prompt_version=version, generated_by=admin_user, status=Report.Status.FAILED, error="Signing failed"
    )
    client = _client(auditor)
    assert client.get(f"/reports/{report.pk}/download/").status_code == 404
    page = client.get(f"/reports/{report.pk}/")
    assert "Signing failed" in page.content.decode()


def test_generating_runs_as_a_job_that_issues_a_signed_report(
    pdf_signing: Path, task: Task, reviewer: User, second_reviewer: User, admin_user: User, auditor: User
) -> None:
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    response = _client(auditor).post("/reports/generate/", {"prompt_version": story.version.pk})

    report = Report.objects.get()
    assert report.status == Report.Status.QUEUED
    assert report.generated_by == auditor
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{report.job_id}/"

    job = job_execute(report.job_id)  # what the worker does once the request commits

    report.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["url"] == f"/reports/{report.pk}/"
    assert report.status == Report.Status.READY
    assert report.sha256 and report.size > 0


def test_generating_over_htmx_redirects_the_client_to_the_job(
    pdf_signing: Path, admin_user: User, version: PromptVersion
) -> None:
    response = _client(admin_user).post(
        "/reports/generate/", {"prompt_version": version.pk}, headers={"HX-Request": "true"}
    )
    report = Report.objects.get()
    assert response["HX-Redirect"] == f"/jobs/{report.job_id}/"


def test_the_verify_page_says_not_issued_by_this_instance(pdf_signing: Path, auditor: User, signed_pdf: bytes) -> None:
    upload = SimpleUploadedFile("report.pdf", signed_pdf, content_type="application/pdf")
    response = _client(auditor).post("/reports/verify/", {"file": upload})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Not issued by this instance" in body
    assert "<html" in body


def test_the_verify_page_confirms_an_issued_report_in_an_htmx_fragment(
    pdf_signing: Path, settings, auditor: User, admin_user: User, version: PromptVersion, signed_pdf: bytes,  # noqa: ANN001
) -> None:
    report = _issued(version, admin_user, signed_pdf, Path(settings.MEDIA_ROOT))
    upload = SimpleUploadedFile("report.pdf", signed_pdf, content_type="application/pdf")
    response = _client(auditor).post("/reports/verify/", {"file": upload}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert f"Verified: report {report.pk}" in body
    assert "<html" not in body


def test_the_prompt_version_actions_show_the_button_only_to_those_who_may_generate(
    version: PromptVersion, auditor: User, reviewer: User
) -> None:
    for_auditor = render_to_string(
        "evaluation/prompt_version_report_actions.html", {"prompt_version": version, "perms": PermWrapper(auditor)}
    )
    for_reviewer = render_to_string(
        "evaluation/prompt_version_report_actions.html", {"prompt_version": version, "perms": PermWrapper(reviewer)}
    )
    assert "Generate signed report" in for_auditor
    assert f"/reports/?version={version.pk}" in for_auditor
    assert "Generate signed report" not in for_reviewer
