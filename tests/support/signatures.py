"""Sign as a persona (password ``pw-<username>``) through the real signing service, for tests that act."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from pldreview.models import Signature
from pldreview.signatures import (
    Meaning,
    api_token_content_sha256,
    prompt_version_content_sha256,
    rule_content_sha256,
    ruleset_order_content_sha256,
    serving_content_sha256,
    signature_sign,
)
from rules.models import Rule, RuleSetReorderProposal, Task


def persona_password(user: AbstractBaseUser) -> str:
    """Return the password the persona fixtures give a user."""
    return "pw-" + user.get_username()


def sign(user: AbstractBaseUser, meaning: str, content_sha256: str, reason: str = "") -> Signature:
    """Return the user's signature of the content, made with their persona password."""
    return signature_sign(user=user, password=persona_password(user), meaning=meaning, reason=reason,
                          content_sha256=content_sha256)


def _current(rule: Rule) -> Rule:
    # The test's instance may be older than the row the service will lock and compare against.
    return Rule.objects.get(pk=rule.pk)


def sign_approval(user: AbstractBaseUser, rule: Rule) -> Signature:
    """Return the user's signature approving the rule's current wording."""
    r = _current(rule)
    return sign(user, Meaning.APPROVED,
        rule_content_sha256(text=r.text, label=r.label, topic=r.topic, precedence_note=r.precedence_note))


def sign_rejection(user: AbstractBaseUser, rule: Rule) -> Signature:
    """Return the user's signature rejecting the rule's current wording."""
    r = _current(rule)
    return sign(user, Meaning.REJECTED,
        rule_content_sha256(text=r.text, label=r.label, topic=r.topic, precedence_note=r.precedence_note))


def sign_edit(
    user: AbstractBaseUser, *, text: str, label: str, topic: str = "", precedence_note: str = ""
) -> Signature:
    """Return the user's signature of a new wording (as the service strips it)."""
    return sign(user, Meaning.EDITED, rule_content_sha256(
        text=text.strip(), label=label, topic=topic.strip(), precedence_note=precedence_note.strip()))


def sign_writing(
    user: AbstractBaseUser, *, text: str, label: str, topic: str = "", precedence_note: str = ""
) -> Signature:
    """Return the user's signature of a rule they write by hand."""
    return sign(user, Meaning.WRITTEN, rule_content_sha256(
        text=text.strip(), label=label, topic=topic.strip(), precedence_note=precedence_note.strip()))


def sign_order_proposal(user: AbstractBaseUser, task: Task, order: list[int]) -> Signature:
    """Return the user's signature proposing this order of the task's rule set."""
    return sign(user, Meaning.REORDER_PROPOSED, ruleset_order_content_sha256(task_id=task.pk, order=order))


def sign_order_approval(user: AbstractBaseUser, proposal: RuleSetReorderProposal) -> Signature:
    """Return the user's signature approving the order proposal (meaning "Reordered")."""
    return sign(user, Meaning.REORDERED, ruleset_order_content_sha256(task_id=proposal.task_id, order=proposal.order))


def sign_order_rejection(user: AbstractBaseUser, proposal: RuleSetReorderProposal) -> Signature:
    """Return the user's signature rejecting (or withdrawing) the order proposal."""
    return sign(user, Meaning.REORDER_REJECTED,
                ruleset_order_content_sha256(task_id=proposal.task_id, order=proposal.order))


def sign_promotion(user: AbstractBaseUser, version: Any, meaning: str | None = None) -> Signature:
    """Return the user's signature putting the prompt version into production (or rolling back to it)."""
    from evaluation.release.promotion import promotion_meaning

    return sign(user, meaning or promotion_meaning(version), prompt_version_content_sha256(version.text))


def sign_revocation(user: AbstractBaseUser, token: Any) -> Signature:
    """Return the user's signature revoking the API token."""
    return sign(user, Meaning.TOKEN_REVOKED, api_token_content_sha256(
        token_id=token.pk, prefix=token.prefix, name=token.name, username=token.user.get_username()))


def sign_override_request(user: AbstractBaseUser, version: Any) -> Signature:
    """Return the user's signature requesting an override of the version's failing gate."""
    return sign(user, Meaning.GATE_OVERRIDE_REQUESTED, prompt_version_content_sha256(version.text))


def sign_override_confirmation(user: AbstractBaseUser, version: Any) -> Signature:
    """Return the user's signature confirming another Admin's override request for the version."""
    return sign(user, Meaning.GATE_OVERRIDE_CONFIRMED, prompt_version_content_sha256(version.text))


def sign_serving(user: AbstractBaseUser, task: Task, action: str, reason: str = "") -> Signature:
    """Return the user's signature stopping ("stop") or resuming ("resume", the stop in force) the task's serving."""
    from evaluation.production.serving_stops import serving_stop_current

    stop = serving_stop_current(task) if action == "resume" else None
    meaning = Meaning.SERVING_STOPPED if action == "stop" else Meaning.SERVING_RESUMED
    return sign(user, meaning, serving_content_sha256(task_id=task.pk, task_name=task.name, action=action,
                                                      lifts=stop.pk if stop is not None else None), reason=reason)


def sign_decision_override(user: AbstractBaseUser, call: Any, label: str, reason: str = "") -> Signature:
    """Return the user's signature overriding a logged call to the label."""
    from evaluation.production.decision_log import decision_override_signed_content

    return sign(user, Meaning.DECISION_OVERRIDDEN,
                decision_override_signed_content(call=call, overridden_label=label), reason)


def sign_membership(user: AbstractBaseUser, task: Task, member: AbstractBaseUser, action: str,
                    reason: str = "") -> Signature:
    """Return the Admin's signature adding ("add") or removing ("remove") the member from the task."""
    from rules.membership import membership_content_sha256

    meaning = Meaning.TASK_MEMBER_ADDED if action == "add" else Meaning.TASK_MEMBER_REMOVED
    return sign(user, meaning, membership_content_sha256(task=task, user=member, action=action), reason=reason)


def member_add_signed(*, task: Task, user: Any, by: AbstractBaseUser, reason: str) -> Any:
    """Make the user a member of the task through the service, signed by ``by`` with their persona password."""
    from rules.membership import task_member_add

    return task_member_add(task=task, user=user, by=by, reason=reason,
                           signature=sign_membership(by, task, user, "add", reason))
