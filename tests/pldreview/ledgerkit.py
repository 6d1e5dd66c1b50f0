"""Build an audited world through the app's services, and open the database's side door for tamper tests."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from evaluation.models import Promotion, Report
from evaluation.production.decision_log import decision_feedback_give, decision_policy_set
from evaluation.production.serving_stops import task_serving_resume, task_serving_stop
from evaluation.release.promotion import promotion_override_request, promotion_override_withdraw, prompt_version_promote
from evaluation.release.reports import report_create
from pldreview.accounts.models import AccountChangeKind
from pldreview.db_triggers import install_sql, remove_sql
from rules.audit import audited_save
from rules.membership import task_member_remove
from rules.models import Decision, PromptVersion, Rule, Task
from rules.review.services import (
    decision_undo,
    rule_edit,
    rule_reject,
    ruleset_reorder_approve,
    ruleset_reorder_propose,
    ruleset_rules,
)
from tests.support.account_changes import account_change_requested
from tests.support.factories import ClassifyCallFactory, teacher_rule
from tests.support.prompt_versions import approve_all, compiled, gate_passing_run
from tests.support.signatures import (
    member_add_signed,
    sign_edit,
    sign_membership,
    sign_order_approval,
    sign_order_proposal,
    sign_override_request,
    sign_promotion,
    sign_rejection,
    sign_serving,
)

CALL_INPUTS = {"premise": "The Recipient may share Confidential Information with its employees.",
               "hypothesis": "The receiving party may share information with its employees."}
VERIFIER = Path(settings.BASE_DIR) / "scripts" / "verify-ledger"


@dataclass
class World:
    rules: list[Rule]
    decision: Decision
    version: PromptVersion
    promotion: Promotion
    report: Report


def audited_world(task: Task, reviewer: User, second_reviewer: User, admin_user: User, auditor: User) -> World:
    """Review, edit, reject, undo, compile, promote, change members and request a report, all through the services."""
    rules = approve_all(task, reviewer)
    edited = teacher_rule(task, text="If the clause bans copies, then Contradiction", label="Contradiction")
    rule_edit(rule=edited, user=second_reviewer, lock_version=edited.lock_version, reason="Sharper",
              text="If the clause bans any copy, then Contradiction", label="Contradiction",
        signature=sign_edit(second_reviewer, text="If the clause bans any copy, then Contradiction",
            label="Contradiction"))
    rejected = teacher_rule(task, text="Read carefully", label="NotMentioned")
    decision = rule_reject(rule=rejected, user=reviewer, lock_version=rejected.lock_version, reason="Vague",
        signature=sign_rejection(reviewer, rejected))
    undone = teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned")
    undo_me = rule_reject(rule=undone, user=second_reviewer, lock_version=undone.lock_version, reason="Oops",
        signature=sign_rejection(second_reviewer, undone))
    decision_undo(decision=undo_me, user=second_reviewer)
    # A rule-set order proposed, approved and applied by two reviewers (both signed).
    order = [r.pk for r in reversed(ruleset_rules(task))]
    proposal = ruleset_reorder_propose(task=task, user=reviewer, order=order, reason="Narrow rules first",
                                       signature=sign_order_proposal(reviewer, task, order))
    ruleset_reorder_approve(proposal=proposal, user=second_reviewer, reason="Agreed",
                            signature=sign_order_approval(second_reviewer, proposal))
    version = compiled(task, admin_user)
    # An override requested before the evaluation, then withdrawn: the version goes through the gate instead.
    override = promotion_override_request(prompt_version=version, user=admin_user, reason="Pilot",
                                          justification="No evaluation yet", signature=sign_override_request(
                                              admin_user, version))
    promotion_override_withdraw(override=override, user=admin_user)
    gate_passing_run(version)
    promotion = prompt_version_promote(prompt_version=version, user=admin_user, reason="Pilot",
                                       signature=sign_promotion(admin_user, version))
    decision_policy_set(task=task, input_retention="full", retention_days=30, user=admin_user, reason="Policy 7.2")
    # Serving stopped and resumed by the Admin (both signed, both append-only rows).
    task_serving_stop(task=task, user=admin_user, reason="Drift alert",
                      signature=sign_serving(admin_user, task, "stop"))
    task_serving_resume(task=task, user=admin_user, reason="Checked",
                        signature=sign_serving(admin_user, task, "resume"))
    # Need-to-know: the Auditor taken off the task and put back by the Admin (each change signed, append-only).
    task_member_remove(task=task, user=auditor, by=admin_user, reason="Audit paused",
                       signature=sign_membership(admin_user, task, auditor, "remove", "Audit paused"))
    member_add_signed(task=task, user=auditor, by=admin_user, reason="Audit resumed")
    call = ClassifyCallFactory(prompt_version=version, inputs=CALL_INPUTS)
    decision_feedback_give(call=call, correct_label="NotMentioned", reason="Says nothing on sharing", user=reviewer)
    # A decision overridden by a signing, heard by the token's webhook (one failed attempt: nothing listens on port 9).
    from django.test import override_settings

    from evaluation.production.api_tokens import api_token_create
    from evaluation.production.decision_log import decision_override
    from evaluation.production.webhooks import webhook_create, webhook_delivery_attempt
    from tests.support.decisions import logged_call
    from tests.support.signatures import sign_decision_override

    token = api_token_create(user=reviewer, name="world", created_by=admin_user)[0]
    with override_settings(PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK=True):
        webhook_create(token=token, url="http://127.0.0.1:9/", user=reviewer)
    overridden = logged_call(version, token=token)
    decision_override(call=overridden, overridden_label="Contradiction", reason="Copies must go", user=admin_user,
                      signature=sign_decision_override(admin_user, overridden, "Contradiction"))
    webhook_delivery_attempt(delivery_id=overridden_delivery_id(token))
    report = report_create(prompt_version=version, user=auditor)
    _technical_file_recorded(task, version, admin_user)
    # An account change one Admin asked for (it waits for a second Admin).
    account_change_requested(admin_user, AccountChangeKind.UNLOCK, target=auditor, reason="Locked out at the audit")
    return World(rules=rules, decision=decision, version=version, promotion=promotion, report=report)


def _technical_file_recorded(task: Task, version: PromptVersion, admin_user: User) -> None:
    """State the provider's information (the service) and record a technical file's row as its service does.

    Rendering and signing the PDF takes seconds and is tested in tests/evaluation/test_technical_file.py; here
    only the rows (and their history) matter.
    """
    from evaluation.models import TechnicalFile
    from evaluation.release.technical_file import provider_information_save
    from pldreview.ledger import ledger_head

    provider_information_save(task=task, user=admin_user, values={"provider_name": "Acme Legal Ltd"})
    sequence, head_hash = ledger_head()
    record = TechnicalFile(task=task, prompt_version=version, file="technical-files/world.pdf", sha256="a" * 64,
                           size=1, json_file="technical-files/world.json", json_sha256="b" * 64,
                           generated_by=admin_user, ledger_sequence=sequence, ledger_hash=head_hash)
    audited_save(record, user=admin_user, event="technical_file.issued", reason="Technical file of the world")


def overridden_delivery_id(token) -> int:  # noqa: ANN001 (an ApiToken)
    """Return the id of the token's one webhook delivery."""
    from evaluation.models import WebhookDelivery

    return WebhookDelivery.objects.get(webhook__token=token).pk


@contextmanager
def side_door(*tables: str) -> Iterator[None]:
    """Drop the append-only triggers of the tables, as an insider with database access would, then restore them."""
    for table in tables:
        for sql in remove_sql(connection.vendor, table):
            with connection.cursor() as cursor:
                cursor.execute(sql)
    yield
    for table in tables:
        for sql in install_sql(connection.vendor, table):
            with connection.cursor() as cursor:
                cursor.execute(sql)


def stdlib_verify(path: Path, *args: str) -> tuple[int, dict]:
    """Run scripts/verify-ledger on an export with no site-packages (-I -S): the standard library alone."""
    done = subprocess.run([sys.executable, "-I", "-S", str(VERIFIER), str(path), "--json", *args],
                          capture_output=True, text=True, check=False)
    return done.returncode, json.loads(done.stdout)


def raw(sql: str, params: list | None = None) -> None:
    """Run one raw SQL statement."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def verify_command(*args: str) -> tuple[int, str]:
    """Run ``manage.py verify_ledger`` with the arguments; return its exit code and everything it printed."""
    out = io.StringIO()
    try:
        call_command("verify_ledger", *args, stdout=out, stderr=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()
