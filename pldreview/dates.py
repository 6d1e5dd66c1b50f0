"""Calendar days as time ranges, for the filters that take dates ("from", "to inclusive")."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone


def day_start(day: date) -> datetime:
    """Return the first instant of ``day`` in the current time zone (TIME_ZONE unless one is activated).

    Filters compare ``created_at`` with day starts (``>= day_start(since)``, ``< day_start(until + 1 day)``) instead
    of ``created_at__date``: a range is answered from an index, a date of every row is computed for every row.
    """
    return timezone.make_aware(datetime.combine(day, time.min))


def day_after(day: date) -> datetime:
    """Return the first instant after ``day`` in the current time zone: the end of an inclusive "to" date."""
    return day_start(day + timedelta(days=1))
