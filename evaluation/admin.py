"""Admin site for the evaluation app: read-only, like every app's (``pldreview/admin.py``).

Runs, promotions, tokens, the decision log and reports change only through the evaluation services.
"""
from __future__ import annotations

from django.contrib import admin

from evaluation.models import (
    ApiToken,
    ApiTokenWindow,
    ClassifyCall,
    ClassifyCallRollup,
    DecisionExplanation,
    DecisionFeedback,
    DecisionLogPolicy,
    DecisionOverride,
    EvaluationRun,
    EvaluationShard,
    Prediction,
    Promotion,
    PromotionOverride,
    ProviderInformation,
    Report,
    RuleImpactDecision,
    RuleImpactRun,
    RuleImpactShard,
    ServingStop,
    TechnicalFile,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from pldreview.admin import ReadOnlyAdmin, ReadOnlyHistoryAdmin


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "mode", "split", "status", "prompt_version", "n_examples", "created_at")
    list_filter = ("status", "mode", "split", "task")
    list_select_related = ("task", "prompt_version__task")


@admin.register(EvaluationShard)
class EvaluationShardAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "number", "status", "worker", "attempts", "lease_expires_at")
    list_filter = ("status",)
    list_select_related = ("run__task",)


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "example", "label", "correct", "latency_ms")
    list_select_related = ("run__task", "example__task")


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "task", "prompt_version", "from_version", "is_rollback", "promoted_by", "created_at")
    list_select_related = ("task", "prompt_version__task", "from_version__task", "promoted_by")


@admin.register(PromotionOverride)
class PromotionOverrideAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "prompt_version", "status", "requested_by", "confirmed_by", "requested_at")
    list_filter = ("status",)
    list_select_related = ("prompt_version__task", "requested_by", "confirmed_by")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    # Only the token's hash is stored; it still stays off the page.
    exclude = ("token_hash",)
    list_display = ("id", "name", "prefix", "user", "created_at", "revoked_at", "expires_at")
    list_select_related = ("user",)


@admin.register(ClassifyCall)
class ClassifyCallAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "task", "prompt_version", "label", "top_probability", "source", "created_at")
    list_filter = ("source", "task")
    list_select_related = ("task", "prompt_version__task")


@admin.register(Report)
class ReportAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "prompt_version", "status", "sha256", "generated_by", "created_at")
    list_filter = ("status",)
    list_select_related = ("prompt_version__task", "generated_by")


admin.site.register(DecisionLogPolicy, ReadOnlyHistoryAdmin)
admin.site.register(DecisionFeedback, ReadOnlyHistoryAdmin)
admin.site.register(ApiTokenWindow, ReadOnlyAdmin)
admin.site.register(DecisionOverride, ReadOnlyHistoryAdmin)
admin.site.register(WebhookDelivery, ReadOnlyAdmin)
admin.site.register(WebhookAttempt, ReadOnlyAdmin)


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdmin):
    # Never the signing secret: it was shown once, to the person who registered the webhook.
    exclude = ("secret",)
    list_display = ("url", "token", "created_by", "created_at", "disabled_at")


# Issues 23, 24 and 28: read-only like the rest (the record changes only through the app's signed services).
admin.site.register(ServingStop, ReadOnlyHistoryAdmin)
admin.site.register(ProviderInformation, ReadOnlyHistoryAdmin)
admin.site.register(TechnicalFile, ReadOnlyHistoryAdmin)
admin.site.register(RuleImpactRun, ReadOnlyAdmin)
admin.site.register(RuleImpactDecision, ReadOnlyAdmin)
admin.site.register(RuleImpactShard, ReadOnlyAdmin)
admin.site.register(DecisionExplanation, ReadOnlyAdmin)
admin.site.register(ClassifyCallRollup, ReadOnlyAdmin)
