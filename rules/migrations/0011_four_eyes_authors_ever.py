# Written by hand: the four-eyes trigger on rules_decision counts authors over the rule's whole life (issue 22).
#
# Migration 0003 counted authors from the rule's last approval on, so after "ravi writes, rita approves, rita
# rejects" ravi was no longer an author and his approval counted toward the two needed to overturn the
# rejection. Now an approval row by anyone who ever wrote a revision of the rule, or has a create, edit or
# promote_noise decision on it, is refused, whatever happened in between. The service refuses first, with a
# clearer message (rules.services.rule_review).

from django.db import migrations

from pldreview.db_triggers import by_vendor, pg_checks, pg_function, sqlite_drop, sqlite_guard

DECISION = "pld_decision_four_eyes"
TABLE = "rules_decision"

# Written out rather than imported: a migration keeps meaning what it meant when it ran.
MESSAGE = "Four eyes: an author of a rule never approves it."
BY_AN_AUTHOR = """NEW.action = 'approve' AND (
    EXISTS (SELECT 1 FROM rules_rulerevision r WHERE r.rule_id = NEW.rule_id AND r.author_id = NEW.reviewer_id)
    OR EXISTS (SELECT 1 FROM rules_decision d WHERE d.rule_id = NEW.rule_id AND d.reviewer_id = NEW.reviewer_id
            AND d.action IN ('create', 'edit', 'promote_noise')))"""

OLD_MESSAGE = "Four eyes: an author of a rule since its last approval cannot approve it."
_OLD_LAST_APPROVAL = """COALESCE((SELECT MAX(a.id) FROM rules_decision a
      WHERE a.rule_id = NEW.rule_id AND a.action = 'approve' AND a.status_after = 'approved'
        AND NOT EXISTS (SELECT 1 FROM rules_decision u WHERE u.undoes_id = a.id)), 0)"""
_OLD_LAST_APPROVED_REVISION = f"""COALESCE((SELECT a.revision_id FROM rules_decision a WHERE a.id = {_OLD_LAST_APPROVAL}), 0)"""
OLD_BY_AN_AUTHOR = f"""NEW.action = 'approve' AND (
    EXISTS (SELECT 1 FROM rules_rulerevision r WHERE r.rule_id = NEW.rule_id AND r.author_id = NEW.reviewer_id
            AND r.id > {_OLD_LAST_APPROVED_REVISION})
    OR EXISTS (SELECT 1 FROM rules_decision d WHERE d.rule_id = NEW.rule_id AND d.reviewer_id = NEW.reviewer_id
            AND d.action IN ('create', 'edit', 'promote_noise') AND d.id > {_OLD_LAST_APPROVAL}))"""


def _statements(when: str, message: str) -> dict[str, list[str]]:
    return {
        "sqlite": [
            *sqlite_drop(DECISION, f"{DECISION}_update"),
            sqlite_guard(DECISION, before="INSERT", table=TABLE, when=when, message=message),
            sqlite_guard(f"{DECISION}_update", before="UPDATE", table=TABLE, when=when, message=message),
        ],
        # The trigger stays; only the function it runs is replaced.
        "postgresql": [pg_function(DECISION, pg_checks((when, message)), replace=True)],
    }


class Migration(migrations.Migration):

    dependencies = [
        ("rules", "0010_rule_constraints_protect_clustering_run"),
    ]

    operations = [
        by_vendor(_statements(BY_AN_AUTHOR, MESSAGE), _statements(OLD_BY_AN_AUTHOR, OLD_MESSAGE)),
    ]
