"""The auditor's ledger page: filters, pages, a constant number of queries, verify now, the download."""
from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pldreview import ledger_views
from pldreview.forms import LedgerFilterForm
from pldreview.ledger import ledger_append, ledger_event_names, ledger_head
from pldreview.ledger_export import ledger_export_lines
from pldreview.models import LedgerEntry
from rules.models import Task
from tests.pldreview.ledgerkit import raw, side_door

pytestmark = pytest.mark.django_db


def _client(user) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(user)
    return client


def _fill(n: int, *, actor, task: Task) -> None:  # noqa: ANN001
    for i in range(n):
        ledger_append(event="security.login" if i % 3 == 0 else "task.viewed", actor=actor, obj=task,
                      facts={"i": i})


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_auditors_and_admins_see_it_in_the_nav_and_reviewers_are_refused(auditor, admin_user, reviewer) -> None:  # noqa: ANN001
    for user in (auditor, admin_user):
        page = _client(user).get("/").content.decode()
        assert 'href="/ledger/"' in page
        assert _client(user).get("/ledger/").status_code == 200
    assert _client(reviewer).get("/ledger/").status_code == 403
    assert _client(reviewer).get("/ledger/export.jsonl").status_code == 403


def test_the_query_count_does_not_grow_with_the_ledger(auditor, task) -> None:  # noqa: ANN001
    client = _client(auditor)
    _fill(5, actor=auditor, task=task)
    few = _queries(client, "/ledger/?event=security.")
    _fill(150, actor=auditor, task=task)
    many = _queries(client, "/ledger/?event=security.")
    assert few == many
    assert _queries(client, "/ledger/?page=2") == many


def test_the_unfiltered_page_reads_neither_every_entry_nor_every_event(auditor, admin_user, task) -> None:  # noqa: ANN001
    _fill(7, actor=auditor, task=task)
    for event in ("dataset.imported", "a.first", "security.logout", "task.viewed"):
        ledger_append(event=event, actor=admin_user, obj=None, facts={})
    assert ledger_event_names() == sorted(set(LedgerEntry.objects.values_list("event", flat=True)))
    client = _client(auditor)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/ledger/")
    page = response.context["page"]
    assert page.paginator.count == ledger_head()[0] == LedgerEntry.objects.count()
    on_entries = [q["sql"].upper() for q in ctx.captured_queries if "PLDREVIEW_LEDGERENTRY" in q["sql"].upper()]
    assert not any("COUNT(" in sql or "DISTINCT" in sql for sql in on_entries), on_entries
    html = response.content.decode()
    assert '<option value="a.first">' in html
    # Filtered, the count is the filter's own.
    security = LedgerEntry.objects.filter(event__startswith="security.").count()
    assert security == 5  # three logins filled, one logout, and the auditor's own login
    assert client.get("/ledger/", {"event": "security."}).context["page"].paginator.count == security


def test_the_event_list_walks_the_event_index(db) -> None:  # noqa: ANN001
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN SELECT MIN(event) FROM {table} WHERE event > %s", ["a"])  # noqa: S608
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN SELECT MIN(event) FROM {table} WHERE event > ?", ["a"])  # noqa: S608
        plan = "\n".join(str(row) for row in cursor.fetchall())
    # Each step of the walk reads the event index, never the table. (On a large table PostgreSQL stops at the
    # first match, Limit over "Index Cond: event > …"; on the few rows of a test it may scan the small index
    # through, so only the index is asserted there. docs/benchmarks.md has the page at 100,000 entries.)
    if connection.vendor == "postgresql":
        # Any index that leads with event: the field's own, (event, sequence) or (event, created_at, sequence).
        assert any(f"{scan} {index}" in plan for scan in (
            "Index Only Scan using", "Index Scan using", "Bitmap Index Scan on")
            for index in ("pldreview_ledgerentry_event", "ledger_event_idx", "ledger_event_time_idx")), plan
    else:
        assert "USING COVERING INDEX" in plan and "(event>?)" in plan, plan


def test_filters_by_event_prefix_actor_object_and_date(auditor, admin_user, task) -> None:  # noqa: ANN001
    _fill(6, actor=auditor, task=task)
    ledger_append(event="dataset.imported", actor=admin_user, obj=None, facts={})
    client = _client(auditor)  # logging in is itself a security event: a third security.login
    page = client.get("/ledger/", {"event": "security."}).context["page"]
    assert page.paginator.count == 3 and {e.event for e in page.object_list} == {"security.login"}
    assert client.get("/ledger/", {"event": "task.viewed"}).context["page"].paginator.count == 4
    assert client.get("/ledger/", {"actor": admin_user.username}).context["page"].paginator.count == 1
    assert client.get("/ledger/", {"object": f"rules.task:{task.pk}"}).context["page"].paginator.count == 6
    assert client.get("/ledger/", {"object": "rules.task"}).context["page"].paginator.count == 6
    assert client.get("/ledger/", {"since": "2000-01-01", "until": "2000-12-31"}).context["page"].paginator.count == 0
    assert client.get("/ledger/", {"since": "2000-01-01"}).context["page"].paginator.count == 8


