"""The project's URLs plus the refine page, for tests until evaluation/urls.py includes it."""
from __future__ import annotations

from evaluation.views import refine
from pldreview.urls import urlpatterns as project_urlpatterns

urlpatterns = [*project_urlpatterns, *refine.urlpatterns]
