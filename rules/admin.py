"""Admin site for the rules app: read-only, so nothing is deleted and history cannot be rewritten.

Every change goes through ``rules.services`` (with a user and a reason); the admin only lets staff look.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from rules.models import (
    ClusteringRun,
    DatasetImport,
    Decision,
    Example,
    MicroRule,
    PromptVersion,
    PromptVersionRule,
    Rule,
    RuleRevision,
    RuleSetReorderApproval,
    RuleSetReorderProposal,
    Task,
    TeacherCall,
)


class ReadOnlyMixin:
    """Refuse add, change and delete; the history view shows records but cannot revert them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The built-in "delete selected" action would bypass has_delete_permission checks in custom actions.
        return {}


class ReadOnlyHistoryAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    """Read-only admin whose history page lists every record and offers no revert."""

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def has_change_history_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Read-only admin for models without history."""


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


for model in (Task, Example, DatasetImport, TeacherCall, ClusteringRun, MicroRule, PromptVersionRule):
    admin.site.register(model, ReadOnlyAdmin)
