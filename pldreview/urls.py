"""URL configuration: each app owns its URL module; names are kebab case with the ``pld-`` prefix."""
from __future__ import annotations

from allauth.account import views as account_views
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from pldreview import ledger_views, views

urlpatterns = [
    path("login/", account_views.login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("glossary/", views.glossary, name="pld-glossary"),
    path("jobs/", views.job_list, name="pld-job-list"),
    path("jobs/<int:job_id>/", views.job_detail, name="pld-job-detail"),
    path("jobs/<int:job_id>/cancel/", views.cancel_job, name="pld-job-cancel"),
    path("jobs/<int:job_id>/retry/", views.retry_job, name="pld-job-retry"),
    path("ledger/", ledger_views.ledger_list, name="pld-ledger"),
    path("ledger/export.jsonl", ledger_views.ledger_download, name="pld-ledger-download"),
    path("ledger/checkpoints/", ledger_views.ledger_checkpoint_make, name="pld-ledger-checkpoint-make"),
    path("ledger/checkpoints/<int:checkpoint_id>/download/", ledger_views.ledger_checkpoint_download,
         name="pld-ledger-checkpoint-download"),
    path("", include("rules.urls")),
    path("", include("evaluation.urls")),
    path("", include("pldreview.accounts.urls")),
]
# Off unless asked for: one door in, the app's login with the second factor (pldreview/accounts/admin.py).
if settings.PLD_DJANGO_ADMIN:
    urlpatterns.append(path("admin/", admin.site.urls))

# Under /api/ these answer JSON (evaluation.production.api); elsewhere the app's pages.
handler400 = "evaluation.production.api.bad_request"
handler403 = "evaluation.production.api.permission_denied"
handler404 = "evaluation.production.api.page_not_found"
handler500 = "evaluation.production.api.server_error"
