"""URLs of the rules app. Each area keeps its own list in ``rules/views/<area>.py``."""
from __future__ import annotations

from django.urls import path

from rules.views import dashboard, prompts, review, tasks
from rules.views import teacher as teacher_views

urlpatterns = [
    path("", dashboard.home, name="pld-home"),
    *tasks.urlpatterns,
    *review.urlpatterns,
    *prompts.urlpatterns,
    *teacher_views.urlpatterns,
]
