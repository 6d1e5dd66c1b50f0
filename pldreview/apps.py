from __future__ import annotations

from django.apps import AppConfig


class PldReviewConfig(AppConfig):
    name = "pldreview"
    verbose_name = "PLD Review"
