"""Admin site: read-only for every app, so nothing is deleted and history cannot be rewritten.

Every change goes through the apps' services (with a user and a reason); the admin only lets staff look.
The read-only classes here serve ``rules/admin.py`` and ``evaluation/admin.py`` too.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from pldreview.models import Job, LedgerCheckpoint, LedgerEntry, LedgerHead, Signature


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


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "title", "kind", "state", "done", "total", "attempts", "created_by", "created_at")
    list_filter = ("state", "kind")
    list_select_related = ("created_by",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "created_at", "actor_name", "event", "object_type", "object_id")
    list_filter = ("event",)
    search_fields = ("event", "object_id", "actor_name")


@admin.register(Signature)
class SignatureAdmin(ReadOnlyAdmin):
    list_display = ("id", "username", "full_name", "meaning", "signed_at", "second_factor_checked")
    list_filter = ("meaning",)
    search_fields = ("username", "full_name", "reason")


admin.site.register(LedgerHead, ReadOnlyAdmin)


@admin.register(LedgerCheckpoint)
class LedgerCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "sequence", "hash", "created_at", "created_by", "timestamped")
    list_select_related = ("created_by",)
