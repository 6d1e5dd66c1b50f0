"""URLs of the evaluation app: runs, refine, promotion, production, reports, API tokens and the API, in one list."""
from __future__ import annotations

from django.urls import path

from evaluation.production import api
from evaluation.views.production import api_tokens, health, serving, webhooks
from evaluation.views.production import watch as production
from evaluation.views.release import promotion, reports, technical_file
from evaluation.views.runs import evaluation_runs as runs
from evaluation.views.runs import impact, refine

urlpatterns = [
    # Evaluation runs and refining rules from one.
    path("evaluations/", runs.run_list, name="pld-evaluation-list"),
    path("evaluations/start/", runs.run_start, name="pld-evaluation-start"),
    path("evaluations/compare/", runs.run_compare, name="pld-evaluation-compare"),
    path("evaluations/<int:run_id>/", runs.run_detail, name="pld-evaluation-detail"),
    path("evaluations/<int:run_id>/cancel/", runs.run_cancel, name="pld-evaluation-cancel"),
    path("evaluations/<int:run_id>/resume/", runs.run_resume, name="pld-evaluation-resume"),
    path("evaluations/<int:run_id>/refine/", refine.refine_page, name="pld-refine"),
    path("evaluations/<int:run_id>/refine/start/", refine.start_refine, name="pld-refine-start"),
    path("evaluations/<int:run_id>/predictions/<int:prediction_id>/", impact.prediction_detail,
         name="pld-prediction-detail"),
    path("evaluations/<int:run_id>/predictions/<int:prediction_id>/explain/", impact.explain_prediction,
         name="pld-prediction-explain"),
    # Rule impact: each rule of a version left out in turn.
    path("prompts/<int:version_id>/impact/", impact.rule_impact_list, name="pld-rule-impact-list"),
    path("prompts/<int:version_id>/impact/start/", impact.rule_impact_start_view, name="pld-rule-impact-start"),
    path("impact/<int:run_id>/", impact.rule_impact_detail, name="pld-rule-impact-detail"),
    path("impact/<int:run_id>/cancel/", impact.rule_impact_cancel_view, name="pld-rule-impact-cancel"),
    path("impact/<int:run_id>/resume/", impact.rule_impact_resume_view, name="pld-rule-impact-resume"),
    # Promotion to production.
    path("prompts/<int:version_id>/promote/", promotion.promote_prompt, name="pld-prompt-promote"),
    path("prompts/<int:version_id>/promote/baseline/", promotion.start_gate_baseline,
         name="pld-prompt-gate-baseline"),
    path("prompts/<int:version_id>/promote/overrides/<int:override_id>/confirm/", promotion.confirm_override,
         name="pld-prompt-override-confirm"),
    path("prompts/<int:version_id>/promote/overrides/<int:override_id>/withdraw/", promotion.withdraw_override,
         name="pld-prompt-override-withdraw"),
    # Production: the watch page, its export, logged calls and feedback.
    path("tasks/<slug:task_name>/production/", production.production_page, name="pld-production"),
    path("tasks/<slug:task_name>/production/export.<str:fmt>", production.production_export,
         name="pld-production-export"),
    path("tasks/<slug:task_name>/production/retention/", production.set_decision_policy,
         name="pld-production-retention"),
    # Stopping and resuming a task's production serving.
    path("tasks/<slug:task_name>/serving/", serving.serving_page, name="pld-serving"),
    path("tasks/<slug:task_name>/serving/stop/", serving.stop_serving, name="pld-serving-stop"),
    path("tasks/<slug:task_name>/serving/resume/", serving.resume_serving, name="pld-serving-resume"),
    path("tasks/<slug:task_name>/calls/", production.classify_call_list, name="pld-classify-call-list"),
    path("calls/<int:classify_call_id>/", production.classify_call_detail, name="pld-classify-call-detail"),
    path("calls/<int:classify_call_id>/feedback/", production.give_call_feedback, name="pld-classify-call-feedback"),
    path("calls/<int:classify_call_id>/override/", production.override_call, name="pld-classify-call-override"),
    path("decisions/<uuid:request_id>/", production.decision_dossier_page, name="pld-decision-dossier"),
    path("decisions/<uuid:request_id>/dossier.json", production.decision_dossier_export,
         name="pld-decision-dossier-export"),
    path("calls/<int:classify_call_id>/explain/", impact.explain_call, name="pld-classify-call-explain"),
    # Signed reports.
    path("reports/", reports.report_list, name="pld-report-list"),
    path("reports/generate/", reports.generate_report, name="pld-report-generate"),
    path("reports/verify/", reports.verify_report, name="pld-report-verify"),
    path("reports/<int:report_id>/", reports.report_detail, name="pld-report-detail"),
    path("reports/<int:report_id>/download/", reports.report_download, name="pld-report-download"),
    path("reports/<int:report_id>/sign/", reports.sign_report, name="pld-report-sign"),
    # The technical file (EU AI Act Annex IV) of a task.
    path("tasks/<slug:task_name>/technical-file/", technical_file.technical_file_page, name="pld-technical-file"),
    path("tasks/<slug:task_name>/technical-file/generate/", technical_file.generate_technical_file,
         name="pld-technical-file-generate"),
    path("tasks/<slug:task_name>/technical-file/provider/", technical_file.save_provider_information,
         name="pld-technical-file-provider"),
    path("technical-files/<int:technical_file_id>/technical-file.pdf", technical_file.download_technical_file,
         {"kind": "pdf"}, name="pld-technical-file-pdf"),
    path("technical-files/<int:technical_file_id>/technical-file.json", technical_file.download_technical_file,
         {"kind": "json"}, name="pld-technical-file-json"),
    # API tokens (Admins) and the token-authenticated API.
    path("api-tokens/", api_tokens.api_token_list, name="pld-api-token-list"),
    path("api-tokens/new/", api_tokens.create_api_token, name="pld-api-token-create"),
    path("api-tokens/<int:token_id>/revoke/", api_tokens.revoke_api_token, name="pld-api-token-revoke"),
    path("api/v1/tasks/<str:task_name>/classify", api.classify, name="pld-api-classify"),
    path("api/v1/decisions/<str:request_id>", api.decision, name="pld-api-decision"),
    path("api/v1/openapi.json", api.openapi, name="pld-api-openapi"),
    # Webhooks per API token (the token's owner, or Admins).
    path("webhooks/", webhooks.webhook_list, name="pld-webhook-list"),
    path("api-tokens/<int:token_id>/webhooks/", webhooks.token_webhooks, name="pld-token-webhooks"),
    path("api-tokens/<int:token_id>/webhooks/new/", webhooks.create_webhook, name="pld-webhook-create"),
    path("webhooks/<int:webhook_id>/disable/", webhooks.disable_webhook, name="pld-webhook-disable"),
    # For load balancers and scripts/demo: public, JSON, served by every role (evaluation/views/production/health.py).
    path("healthz", health.healthz, name="pld-healthz"),
    path("readyz", health.readyz, name="pld-readyz"),
]
