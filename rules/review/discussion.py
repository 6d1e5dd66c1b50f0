"""A rule's discussion: reviewers ask and answer before they decide. Comments are only ever added."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from rules.audit import audited_save
from rules.membership import task_is_visible
from rules.models import Rule, RuleComment

MAX_COMMENT_LENGTH = 4000


@transaction.atomic
def rule_comment_add(*, rule: Rule, user: AbstractBaseUser, text: str) -> RuleComment:
    """Add a comment to the rule's discussion, recorded in the ledger; there is no way to edit or delete it."""
    if not user.has_perm("rules.review_rule"):
        raise PermissionDenied("Only reviewers take part in a rule's discussion.")
    if not task_is_visible(rule.task, user):
        raise PermissionDenied(f"{user} is not a member of the task {rule.task.name}.")
    text = text.strip()
    if not text:
        raise ValidationError({"text": "Write something to say."})
    if len(text) > MAX_COMMENT_LENGTH:
        raise ValidationError({"text": f"Keep a comment under {MAX_COMMENT_LENGTH} characters."})
    comment = RuleComment(rule=rule, author=user, text=text)
    audited_save(comment, user=user, reason="Comment on the rule", event="rulecomment.created")
    return comment
