from __future__ import annotations

import io

import pytest

from evaluation.demo.review import seed_review_decisions
from evaluation.demo.users import seed_users_and_tasks
from pldreview.ledger_verify import ledger_verify
from pldreview.models import Signature
from rules.models import Decision, Rule, RuleSetReorderProposal
from rules.review.services import ruleset_rules

pytestmark = pytest.mark.django_db


def test_the_demo_shows_every_review_state_and_a_second_run_changes_nothing() -> None:
    out = io.StringIO()
    seed_users_and_tasks(out)
    seed_review_decisions(out)
    rules = Rule.objects.filter(task__name="nda-demo")
    statuses = set(rules.values_list("status", flat=True))
    assert statuses == {"pending", "approved", "rejected"}
    edited = rules.get(decisions__action="edit")
    assert edited.status == "pending" and edited.current_revision.author.username == "rita"
    assert edited.proposed_by.username == "ravi"
    approved = ruleset_rules(rules.first().task)
    assert len(approved) == 10
    assert all(r.origin == "manual" and r.proposed_by.username == "rita" for r in approved)
    assert set(Decision.objects.filter(action="approve").values_list("reviewer__username", flat=True)) == {"ravi"}
    proposal = RuleSetReorderProposal.objects.get(task__name="nda-demo")
    assert (proposal.proposed_by.username, proposal.status) == ("rita", "approved")
    assert proposal.decided_by.username == "ravi"
    assert Decision.objects.filter(action="reorder", reviewer__username="ravi").exists()
    assert [r.pk for r in approved] == proposal.order
    assert (proposal.signature.user.username, proposal.signature.meaning) == ("rita", "reorder_proposed")
    assert proposal.approvals.get().signature.user.username == "ravi"
    assert all(r.support >= 2 for r in approved)
    # Every decision of the demo is signed, by its reviewer, under the printed name they had then.
    decisions = Decision.objects.select_related("signature", "reviewer")
    assert decisions.exists() and all(d.signature and d.signature.user == d.reviewer for d in decisions)
    meanings = {(d.action, d.signature.meaning) for d in decisions}
    assert {("approve", "approved"), ("reject", "rejected"), ("edit", "edited"), ("create", "written"),
            ("reorder", "reordered")} == meanings
    assert {d.signature.full_name for d in decisions.filter(action="approve")} == {"Ravi Rao"}
    signatures = Signature.objects.count()

    history_rows = Rule.history.count() + Decision.history.count() + RuleSetReorderProposal.history.count()
    seed_review_decisions(out)
    assert Rule.history.count() + Decision.history.count() + RuleSetReorderProposal.history.count() == history_rows
    assert Signature.objects.count() == signatures
    verdict = ledger_verify()
    assert verdict.ok and verdict.rows_checked > 20, verdict.message
