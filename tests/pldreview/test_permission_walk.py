"""Walk every URL the project serves and prove it needs a login and the right permission.

The login comes from ``LoginRequiredMiddleware``, not from a decorator on each view: the walk proves every
page of ours sends an anonymous visitor to the login page (the token API answers 401), and that only the
views listed in ``OUR_PUBLIC_VIEWS`` opt out with ``@login_not_required``.

The walk reads the URL resolver (``tests/support/url_walk.py``), so pages added later are covered without
touching this file.
"""
from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import get_resolver

from tests.support.url_walk import OUR_APPS, Endpoint, endpoints_of, one_of_each_model, task_of, url_patterns

pytestmark = pytest.mark.django_db

# The only views of ours marked @login_not_required: the token-authenticated API (401 without a token),
# allauth's pages this deployment does not offer (404 for everyone, e.g. "forgot password") and the health checks
# (alive / ready, nothing else).
OUR_PUBLIC_VIEWS = {
    "evaluation.production.api.classify", "evaluation.production.api.decision", "evaluation.production.api.openapi",
    "pldreview.accounts.urls._not_offered",
    "evaluation.views.production.health.healthz", "evaluation.views.production.health.readyz",
}
# URL names that answer 404 (not 403) to a user without permission, to hide that an object exists.
# Add a name here only with a comment saying what it hides.
HIDDEN_FROM_OUTSIDERS: set[str] = set()
# Auditors change nothing; the only POSTs their role allows produce, check and sign off signed reports, and
# sign a checkpoint of the ledger head (issue 22).
AUDITOR_MAY_POST = {"pld-report-generate", "pld-report-verify", "pld-report-sign", "pld-ledger-checkpoint-make",
                    # A token's owner manages its webhooks whatever their role (the walk's token is the Auditor's);
                    # test_webhook_pages.py shows another's token is refused.
                    "pld-webhook-create", "pld-webhook-disable",
                    # ... and produce a signed technical file (issue 24).
                    "pld-technical-file-generate",
                    # ... and ask "Why this label?" of a logged call or a prediction (issue 23): it adds an
                    # explanation record and changes no decision.
                    "pld-classify-call-explain", "pld-prediction-explain"}
# The walk must not pass vacuously: issue 2 alone serves more pages than this.
MIN_PATTERNS = 25
MUST_VISIT = {
    "pld-home", "pld-task-list", "pld-task-detail", "pld-example-detail", "pld-dataset-import",
    "pld-job-list", "pld-job-detail", "pld-job-cancel", "pld-job-retry", "pld-ledger", "pld-ledger-download",
    # Production decisions (issue 15).
    "pld-production", "pld-production-export", "pld-classify-call-list", "pld-classify-call-detail",
    "pld-classify-call-feedback", "pld-production-retention",
    # issue 14
    "pld-waiting-for-me", "pld-waiting-badge", "pld-rule-comment", "pld-review-log", "pld-glossary",
    # issue 22: account changes are confirmed or withdrawn by Admins only.
    "pld-user-change", "pld-account-change-confirm", "pld-account-change-withdraw",
    # issue 25: need-to-know per task.
    "pld-task-members",
    # issue 24/23: overrides, the decision dossier, webhooks.
    "pld-classify-call-override", "pld-decision-dossier", "pld-decision-dossier-export", "pld-api-decision",
    "pld-webhook-list", "pld-token-webhooks", "pld-webhook-create", "pld-webhook-disable",
}
# Need-to-know: the walk must see at least this many task-scoped URLs (a task, or an object of one, in the path).
MIN_TASK_SCOPED = 30


@pytest.fixture
def endpoints(task: Any) -> list[Endpoint]:
    return endpoints_of(one_of_each_model())


def _is_login_redirect(response: Any) -> bool:
    login_url = resolve_url(settings.LOGIN_URL)
    return response.status_code == 302 and response["Location"].startswith(login_url)


# --- the walk ---------------------------------------------------------------------------------

def test_the_walk_covers_the_whole_url_list(endpoints: list[Endpoint]) -> None:
    names = {endpoint.name for endpoint in endpoints}
    assert len(endpoints) >= MIN_PATTERNS, sorted(names)
    assert MUST_VISIT <= names, MUST_VISIT - names
    assert all("<" not in endpoint.url for endpoint in endpoints)


def test_anonymous_visitors_are_sent_to_the_login_page_everywhere(client: Client, endpoints: list[Endpoint]) -> None:
    failures = []
    for endpoint in endpoints:
        answers = {method: getattr(client, method)(endpoint.url) for method in ("get", "post")}
        for method, response in answers.items():
            if endpoint.is_api:
                ok = response.status_code == 401
            else:
                ok = _is_login_redirect(response) or response.status_code == 405
            if not ok:
                failures.append(f"{method.upper()} {endpoint.url} ({endpoint.name}) → {response.status_code}")
        # 405 for both would mean the walk never reached the login check.
        if all(r.status_code == 405 for r in answers.values()):
            failures.append(f"{endpoint.url} ({endpoint.name}) answers neither GET nor POST")
    assert not failures, "\n".join(failures)


def test_only_the_intended_views_of_ours_skip_the_login() -> None:
    public = set()
    for _route, pattern in url_patterns(get_resolver().url_patterns, skipped=("admin/",)):
        view = pattern.callback
        if view.__module__.split(".")[0] in OUR_APPS and not getattr(view, "login_required", True):
            public.add(f"{view.__module__}.{view.__name__}")
    assert public == OUR_PUBLIC_VIEWS


