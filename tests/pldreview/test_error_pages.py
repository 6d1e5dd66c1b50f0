"""The 403, 404 and 500 pages are the app's own pages, and every page names a favicon that exists."""
from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string

pytestmark = pytest.mark.django_db


def test_access_denied_explains_with_the_menu_and_refuses_a_foreign_way_back(client, outsider) -> None:
    client.force_login(outsider)
    response = client.get("/review/", HTTP_REFERER="https://evil.example/phish")
    body = response.content.decode()
    assert response.status_code == 403
    assert 'aria-label="Main"' in body and "Access denied" in body and "no role yet" in body
    assert "evil.example" not in body and "Back to the overview" in body


def test_a_missing_page_is_styled_and_links_home(client, reviewer) -> None:
    client.force_login(reviewer)
    response = client.get("/rules/999999/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode() and 'aria-label="Main"' in response.content.decode()


def test_the_server_error_page_renders_without_a_request() -> None:
    assert "Something went wrong" in render_to_string("500.html")


def test_the_favicon_is_linked_and_served_from_static(client, reviewer) -> None:
    client.force_login(reviewer)
    assert 'rel="icon" href="/static/pldreview/favicon.svg"' in client.get("/").content.decode()
    assert finders.find("pldreview/favicon.svg")
