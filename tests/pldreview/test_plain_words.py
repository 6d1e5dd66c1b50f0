"""Plain words: every tip has a glossary entry, the tips are keyboard-reachable, the jargon is gone from pages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template import Context, Template

from pldreview.glossary import GLOSSARY

pytestmark = pytest.mark.django_db
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def test_a_tip_is_focusable_and_described_by_its_plain_explanation() -> None:
    html = Template('{% load plain %}{% explain "at_least" %} {% explain "at_least" %}').render(Context())
    ids = re.findall(r'aria-describedby="([^"]+)"', html)
    assert len(ids) == 2 and ids[0] != ids[1]
    assert 'tabindex="0"' in html and f'role="tooltip" id="{ids[0]}">{GLOSSARY["at_least"].plain}' in html


def test_every_term_used_in_a_template_is_in_the_glossary() -> None:
    used = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r'{% explain "(\w+)"', path.read_text()))
    assert used and used <= set(GLOSSARY)


def test_the_glossary_page_is_linked_from_the_menu_and_lists_the_technical_names(client, auditor) -> None:
    client.force_login(auditor)
    home = client.get("/").content.decode()
    assert '<a href="/glossary/">Glossary</a>' in home
    body = client.get("/glossary/").content.decode()
    for term in GLOSSARY.values():
        assert term.plain in body
    assert "Wilson score interval" in body and "DBSCAN" in body and "pyHanko" in body


@pytest.mark.parametrize("jargon", ["Right on covered", "Wilson 95% lower bound", "Precedence note", "pyHanko:",
                                    "this instance's identity", "DBSCAN on cosine distance"])
def test_the_jargon_is_not_shown_outside_details(jargon) -> None:
    for path in TEMPLATES.rglob("*.html"):
        if path.name == "report_pdf.html":
            continue  # the signed report's technical appendix is for the people who check signatures
        text = re.sub(r"<details.*?</details>", "", path.read_text(), flags=re.S)
        assert jargon not in text, path


def test_every_table_header_cell_says_what_it_heads() -> None:
    missing = []
    for path in TEMPLATES.rglob("*.html"):
        if "_pdf" in path.name:
            continue  # a PDF (report_pdf*.html, technical_file_pdf.html): WeasyPrint carries no header scopes
        missing += [f"{path.name}: {m}" for m in re.findall(r"<th(?![^>]*\bscope=)[ >][^<]{0,40}", path.read_text())]
    assert not missing, missing
