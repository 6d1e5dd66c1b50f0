from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PldReviewConfig(AppConfig):
    name = "pldreview"
    verbose_name = "PLD Review"

    def ready(self) -> None:
        from pldreview.db_triggers import ensure_append_only

        post_migrate.connect(ensure_append_only, sender=self, dispatch_uid="pld-append-only")
