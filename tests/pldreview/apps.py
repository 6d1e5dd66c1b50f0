"""A test-only app (tests/settings.py installs it) so the job tests' handlers are registered like every app's."""
from __future__ import annotations

from django.apps import AppConfig


class JobTestsConfig(AppConfig):
    name = "tests.pldreview"
    label = "pldreview_tests"

    def ready(self) -> None:
        import tests.pldreview.handlers  # noqa: F401 - registers the job tests' handlers
