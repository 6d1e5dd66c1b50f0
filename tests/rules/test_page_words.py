"""Words on pages: times carry their zone once."""
from __future__ import annotations

import re

import pytest

from tests.support.prompt_versions import in_production

pytestmark = pytest.mark.django_db


def test_a_version_page_names_the_zone_of_its_times_once(client, admin_user, reviewer, task) -> None:
    version = in_production(task, admin=admin_user, reviewer=reviewer)
    client.force_login(admin_user)
    page = client.get(f"/prompts/{version.pk}/").content.decode()
    assert "UTC UTC" not in page
    # The compile time and the promotion row both print "YYYY-MM-DD HH:MM UTC".
    assert len(re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", page)) >= 2
