"""Every URL the project serves, with its path parameters filled by real objects: the walk that the permission
test and the layout test share.

One instance of every model of our apps is built by a small generic factory, and ``<thing>_id`` takes the primary
key of the model named like it.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib.auth.models import User
from django.db import models, transaction
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from pldreview.ledger import ledger_append
from pldreview.models import LedgerEntry

OUR_APPS = ("pldreview", "rules", "evaluation")
# Not walked: the login page itself (allauth's, public), logging out, and the health checks load balancers probe
# (public JSON, no page: tests/evaluation/test_admission.py shows what they answer and that they leak nothing).
PUBLIC_URL_NAMES = {"login", "logout", "pld-healthz", "pld-readyz"}
# accounts/ is django-allauth's self-service (own password, second factor, sessions): open to every logged-in
# user whatever their role; tests/accounts/test_account_pages.py walks it.
SKIPPED_PREFIXES = ("admin/", "static/", "media/", "__debug__/", "accounts/", "^accounts/")


_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")
# re_path() routes: a named group becomes a parameter like a converter.
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


@dataclass(frozen=True)
class Endpoint:
    name: str
    route: str
    url: str
    # The objects whose keys fill the URL's parameters: the non-member walk asks whether any belongs to a task.
    objects: tuple[models.Model, ...] = ()

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")


def url_patterns(
    resolvers: list[Any], prefix: str = "", skipped: tuple[str, ...] = SKIPPED_PREFIXES
) -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolvers:
        route = prefix + str(entry.pattern)
        if route.startswith(skipped):
            continue
        if isinstance(entry, URLResolver):
            found.extend(url_patterns(entry.url_patterns, route, skipped))
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


def one_of_each_model() -> dict[type, models.Model]:
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


def _object_for(converter: str | None, name: str, made: dict[type, models.Model]) -> models.Model | None:
    if name == "request_id":
        # A logged call's request id, so its dossier page is walked for real.
        return next((obj for model, obj in made.items() if model.__name__ == "ClassifyCall"), None)
    if name.endswith("_id") or converter == "int":
        wanted = name.removesuffix("_id").replace("_", "").lower()
        by_name = {model.__name__.lower(): obj for model, obj in made.items()}
        for key in (k for k in by_name if k == wanted):
            return by_name[key]
        for key in (k for k in sorted(by_name) if k.endswith(wanted) or k.startswith(wanted)):
            return by_name[key]
        return None
    if name == "task_name":
        return next(obj for model, obj in made.items() if model.__name__ == "Task")
    return None


def _argument(converter: str | None, name: str, made: dict[type, models.Model]) -> str:
    obj = _object_for(converter, name, made)
    if name == "task_name" and obj is not None:
        return str(obj.name)
    if name == "request_id":
        return str(obj.request_id) if obj is not None else str(uuid.uuid4())
    if name.endswith("_id") or converter == "int":
        return str(obj.pk) if obj is not None else "999999"
    if converter == "uuid":
        return str(uuid.uuid4())
    if name in {"fmt", "format"}:
        return "csv"
    return "walk-1"


def endpoints_of(made: dict[type, models.Model]) -> list[Endpoint]:
    endpoints = []
    for route, pattern in url_patterns(get_resolver().url_patterns):
        if pattern.name in PUBLIC_URL_NAMES:
            continue
        url = _REGEX_GROUP.sub(lambda m: _argument(None, m["name"], made), route)
        url = "/" + _PARAM.sub(lambda m: _argument(m["converter"], m["name"], made), url)
        url = url.replace("^", "").replace("$", "").replace("\\", "")
        used = [_object_for(m["converter"], m["name"], made) for m in _PARAM.finditer(route)]
        used += [_object_for(None, m["name"], made) for m in _REGEX_GROUP.finditer(route)]
        endpoints.append(Endpoint(name=pattern.name or route, route=route, url=url,
                                  objects=tuple(o for o in used if o is not None)))
    return endpoints


def task_of(obj: models.Model, depth: int = 3) -> models.Model | None:
    """Return the task an object belongs to, following its foreign keys (a rule's, a report's version's…), or None."""
    if type(obj).__name__ == "Task":
        return obj
    if depth == 0:
        return None
    for field in obj._meta.concrete_fields:
        if isinstance(field, models.ForeignKey) and field.related_model is not User:
            related = getattr(obj, field.name, None)
            found = task_of(related, depth - 1) if related is not None else None
            if found is not None:
                return found
    return None
