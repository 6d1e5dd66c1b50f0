"""The logged-decision list a page at a time: keyset pages, a total from the rollups, no count of the calls."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evaluation.models import ClassifyCall
from tests.support.factories import ClassifyCallFactory, TaskFactory
from tests.support.prompt_versions import approve_all, compiled, promote_by_override

LABELS = ["Entailment", "Contradiction", "NotMentioned"]


@pytest.fixture
def calls(task, admin_user, second_admin, second_reviewer) -> list[ClassifyCall]:
    """Eleven calls, newest first; two share one instant, as calls in the same millisecond can."""
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    promote_by_override(version, admin=admin_user, second_admin=second_admin)
    now = timezone.now()
    times = [now - timedelta(minutes=n) for n in range(10)] + [now - timedelta(minutes=4)]
    made = [ClassifyCallFactory(prompt_version=version, created_at=at, label=LABELS[n % 3])
            for n, at in enumerate(times)]
    return sorted(made, key=lambda call: (call.created_at, call.pk), reverse=True)


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/calls/(\d+)/"', html)


def _link(html: str, text: str) -> str | None:
    found = re.search(r'<a href="(\?[^"]*)"[^>]*>' + re.escape(text) + "</a>", html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_older_and_newer_links_walk_every_call_once_newest_first(client, auditor, calls, monkeypatch) -> None:
    monkeypatch.setattr("evaluation.views.production.watch.CALLS_PER_PAGE", 4)
    client.force_login(auditor)
    url, seen, pages = "/tasks/nda-demo/calls/", [], []
    while url:
        html = client.get(url).content.decode()
        assert "11 decisions logged" in html
        pages.append(html)
        seen += _ids(html)
        older = _link(html, "Older →")
        url = f"/tasks/nda-demo/calls/{older}" if older else None
    assert seen == [str(call.pk) for call in calls]
    assert [len(_ids(html)) for html in pages] == [4, 4, 3]
    assert _link(pages[0], "← Newer") is None and _link(pages[1], "← Newer") is not None
    # Back from the last page: the page before it, then the newest, whose newer link is gone.
    back = client.get(f"/tasks/nda-demo/calls/{_link(pages[2], '← Newer')}").content.decode()
    assert _ids(back) == _ids(pages[1])
    newest = client.get(f"/tasks/nda-demo/calls/{_link(back, '← Newer')}").content.decode()
    assert _ids(newest) == _ids(pages[0]) and _link(newest, "← Newer") is None


def test_a_label_filters_the_pages_and_the_total(client, auditor, calls, monkeypatch) -> None:
    monkeypatch.setattr("evaluation.views.production.watch.CALLS_PER_PAGE", 2)
    client.force_login(auditor)
    entailment = [str(call.pk) for call in calls if call.label == "Entailment"]
    html = client.get("/tasks/nda-demo/calls/?label=Entailment").content.decode()
    assert f"{len(entailment)} decisions logged with the label Entailment" in html
    older = _link(html, "Older →")
    assert "label=Entailment" in older
    assert _ids(html) + _ids(client.get(f"/tasks/nda-demo/calls/{older}").content.decode())[:2] == entailment[:4]


def test_a_cursor_from_elsewhere_or_typed_wrong_gives_the_newest_page(client, auditor, admin_user, second_reviewer,
                                                                       calls, monkeypatch) -> None:
    monkeypatch.setattr("evaluation.views.production.watch.CALLS_PER_PAGE", 4)
    client.force_login(auditor)
    newest = _ids(client.get("/tasks/nda-demo/calls/").content.decode())
    # Another task's call, as a cursor, is no cursor here: its time places nothing on this task's list.
    other = TaskFactory(name="other-task")
    approve_all(other, second_reviewer)
    elsewhere = ClassifyCallFactory(prompt_version=compiled(other, admin_user),
                                    created_at=calls[5].created_at)
    for query in ("?before=999999", "?after=abc", "?before=" + "9" * 40, "?after=²", f"?after={calls[0].pk}",
                  f"?before={elsewhere.pk}", f"?after={elsewhere.pk}"):
        response = client.get(f"/tasks/nda-demo/calls/{query}")
        assert response.status_code == 200 and _ids(response.content.decode()) == newest, query


def test_the_page_counts_no_calls_and_reads_one_page_of_them(client, auditor, calls, monkeypatch) -> None:
    monkeypatch.setattr("evaluation.views.production.watch.CALLS_PER_PAGE", 4)
    client.force_login(auditor)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/tasks/nda-demo/calls/?before={calls[3].pk}").content.decode()
    assert _ids(html) == [str(call.pk) for call in calls[4:8]]
    on_calls = [q["sql"] for q in queries.captured_queries if 'FROM "evaluation_classifycall"' in q["sql"]]
    # The cursor's own row and one page (plus one, to know whether older calls exist): no COUNT, no OFFSET.
    assert len(on_calls) == 2
    assert not any("COUNT(" in sql.upper() or "OFFSET" in sql.upper() for sql in on_calls)
    assert any("LIMIT 5" in sql for sql in on_calls)
