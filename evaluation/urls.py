"""URLs of the evaluation app. Each area keeps its own list in ``evaluation/views/<area>.py``."""
from __future__ import annotations

from evaluation.views import reports
from evaluation.views import runs as evaluation_runs

urlpatterns: list = [
    *reports.urlpatterns,
    *evaluation_runs.urlpatterns,
]
