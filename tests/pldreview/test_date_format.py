"""Dates read the same everywhere: "2026-11-29 22:46 UTC", never Django's "Nov. 29, 2026, 10:46 p.m."."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.template import Context, Template

from pldreview.jobs import job_create

pytestmark = pytest.mark.django_db
ONE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def test_a_bare_datetime_and_the_named_format_render_the_same() -> None:
    moment = datetime(2026, 11, 29, 22, 46, tzinfo=UTC)
    text = Template('{{ t }}|{{ t|date:"DATETIME_FORMAT" }}|{{ t|date:"SHORT_DATETIME_FORMAT" }}').render(
        Context({"t": moment})
    )
    assert text == "2026-11-29 22:46 UTC|2026-11-29 22:46 UTC|2026-11-29 22:46 UTC"


def test_the_job_pages_show_the_one_format(client, admin_user) -> None:
    job = job_create(kind="tests.pldreview.handlers.count_to", title="Count", params={"n": 1})
    client.force_login(admin_user)
    for url in (f"/jobs/{job.pk}/", "/jobs/"):
        body = client.get(url).content.decode()
        assert ONE_FORMAT.search(body), url
        assert "a.m." not in body and "p.m." not in body, url
