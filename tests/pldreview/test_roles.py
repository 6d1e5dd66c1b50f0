from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from pldreview.roles import ROLE_PERMISSIONS, ROLES, role_names


@pytest.mark.django_db
def test_the_migration_creates_each_role_with_exactly_its_permissions() -> None:
    for role in ROLES:
        group = Group.objects.get(name=role)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert held == set(ROLE_PERMISSIONS[role]), role


def test_only_admins_promote_and_only_reviewers_review() -> None:
    holders = {perm: {r for r in ROLES if perm in ROLE_PERMISSIONS[r]} for perm in
               ("evaluation.promote_prompt", "rules.review_rule", "evaluation.generate_report")}
    assert holders["evaluation.promote_prompt"] == {"Admin"}
    assert holders["rules.review_rule"] == {"Reviewer"}
    assert holders["evaluation.generate_report"] == {"Admin", "Auditor"}


def test_a_user_may_hold_several_roles(reviewer) -> None:
    reviewer.groups.add(Group.objects.get(name="Auditor"))
    assert role_names(reviewer) == ["Reviewer", "Auditor"]
    assert reviewer.has_perm("rules.review_rule") and reviewer.has_perm("rules.export_review_log")