def test_a_date_range_holds_both_whole_days_in_the_sites_time_zone(auditor, settings) -> None:  # noqa: ANN001
    settings.TIME_ZONE = "America/New_York"  # UTC-5 in January: a day there starts at 05:00 UTC
    for moment in ("2026-01-10T04:59:59", "2026-01-10T05:00:00", "2026-01-12T04:59:59", "2026-01-12T05:00:00"):
        entry = ledger_append(event="task.viewed", actor=auditor, obj=None, facts={"at": moment})
        with side_door("pldreview_ledgerentry"):
            raw(f"UPDATE pldreview_ledgerentry SET created_at = '{moment.replace('T', ' ')}' WHERE id = {entry.pk}")
    page = _client(auditor).get("/ledger/", {"event": "task.viewed", "since": "2026-01-10", "until": "2026-01-11"})
    assert [json.loads(e.payload)["facts"]["at"] for e in page.context["page"].object_list] == [
        "2026-01-12T04:59:59", "2026-01-10T05:00:00"]


def test_a_filter_matching_more_than_the_limit_counts_to_it_and_says_so(auditor, task, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ledger_views, "COUNT_LIMIT", 4)
    monkeypatch.setattr(ledger_views, "PAGE_SIZE", 2)
    _fill(9, actor=auditor, task=task)  # six task.viewed, three security.login
    client = _client(auditor)
    first = client.get("/ledger/", {"event": "task.viewed"})
    assert first.context["page"].paginator.count == 4 and first.context["beyond"]
    assert "of more than 4 entries" in first.content.decode()
    last = client.get("/ledger/", {"event": "task.viewed", "page": "2"})
    sequences = [e.sequence for e in last.context["page"].object_list]
    assert sequences == list(LedgerEntry.objects.filter(event="task.viewed").order_by("-sequence")
                             .values_list("sequence", flat=True)[2:4])
    assert not last.context["page"].has_next() and "narrow the filter or the dates" in last.content.decode()
    # Within the limit, the count is exact and nothing is said.
    exact = client.get("/ledger/", {"event": "security."})
    assert exact.context["page"].paginator.count == 4 and not exact.context["beyond"]  # three filled, one login
    assert "narrow the filter" not in exact.content.decode()


@pytest.mark.parametrize("filters, index", [
    ({"event": "task.viewed"}, "ledger_event_idx"),
    ({"actor": "rita"}, "ledger_actor_idx"),
    ({"since": "2026-01-10", "until": "2026-01-11"}, "ledger_created_idx"),
    ({"event": "task.viewed", "since": "2026-01-10"}, "ledger_event_time_idx"),
    ({"actor": "rita", "until": "2026-01-11"}, "ledger_actor_time_idx"),
])
def test_a_filtered_page_is_read_from_its_index_newest_first(db, filters, index) -> None:  # noqa: ANN001
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans by its statistics; on a test's few rows it scans (docs/ledger.md)")
    form = LedgerFilterForm(filters)
    assert form.is_valid(), form.errors
    plan = form.filter(LedgerEntry.objects.order_by("-sequence")).explain()
    # Before its index, an event filter sorted every match (1.1 s at a million entries), a date computed the
    # date of every entry (10 s) and an actor read them all; a date's index alone still sorted a day (0.8 s).
    assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan


def test_verify_now_shows_the_result_and_the_time_it_took(auditor, task) -> None:  # noqa: ANN001
    _fill(3, actor=auditor, task=task)
    body = _client(auditor).get("/ledger/", {"verify": "1"}).content.decode()
    assert "<strong>Intact: " in body and "entries and" in body and " s." in body
    assert "Intact. Intact" not in body and "Intact.</strong>" not in body  # the verdict says it once
    with side_door("pldreview_ledgerentry"):
        raw("UPDATE pldreview_ledgerentry SET payload = payload || ' ' WHERE sequence = 2")
    body = _client(auditor).get("/ledger/", {"verify": "1"}).content.decode()
    assert "<strong>Broken at #2: " in body and body.count("Broken at") == 1


def test_the_download_is_the_export(auditor, task) -> None:  # noqa: ANN001
    _fill(4, actor=auditor, task=task)
    response = _client(auditor).get("/ledger/export.jsonl")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert body == "".join(ledger_export_lines())
    # The four filled entries and the auditor's own login.
    assert [json.loads(line)["sequence"] for line in body.splitlines()] == [1, 2, 3, 4, 5]
