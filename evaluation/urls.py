"""URLs of the evaluation app. Each area keeps its own list in ``evaluation/views/<area>.py``."""
from __future__ import annotations

from evaluation.views import reports

urlpatterns: list = [
    *reports.urlpatterns,
]
