"""The three roles and their Django permissions.

Groups are created by a data migration (``pldreview/migrations/0002_roles.py``) from this table,
never by hand. A user may hold several roles. Pages check permissions, not group names.
"""
from __future__ import annotations

REVIEWER = "Reviewer"
AUDITOR = "Auditor"
ADMIN = "Admin"
ROLES = (REVIEWER, AUDITOR, ADMIN)

# Read access to the domain: every role reads everything it works with.
_READ = [
    "rules.view_task",
    "rules.view_example",
    "rules.view_datasetimport",
    "rules.view_microrule",
    "rules.view_clusteringrun",
    "rules.view_teachercall",
    "rules.view_rule",
    "rules.view_rulerevision",
    "rules.view_decision",
    "rules.view_promptversion",
    "evaluation.view_evaluationrun",
    "evaluation.view_prediction",
    "evaluation.view_promotion",
    "pldreview.view_job",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    REVIEWER: [
        *_READ,
        "rules.review_rule",
        "rules.reorder_ruleset",
        "rules.add_rule",
        "evaluation.view_classifycall",
        "evaluation.give_feedback",
        "evaluation.override_decision",
    ],
    AUDITOR: [
        *_READ,
        "rules.export_review_log",
        "evaluation.view_report",
        "evaluation.generate_report",
        "evaluation.verify_report",
        "evaluation.view_classifycall",
        "evaluation.watch_production",
        "evaluation.explain_decision",
        "pldreview.view_ledger",
        "accounts.view_security_events",
        "rules.audit_all_tasks",
    ],
    ADMIN: [
        *_READ,
        "rules.import_dataset",
        "rules.add_task",
        "rules.run_teacher",
        "rules.compile_prompt",
        "rules.export_review_log",
        "evaluation.run_evaluation",
        "evaluation.promote_prompt",
        "evaluation.manage_api_tokens",
        "evaluation.view_apitoken",
        "evaluation.view_report",
        "evaluation.generate_report",
        "evaluation.verify_report",
        "pldreview.run_job",
        "evaluation.view_classifycall",
        "evaluation.watch_production",
        "evaluation.set_decision_retention",
        "evaluation.stop_serving",
        "evaluation.override_decision",
        "evaluation.explain_decision",
        "pldreview.view_ledger",
        "accounts.manage_users",
        "accounts.view_security_events",
        "rules.view_all_tasks",
        "rules.manage_task_members",
    ],
}


def role_names(user: object) -> list[str]:
    """Return the names of the roles a user holds, in the canonical order."""
    if not getattr(user, "is_authenticated", False):
        return []
    held = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    return [role for role in ROLES if role in held]
