"""URLs of the rules app. Each area keeps its own list in ``rules/views/<area>.py``."""
from __future__ import annotations

from rules.views import prompts, review, tasks
from rules.views import teacher as teacher_views

urlpatterns = [
    *tasks.urlpatterns,
    *review.urlpatterns,
    *prompts.urlpatterns,
    *teacher_views.urlpatterns,
]
