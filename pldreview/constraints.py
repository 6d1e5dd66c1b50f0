"""Check constraints shared by the apps' models: the database refuses what the services already never write."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import models


def in_choices(name: str, **fields: Iterable[str]) -> models.CheckConstraint:
    """Return a check that each named field holds one of the given values (its choices, '' where blank is allowed).

    One constraint per model, not one per field: ``full_clean`` validates each check constraint with a query.
    """
    condition = models.Q()
    for field, values in fields.items():
        condition &= models.Q(**{f"{field}__in": list(values)})
    return models.CheckConstraint(condition=condition, name=name)
