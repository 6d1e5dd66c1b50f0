"""The report service: what a signed report states, how it is recorded, and when it is refused."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation.demo.reports import seed_report
from evaluation.models import EvaluationRun, Report
from evaluation.release.pdf_signing import pdf_signature_validate, signing_identity_load
from evaluation.release.reports import report_data, report_generate, report_path, report_render_html
from rules.models import PromptVersion, Task
from tests.support.reports import (
    EDIT_REASON,
    OVERRIDE,
    PASSPHRASE,
    PROMOTION_REASON,
    REJECT_REASON,
    RULE_TEXT,
    build_report_story,
    pdf_text,
    write_expired_identity,
)


@pytest.fixture
def story(task: Task, reviewer: User, second_reviewer: User, admin_user: User):  # noqa: ANN201
    return build_report_story(task=task, reviewer=reviewer, second_reviewer=second_reviewer, admin=admin_user)


def test_a_report_states_the_rules_the_reasons_and_the_metrics(pdf_signing: Path, story, auditor: User) -> None:
    report = report_generate(prompt_version=story.version, user=auditor)

    report.refresh_from_db()
    assert report.status == Report.Status.READY, report.error
    data = report_path(report).read_bytes()
    assert report_path(report).parent.name == "reports"
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.size == len(data)
    identity = signing_identity_load(p12_path=pdf_signing, passphrase=PASSPHRASE)
    assert identity.fingerprint in report.signer
    check = pdf_signature_validate(data, trust=identity.certificate)
    assert check.valid and check.trusted and check.unmodified

    text = pdf_text(data)
    assert RULE_TEXT in text  # the rule as proposed, quoted in its history
    assert EDIT_REASON in text  # a reviewer's reason
    assert "Matches clause 4.2" in text
    assert "0.812" in text  # macro-F1 of the version's run, from EvaluationRun.metrics
    assert "0.742" in text and "0.872" in text  # its confidence interval
    assert "240.3" in text  # p95 latency
    assert "teacher-model-x" in text  # the model that proposed the rules
    assert PROMOTION_REASON in text and OVERRIDE in text
    assert "Gate overridden by two Admins. Requested by alex, confirmed by adam." in text
    assert "not above chance (0.33)" in text  # the failing figures the second Admin confirmed
    assert "low rule adherence" in text
    assert identity.fingerprint.replace(":", "")[:8] in text.replace(":", "")
    assert story.version.sha256 in text
    assert REJECT_REASON not in text  # a rejected rule is not in the prompt, so not in its report
    assert Report.history.filter(id=report.pk).count() >= 2  # queued, then issued


def test_regenerating_makes_a_new_record_and_keeps_the_first_file(pdf_signing: Path, story, admin_user: User) -> None:
    first = report_generate(prompt_version=story.version, user=admin_user)
    first_bytes = report_path(first).read_bytes()
    second = report_generate(prompt_version=story.version, user=admin_user)

    assert first.pk != second.pk
    assert first.file != second.file
    assert report_path(first).read_bytes() == first_bytes
    assert first.sha256 != second.sha256
    assert Report.objects.filter(prompt_version=story.version, status=Report.Status.READY).count() == 2


def test_it_refuses_to_issue_a_report_that_fails_its_own_signature_check(
    settings, story, admin_user: User, tmp_path: Path  # noqa: ANN001
) -> None:
    # A real identity that pyHanko signs with but that does not validate: its certificate expired.
    write_expired_identity(tmp_path / "expired.p12", PASSPHRASE)
    settings.PLD_SIGNING_P12 = str(tmp_path / "expired.p12")
    settings.PLD_SIGNING_PASSPHRASE = PASSPHRASE
    settings.MEDIA_ROOT = str(tmp_path / "media")

    report = report_generate(prompt_version=story.version, user=admin_user)

    report.refresh_from_db()
    assert report.status == Report.Status.FAILED
    assert "failed its own signature check" in report.error
    assert "was not valid when it signed" in report.error
    assert report.file == "" and report.sha256 == ""
    assert not (tmp_path / "media" / "reports").exists() or not any((tmp_path / "media" / "reports").iterdir())


def test_without_a_signing_identity_the_report_fails_with_a_clear_error(
    settings, story, admin_user: User, tmp_path: Path  # noqa: ANN001
) -> None:
    settings.PLD_SIGNING_P12 = str(tmp_path / "missing.p12")
    settings.MEDIA_ROOT = str(tmp_path / "media")

    report = report_generate(prompt_version=story.version, user=admin_user)

    assert report.status == Report.Status.FAILED
    assert "create_signing_identity" in report.error


def test_a_reviewer_may_not_generate_a_report(pdf_signing: Path, story, reviewer: User) -> None:
    with pytest.raises(PermissionDenied):
        report_generate(prompt_version=story.version, user=reviewer)
    assert not Report.objects.exists()


def test_the_report_tolerates_runs_with_missing_metrics(task: Task, admin_user: User) -> None:
    version = PromptVersion.objects.create(
        task=task, number=3, text="Rules.", sha256="0" * 64, rule_set_hash="1" * 64, template_version="1"
    )
    EvaluationRun.objects.create(
        task=task, mode=EvaluationRun.Mode.PLD, prompt_version=version, model_path="/m.gguf",
        status=EvaluationRun.Status.FINISHED, metrics={"macro_f1": 0.5},
    )
    data = report_data(prompt_version=version, generated_by=admin_user, generated_at=None, report_id=None,
                       identity=None)
    html = report_render_html(data)

    assert "0.500" in html
    assert "contains no rules" in html
    assert "has never been promoted" in html
    assert "does not match the text" in html  # the stored prompt hash is not the text's hash


def test_export_report_writes_the_production_versions_report(
    pdf_signing: Path, story, admin_user: User, tmp_path: Path
) -> None:
    out = tmp_path / "exported.pdf"
    output = io.StringIO()
    call_command("export_report", "--task", "nda-demo", "--out", str(out), "--user", "adam", stdout=output)

    report = Report.objects.get()
    assert report.prompt_version == story.version
    assert report.generated_by == admin_user
    assert hashlib.sha256(out.read_bytes()).hexdigest() == report.sha256
    assert report.sha256 in output.getvalue()


def test_export_report_explains_when_a_task_has_no_production_version(
    pdf_signing: Path, task: Task, admin_user: User, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="no prompt version in production"):
        call_command("export_report", "--task", task.name, "--out", str(tmp_path / "x.pdf"), stdout=io.StringIO())
    with pytest.raises(CommandError, match="either a prompt version id or --task"):
        call_command("export_report", "--out", str(tmp_path / "x.pdf"), stdout=io.StringIO())


def test_the_demo_step_creates_the_identity_and_one_report_only_once(
    settings, story, auditor: User, tmp_path: Path  # noqa: ANN001
) -> None:
    settings.PLD_SIGNING_P12 = str(tmp_path / "signing" / "demo.p12")
    settings.PLD_SIGNING_PASSPHRASE = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    first, second = io.StringIO(), io.StringIO()

    seed_report(first)
    seed_report(second)

    report = Report.objects.get()
    assert report.status == Report.Status.READY
    assert report.generated_by == auditor
    assert "created the demo signing identity" in first.getvalue()
    assert "already issued" in second.getvalue()
    assert "created" not in second.getvalue()


def _reports_dir() -> Path:
    from django.conf import settings

    from evaluation.release.reports import REPORTS_DIR

    return Path(settings.MEDIA_ROOT) / REPORTS_DIR


def test_a_report_file_never_collides_with_one_left_by_an_earlier_database(
    pdf_signing: Path, story, admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh database beside an old MEDIA_ROOT reuses report ids: plant the file an old report 1 left behind.
    reports_dir = _reports_dir()
    reports_dir.mkdir(parents=True, exist_ok=True)
    planted = reports_dir / f"{story.version.task.name}-v{story.version.number}-report-1.pdf"
    planted.write_bytes(b"an old database's report")
    report = report_generate(prompt_version=story.version, user=admin_user)
    assert report.status == Report.Status.READY, report.error
    assert report_path(report) != planted and planted.read_bytes() == b"an old database's report"
    assert report.sha256[:16] in report.file  # named by its own content, not by the database id alone

    # Even a name drawn twice never overwrites: the random part is fixed here to force the clash.
    import evaluation.release.reports as reports_module

    class _Fixed:
        hex = "0" * 32

    monkeypatch.setattr(reports_module.uuid, "uuid4", lambda: _Fixed())
    kept = reports_module._store(report, b"first")
    with pytest.raises(reports_module.ReportError, match="free file name"):
        reports_module._store(report, b"first")
    assert (Path(reports_module.settings.MEDIA_ROOT) / kept).read_bytes() == b"first"
