"""An Auditor signs a report in a real browser and downloads a PDF with two signatures that pdfsig accepts."""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from evaluation.models import Report
from evaluation.release.reports import report_generate
from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in
from tests.support.reports import build_report_story

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]


def _generate(version, user) -> Report:  # noqa: ANN001
    try:
        return report_generate(prompt_version=version, user=user)
    finally:
        connection.close()


def test_an_auditor_signs_a_report_and_downloads_a_pdf_with_two_signatures_pdfsig_accepts(
    browser, live_server, pdf_signing, task, reviewer, second_reviewer, admin_user, auditor, tmp_path: Path  # noqa: F811
) -> None:
    story = build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)
    # pyHanko signs with asyncio.run(), which refuses to run under Playwright's event loop in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        report = pool.submit(_generate, story.version, admin_user).result()
    assert report.status == Report.Status.READY, report.error

    context, page = log_in(browser, live_server, "aude", f"/reports/{report.pk}/")
    assert "Not signed by a person yet." in page.content()
    page.fill("#sign-reason", "Read in full; figures match the evaluation page")
    page.fill("#report-password", "pw-aude")
    page.click("text=Sign the report")
    page.wait_for_selector("text=Download the signed-off PDF (two signatures)")
    assert "Report signed by aude on " in page.content() and "Not signed by a person yet." not in page.content()
    with page.expect_download() as download_info:
        page.click("text=Download the signed-off PDF (two signatures)")
    path = tmp_path / "signed-off.pdf"
    download_info.value.save_as(path)
    close_when_idle(context, page)

    data = path.read_bytes()
    report.refresh_from_db()
    import hashlib

    assert hashlib.sha256(data).hexdigest() == report.signed_off_sha256
    if shutil.which("pdfsig"):  # poppler-utils: scripts/test installs it
        out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False).stdout
        assert out.count("Signature Validation: Signature is Valid.") == 2, out
        assert "Total document signed" in out
