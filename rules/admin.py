"""Admin site for the rules app: read-only, so nothing is deleted and history cannot be rewritten.

Every change goes through ``rules.review.services`` (with a user and a reason); the admin only lets staff look.
"""
from __future__ import annotations

from django.contrib import admin

from pldreview.admin import ReadOnlyAdmin, ReadOnlyHistoryAdmin
from rules.models import (
    ClusteringRun,
    DatasetImport,
    Decision,
    Example,
    FrozenTestSplit,
    MicroRule,
    PromptVersion,
    PromptVersionRule,
    Rule,
    RuleComment,
    RuleRevision,
    RuleSetReorderApproval,
    RuleSetReorderProposal,
    Task,
    TaskMembership,
    TaskMembershipChange,
    TeacherCall,
)


@admin.register(Rule)
class RuleAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "task", "status", "origin", "label", "topic", "support", "position", "lock_version")
    list_filter = ("status", "origin", "task")
    search_fields = ("text", "topic")
    list_select_related = ("task",)


@admin.register(RuleRevision)
class RuleRevisionAdmin(ReadOnlyHistoryAdmin):
    list_display = ("rule", "number", "label", "author", "author_model", "created_at")
    list_select_related = ("rule", "author")
    search_fields = ("text", "reason")


@admin.register(RuleSetReorderProposal)
class RuleSetReorderProposalAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "task", "status", "proposed_by", "decided_by", "created_at", "decided_at")
    list_filter = ("status", "task")
    list_select_related = ("task", "proposed_by", "decided_by")


@admin.register(RuleSetReorderApproval)
class RuleSetReorderApprovalAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "proposal", "reviewer", "created_at")
    list_select_related = ("proposal", "reviewer")


@admin.register(Decision)
class DecisionAdmin(ReadOnlyHistoryAdmin):
    list_display = ("id", "rule", "action", "reviewer", "status_before", "status_after", "created_at")
    list_filter = ("action",)
    list_select_related = ("rule", "reviewer")
    search_fields = ("reason",)


@admin.register(PromptVersion)
class PromptVersionAdmin(ReadOnlyHistoryAdmin):
    list_display = ("task", "number", "status", "token_count", "created_at")
    list_select_related = ("task",)


for model in (Task, Example, DatasetImport, TeacherCall, ClusteringRun, MicroRule, PromptVersionRule, RuleComment,
              FrozenTestSplit, TaskMembership):
    admin.site.register(model, ReadOnlyAdmin)
admin.site.register(TaskMembershipChange, ReadOnlyHistoryAdmin)
