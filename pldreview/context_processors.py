"""Template context shared by every page."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from pldreview.roles import role_names

# (title, URL name, permission needed to see the link). Areas whose URLs are not installed are skipped.
NAV = [
    ("Review queue", "pld-review-queue", "rules.view_rule"),
    ("Evaluations", "pld-evaluation-list", "evaluation.view_evaluationrun"),
    ("Prompt versions", "pld-prompt-version-list", "rules.view_promptversion"),
    ("Teacher calls", "pld-teacher-calls", "rules.view_teachercall"),
    ("Reports", "pld-report-list", "evaluation.view_report"),
    ("API tokens", "pld-api-token-list", "evaluation.manage_api_tokens"),
    ("Ledger", "pld-ledger", "pldreview.view_ledger"),
    ("Users", "pld-user-list", "accounts.manage_users"),
    ("Security events", "pld-security-events", "accounts.view_security_events"),
    ("Glossary", "pld-glossary", "rules.view_rule"),
]


def roles(request: HttpRequest) -> dict[str, Any]:
    """Expose the user's role names and the navigation links the user may follow."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": [], "nav_items": []}
    items = []
    for title, url_name, perm in NAV:
        if not user.has_perm(perm):
            continue
        try:
            items.append({"title": title, "url": reverse(url_name)})
        except NoReverseMatch:
            continue
    return {"user_roles": role_names(user), "nav_items": items}