def test_the_public_pages_answer_a_visitor_without_a_login(client: Client, task: Any) -> None:
    assert client.get(resolve_url("login")).status_code == 200
    assert client.get("/accounts/password/reset/").status_code == 404  # not offered, and says so
    assert client.get("/healthz").json() == {"alive": True}
    classify = client.post(resolve_url("pld-api-classify", task.name), {}, content_type="application/json")
    assert classify.status_code == 401 and classify["WWW-Authenticate"].startswith("Bearer")


def test_a_user_without_a_role_is_refused_everywhere(client: Client, outsider: User, endpoints: list[Endpoint]) -> None:
    client.force_login(outsider)
    failures = []
    for endpoint in endpoints:
        for method in ("get", "post"):
            response = getattr(client, method)(endpoint.url)
            allowed = {403, 405} | ({401} if endpoint.is_api else set())
            if endpoint.name in HIDDEN_FROM_OUTSIDERS:
                allowed.add(404)
            if response.status_code not in allowed:
                failures.append(f"{method.upper()} {endpoint.url} ({endpoint.name}) → {response.status_code}")
    assert not failures, "\n".join(failures)


def test_an_auditor_is_refused_every_post(client: Client, auditor: User, endpoints: list[Endpoint]) -> None:
    client.force_login(auditor)
    failures = []
    checked = 0
    for endpoint in endpoints:
        if endpoint.name in AUDITOR_MAY_POST or endpoint.is_api:
            continue
        response = client.post(endpoint.url)
        if response.status_code == 405:
            continue  # a read-only page
        checked += 1
        if response.status_code != 403:
            failures.append(f"POST {endpoint.url} ({endpoint.name}) → {response.status_code}")
    assert checked >= 3  # at least import, job cancel and job retry accept POST
    assert not failures, "\n".join(failures)


# --- the role matrix for key actions ----------------------------------------------------------

def test_reviewers_read_tasks_but_cannot_import_or_run_jobs(client: Client, reviewer: User, task: Any) -> None:
    from pldreview.jobs import job_create

    job = job_create(kind="tests.pldreview.handlers.count_to", title="Count", params={"n": 1})
    client.force_login(reviewer)
    assert client.get("/tasks/").status_code == 200
    assert client.get("/tasks/nda-demo/").status_code == 200
    assert client.get(f"/jobs/{job.pk}/").status_code == 200
    assert client.get("/datasets/import/").status_code == 403
    assert client.post("/datasets/import/", {"task": "x"}).status_code == 403
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.state == job.State.QUEUED


def test_admins_import_and_cancel_jobs(client: Client, admin_user: User, task: Any) -> None:
    from pldreview.jobs import job_create

    job = job_create(kind="tests.pldreview.handlers.count_to", title="Count", params={"n": 1})
    client.force_login(admin_user)
    assert client.get("/datasets/import/").status_code == 200
    response = client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == job.State.CANCELLED


def test_auditors_read_everything_a_reviewer_reads(client: Client, auditor: User, task: Any) -> None:
    client.force_login(auditor)
    for url in ("/", "/tasks/", "/tasks/nda-demo/", "/jobs/"):
        assert client.get(url).status_code == 200, url


# --- need-to-know: a non-member gets 404 on every task-scoped URL ------------------------------------------------


@pytest.mark.parametrize("scoped_auditors", [False, True], ids=["reviewer", "auditor"])
def test_a_non_member_gets_404_on_every_task_scoped_url(
    settings, scoped_auditors: bool, reviewer: User, auditor: User, non_member_reviewer: User,
    non_member_auditor: User, endpoints: list[Endpoint],
) -> None:
    """Every URL naming a task, or an object of one, answers a non-member 404 exactly as for a task that does not
    exist (403 only where the role itself is refused, as it is for a member), whether htmx asks or the page. A
    new view that looks its object up without ``rules.views.shortcuts`` fails here."""
    settings.PLD_AUDITORS_SCOPED = scoped_auditors
    member, stranger = Client(), Client()
    member.force_login(auditor if scoped_auditors else reviewer)
    stranger.force_login(non_member_auditor if scoped_auditors else non_member_reviewer)
    scoped = [e for e in endpoints if not e.is_api and any(task_of(obj) is not None for obj in e.objects)]
    assert len(scoped) >= MIN_TASK_SCOPED, sorted(e.name for e in scoped)
    failures, reached = [], 0

    def status(client: Client, method: str, url: str) -> int:
        # "htmx": the same GET as htmx sends it, for the views that answer a partial then (a fragment must not
        # be a side door around the page's lookup).
        if method == "htmx":
            return client.get(url, HTTP_HX_REQUEST="true").status_code
        return getattr(client, method)(url).status_code

    for endpoint in scoped:
        for method in ("get", "htmx", "post"):
            theirs = status(stranger, method, endpoint.url)
            if theirs == 405:
                continue
            if theirs == 404:
                # The member must reach it (or be refused for another reason), else the 404 proves nothing.
                reached += status(member, method, endpoint.url) != 404
                continue
            if theirs == 403 and status(member, method, endpoint.url) == 403:
                continue  # the role is refused before any lookup, member or not: nothing leaks
            failures.append(f"{method.upper()} {endpoint.url} ({endpoint.name}) → {theirs}")
    assert not failures, "\n".join(failures)
    assert reached >= 10, reached


def test_admins_see_every_task_without_membership(client: Client, admin_user: User, task: Any) -> None:
    from rules.models import TaskMembership

    assert not TaskMembership.objects.filter(user=admin_user).exists()
    client.force_login(admin_user)
    assert client.get(f"/tasks/{task.name}/").status_code == 200
    assert task.name in client.get("/tasks/").content.decode()
