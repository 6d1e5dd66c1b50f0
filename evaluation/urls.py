"""URLs of the evaluation app. Each area keeps its own list in ``evaluation/views/<area>.py``."""
from __future__ import annotations

from evaluation import api
from evaluation.views import production, promotion, refine, reports, tokens
from evaluation.views import runs as evaluation_runs

urlpatterns: list = [
    *reports.urlpatterns,
    *promotion.urlpatterns,
    *tokens.urlpatterns,
    *api.urlpatterns,
    *evaluation_runs.urlpatterns,
    *refine.urlpatterns,
    *production.urlpatterns,
]
