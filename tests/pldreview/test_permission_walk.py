"""Walk every URL the project serves and prove it needs a login and the right permission.

The login comes from ``LoginRequiredMiddleware``, not from a decorator on each view: the walk proves every
page of ours sends an anonymous visitor to the login page (the token API answers 401), and that only the
views listed in ``OUR_PUBLIC_VIEWS`` opt out with ``@login_not_required``.

The walk reads the URL resolver, so pages added later are covered without touching this file.
Path parameters are filled with real objects: one instance of every model of our apps is built
by a small generic factory, and ``<thing>_id`` takes the primary key of the model named like it.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.db import models, transaction
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from pldreview.ledger import ledger_append
from pldreview.models import LedgerEntry

pytestmark = pytest.mark.django_db

OUR_APPS = ("pldreview", "rules", "evaluation")
# Not walked: the login page itself (allauth's, public) and logging out.
PUBLIC_URL_NAMES = {"login", "logout"}
# The only views of ours marked @login_not_required: the token-authenticated API (401 without a token) and
# allauth's pages this deployment does not offer (404 for everyone, e.g. "forgot password").
OUR_PUBLIC_VIEWS = {"evaluation.api.classify", "evaluation.api.openapi", "pldreview.accounts.urls._not_offered"}
# accounts/ is django-allauth's self-service (own password, second factor, sessions): open to every logged-in
# user whatever their role; tests/accounts/test_account_pages.py walks it.
SKIPPED_PREFIXES = ("admin/", "static/", "media/", "__debug__/", "accounts/", "^accounts/")
# URL names that answer 404 (not 403) to a user without permission, to hide that an object exists.
# Add a name here only with a comment saying what it hides.
HIDDEN_FROM_OUTSIDERS: set[str] = set()
# Auditors change nothing; the only POSTs their role allows produce, check and sign off signed reports, and
# sign a checkpoint of the ledger head (issue 22).
AUDITOR_MAY_POST = {"pld-report-generate", "pld-report-verify", "pld-report-sign", "pld-ledger-checkpoint-make"}
# The walk must not pass vacuously: issue 2 alone serves more pages than this.
MIN_PATTERNS = 25
MUST_VISIT = {
    "pld-home", "pld-task-list", "pld-task-detail", "pld-example-detail", "pld-dataset-import",
    "pld-job-list", "pld-job-detail", "pld-job-cancel", "pld-job-retry", "pld-ledger", "pld-ledger-download",
    # Production decisions (issue 15).
    "pld-production", "pld-production-export", "pld-classify-call-list", "pld-classify-call-detail",
    "pld-classify-call-feedback", "pld-production-retention",
    # issue 14
    "pld-waiting-for-me", "pld-waiting-badge", "pld-rule-comment", "pld-decision-log-page", "pld-glossary",
    # issue 22: account changes are confirmed or withdrawn by Admins only.
    "pld-user-change", "pld-account-change-confirm", "pld-account-change-withdraw",
}
_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")
# re_path() routes: a named group becomes a parameter like a converter.
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


@dataclass(frozen=True)
class Endpoint:
    name: str
    route: str
    url: str

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")


def _patterns(
    resolvers: list[Any], prefix: str = "", skipped: tuple[str, ...] = SKIPPED_PREFIXES
) -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolvers:
        route = prefix + str(entry.pattern)
        if route.startswith(skipped):
            continue
        if isinstance(entry, URLResolver):
            found.extend(_patterns(entry.url_patterns, route, skipped))
        else:
            found.append((route, entry))
    return found


# --- one object of every model ----------------------------------------------------------------

def _value_for(field: models.Field, made: dict[type, models.Model]) -> Any:
    if field.choices:
        return field.choices[0][0]
    if isinstance(field, (models.ForeignKey, models.OneToOneField)):
        return _instance(field.related_model, made)
    if isinstance(field, models.EmailField):
        return "walk@example.org"
    if isinstance(field, models.URLField):
        return "http://127.0.0.1/"
    if isinstance(field, (models.CharField, models.TextField)):
        return "walk-1"
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, (models.IntegerField, models.PositiveIntegerField, models.BigIntegerField)):
        return 1
    if isinstance(field, models.FloatField):
        return 0.5
    if isinstance(field, models.DecimalField):
        return Decimal("1")
    if isinstance(field, models.DateTimeField):
        return timezone.now()
    if isinstance(field, models.DateField):
        return date.today()
    if isinstance(field, models.DurationField):
        return timedelta(seconds=1)
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.FileField):
        return "walk/file.bin"
    if isinstance(field, models.BinaryField):
        return b"walk"
    return "walk-1"


def _instance(model: type[models.Model], made: dict[type, models.Model]) -> models.Model:
    """Return an object of the model: an existing one, or one built with placeholder required values."""
    if model in made:
        return made[model]
    existing = model._default_manager.order_by("pk").first()
    if existing is not None:
        made[model] = existing
        return existing
    if model is User:
        made[model] = User.objects.create_user(username="walk-owner")
        return made[model]
    if model is LedgerEntry:
        # Through the head, so the logins that follow (they append security events) continue the chain.
        made[model] = ledger_append(event="walk.created", actor=None)
        return made[model]
    values = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        if field.null or field.has_default():
            continue
        if isinstance(field, (models.CharField, models.TextField)) and field.blank and not field.choices:
            continue
        values[field.attname if field.is_relation else field.name] = (
            _value_for(field, made).pk if field.is_relation else _value_for(field, made)
        )
    with transaction.atomic():
        made[model] = model._default_manager.create(**values)
    return made[model]


def _one_of_each_model() -> dict[type, models.Model]:
    made: dict[type, models.Model] = {}
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models():
            if model.__name__.startswith("Historical"):
                continue
            try:
                _instance(model, made)
            except Exception:  # noqa: BLE001 - any model the placeholders cannot build
                # A model with constraints the placeholders cannot meet: its URLs get an id that
                # matches nothing, which still proves the permission check runs first.
                continue
    return made


def _argument(converter: str | None, name: str, made: dict[type, models.Model]) -> str:
    if name.endswith("_id") or converter == "int":
        wanted = name.removesuffix("_id").replace("_", "").lower()
        by_name = {model.__name__.lower(): obj for model, obj in made.items()}
        for key in (k for k in by_name if k == wanted):
            return str(by_name[key].pk)
        for key in (k for k in sorted(by_name) if k.endswith(wanted) or k.startswith(wanted)):
            return str(by_name[key].pk)
        return "999999"
    if name == "task_name":
        return next(obj.name for model, obj in made.items() if model.__name__ == "Task")
    if converter == "uuid":
        return str(uuid.uuid4())
    if name in {"fmt", "format"}:
        return "csv"
    return "walk-1"


def _endpoints(made: dict[type, models.Model]) -> list[Endpoint]:
    endpoints = []
    for route, pattern in _patterns(get_resolver().url_patterns):
        if pattern.name in PUBLIC_URL_NAMES:
            continue
        url = _REGEX_GROUP.sub(lambda m: _argument(None, m["name"], made), route)
        url = "/" + _PARAM.sub(lambda m: _argument(m["converter"], m["name"], made), url)
        url = url.replace("^", "").replace("$", "").replace("\\", "")
        endpoints.append(Endpoint(name=pattern.name or route, route=route, url=url))
    return endpoints


@pytest.fixture
def endpoints(task: Any) -> list[Endpoint]:
    return _endpoints(_one_of_each_model())


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
    for _route, pattern in _patterns(get_resolver().url_patterns, skipped=("admin/",)):
        view = pattern.callback
        if view.__module__.split(".")[0] in OUR_APPS and not getattr(view, "login_required", True):
            public.add(f"{view.__module__}.{view.__name__}")
    assert public == OUR_PUBLIC_VIEWS


def test_the_public_pages_answer_a_visitor_without_a_login(client: Client, task: Any) -> None:
    assert client.get(resolve_url("login")).status_code == 200
    assert client.get("/accounts/password/reset/").status_code == 404  # not offered, and says so
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
