"""Demo step: reviewers rita and ravi decide on nda-demo rules, so every review state is on show.

The bundled 270M teacher writes weak rules, so rita also writes precise rules by hand for the six
nda-demo hypotheses and ravi approves them (four eyes); the approved rule set is then worth compiling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from django.contrib.auth.models import User
from django.db import transaction

from evaluation.demo.users import demo_password
from pldreview.models import Signature
from pldreview.signatures import Meaning, rule_content_sha256, ruleset_order_content_sha256, signature_sign
from rules.models import Decision, Example, Rule, RuleSetReorderProposal, Task
from rules.review.services import (
    rule_approvals,
    rule_approve,
    rule_create,
    rule_edit,
    rule_reject,
    ruleset_reorder_approve,
    ruleset_reorder_propose,
    ruleset_rules,
)

TASK = "nda-demo"


@dataclass(frozen=True)
class DemoRule:
    topic: str
    label: str
    text: str
    examples: tuple[str, ...]
    precedence_note: str = ""


# rita's rules, in the order ravi approves them; each cites the fixture examples it was written from.
GOOD_RULES = [
    DemoRule(
        "Sharing with employees", "Entailment",
        "If the clause permits disclosure to the receiving party's employees, staff, officers or personnel (for "
        "example on a need-to-know basis), then Entailment for the hypothesis that the receiving party may share "
        "confidential information with its employees.",
        ("nda-001", "nda-002", "nda-003", "nda-004", "nda-005"),
    ),
    DemoRule(
        "Sharing with employees", "NotMentioned",
        "If the clause only allows disclosure to lawyers, legal counsel or professional advisers and says nothing "
        "about employees or staff, then NotMentioned for the hypothesis that the receiving party may share "
        "confidential information with its employees.",
        ("nda-011", "nda-088"),
        "Check before the employee-sharing Entailment rule: advisers are not employees.",
    ),
    DemoRule(
        "Sharing with employees", "Contradiction",
        "If the clause forbids disclosure to the receiving party's own employees or staff, or limits access to a "
        "named individual only, then Contradiction for the hypothesis that the receiving party may share "
        "confidential information with its employees.",
        ("nda-006", "nda-007", "nda-008", "nda-009", "nda-010"),
    ),
    DemoRule(
        "Reverse engineering", "Contradiction",
        "If the clause prohibits reverse engineering, decompiling, disassembling, taking apart or analysing the "
        "composition of the supplied materials, then Contradiction for the hypothesis that the receiving party "
        "may reverse engineer the disclosed materials.",
        ("nda-021", "nda-022", "nda-023", "nda-024", "nda-025"),
    ),
    DemoRule(
        "Survival after termination", "Entailment",
        "If the clause says that confidentiality duties, or named sections, continue or survive after the agreement "
        "terminates or expires, then Entailment for the hypothesis that some obligations survive termination.",
        ("nda-031", "nda-032", "nda-033", "nda-034", "nda-035"),
    ),
    DemoRule(
        "Survival after termination", "Contradiction",
        "If the clause says that all obligations end when the agreement terminates or that no provision survives "
        "it, then Contradiction for the hypothesis that some obligations survive termination.",
        ("nda-036", "nda-037", "nda-038", "nda-039", "nda-040"),
    ),
    DemoRule(
        "Return or destruction", "Entailment",
        "If the clause requires the receiving party to return, destroy or erase the confidential information when "
        "the agreement or the discussions end, then Entailment for the hypothesis that it must return or destroy "
        "confidential information when the agreement ends.",
        ("nda-046", "nda-047", "nda-048", "nda-049", "nda-050"),
    ),
    DemoRule(
        "Oral disclosures", "Contradiction",
        "If the clause limits confidential information to written or tangible material, or excludes oral or verbal "
        "disclosures, then Contradiction for the hypothesis that confidential information can include "
        "information disclosed orally.",
        ("nda-066", "nda-067", "nda-068", "nda-069", "nda-070"),
    ),
    DemoRule(
        "Compelled disclosure", "Entailment",
        "If the clause requires the receiving party to notify the disclosing party before a disclosure demanded by "
        "law, a court order, a subpoena or a regulator, then Entailment for the hypothesis that it must notify the "
        "disclosing party before a legally compelled disclosure.",
        ("nda-076", "nda-077", "nda-078", "nda-079", "nda-080"),
    ),
    DemoRule(
        "Unrelated clauses", "NotMentioned",
        "If the clause is about a different subject from the hypothesis, such as governing law, the term, costs, "
        "notices or amendments, then NotMentioned, even when it mentions confidential information.",
        ("nda-012", "nda-029", "nda-058", "nda-060", "nda-090"),
        "Use last: only when no rule about the hypothesis's own subject applies.",
    ),
]

# ravi's drafts that show the other states: one rita rejects, one rita rewrites (awaiting ravi), one left pending.
TOO_BROAD = DemoRule(
    "", "Entailment", "If the clause mentions confidential information, then Entailment.", ("nda-013",)
)
TOO_BROAD_REASON = (
    "Too broad: almost every clause of an NDA mentions confidential information, so this would label governing-law "
    "and notice clauses (nda-012, nda-090) Entailment although they say nothing about the hypothesis."
)
ADVISERS_DRAFT = DemoRule(
    "Sharing with employees", "Entailment",
    "If the clause lets the recipient share information with advisers, then Entailment for the hypothesis about "
    "sharing with employees.",
    ("nda-011",),
)
ADVISERS_EDIT = (
    "If the clause permits disclosure to professional advisers who are bound by duties of confidence, then "
    "NotMentioned for the hypothesis that the receiving party must notify the disclosing party before a legally "
    "compelled disclosure."
)
ADVISERS_EDIT_REASON = (
    "Advisers are not employees (nda-011 is NotMentioned for the employee hypothesis); the useful case is nda-088, "
    "where a clause about advisers says nothing about compelled disclosure."
)
LEFT_PENDING = DemoRule(
    "Reverse engineering", "Entailment",
    "If the clause expressly allows the recipient to decompile, disassemble, take apart or test the supplied "
    "materials, then Entailment for the hypothesis that the receiving party may reverse engineer them.",
    ("nda-016", "nda-017", "nda-018", "nda-019", "nda-020"),
)

APPROVE_REASON = "Checked against the cited clauses; precise and general."
REORDER_REASON = "The advisers rule must be read before the employee-sharing Entailment rule, which it narrows."


def _sign(user: User, meaning: str, content_sha256: str, reason: str) -> Signature:
    # The demo signs as its users, with their demo passwords, through the same service as the pages.
    return signature_sign(user=user, password=demo_password(user.username), meaning=meaning, reason=reason,
                          content_sha256=content_sha256)


def _rule_sha(text: str, label: str, topic: str = "", precedence_note: str = "") -> str:
    return rule_content_sha256(text=text.strip(), label=label, topic=topic.strip(),
                               precedence_note=precedence_note.strip())


def _sha_of(rule: Rule | DemoRule) -> str:
    return _rule_sha(rule.text, rule.label, rule.topic, rule.precedence_note)


def _cited(task: Task, demo: DemoRule) -> list[Example]:
    wanted = {f"id {ref}" for ref in demo.examples}
    return [ex for ex in task.examples.all() if any(ex.source_ref.endswith(w) for w in wanted)]


def _find(task: Task, author: User, demo: DemoRule) -> Rule | None:
    return (
        Rule.objects.filter(task=task, origin=Rule.Origin.MANUAL, proposed_by=author)
        .filter(revisions__number=1, revisions__text=demo.text)
        .select_related("current_revision")
        .first()
    )


def _written(task: Task, author: User, demo: DemoRule, reason: str) -> tuple[Rule, bool]:
    existing = _find(task, author, demo)
    if existing is not None:
        return existing, False
    rule = rule_create(
        task=task, user=author, text=demo.text, label=demo.label, topic=demo.topic,
        precedence_note=demo.precedence_note, reason=reason, examples=_cited(task, demo),
        signature=_sign(author, Meaning.WRITTEN, _sha_of(demo), reason),
    )
    return rule, True


@transaction.atomic
def seed_review_decisions(stdout: TextIO) -> None:
    """Record rita's and ravi's decisions on nda-demo; a second run changes nothing."""
    task = Task.objects.filter(name=TASK).first()
    rita = User.objects.filter(username="rita").first()
    ravi = User.objects.filter(username="ravi").first()
    if task is None or rita is None or ravi is None:
        stdout.write("  skipped: run `seed_demo --only users` first (task nda-demo, users rita and ravi)\n")
        return
    n_before = Decision.objects.filter(rule__task=task).count()

    for demo in GOOD_RULES:
        rule, _ = _written(task, rita, demo, "Written from the fixture clauses it cites")
        approved_by_ravi = any(d.reviewer_id == ravi.pk for d in rule_approvals(rule))
        if rule.status == Rule.Status.PENDING and rule.current_revision.author_id == rita.pk and not approved_by_ravi:
            signature = _sign(ravi, Meaning.APPROVED, _sha_of(rule),
                              APPROVE_REASON)
            rule_approve(rule=rule, user=ravi, lock_version=rule.lock_version, reason=APPROVE_REASON,
                         signature=signature)

    # rita proposes moving the advisers guard above the employee-sharing rule it narrows; ravi approves
    # the proposal, and only then does the order change (four eyes on precedence too).
    employees = _find(task, rita, GOOD_RULES[0])
    guard = _find(task, rita, GOOD_RULES[1])
    order = [r.pk for r in ruleset_rules(task)]
    if (
        employees and guard and guard.pk in order and employees.pk in order
        and order.index(guard.pk) > order.index(employees.pk)
        and not RuleSetReorderProposal.objects.filter(task=task, proposed_by=rita).exists()
    ):
        order.remove(guard.pk)
        order.insert(order.index(employees.pk), guard.pk)
        order_sha = ruleset_order_content_sha256(task_id=task.pk, order=order)
        proposal = ruleset_reorder_propose(
            task=task, user=rita, order=order, reason=REORDER_REASON,
            signature=_sign(rita, Meaning.REORDER_PROPOSED, order_sha, REORDER_REASON),
        )
        approve_reason = "Yes: the narrower rule must come first."
        ruleset_reorder_approve(
            proposal=proposal, user=ravi, reason=approve_reason,
            signature=_sign(ravi, Meaning.REORDERED, order_sha, approve_reason),
        )

    broad, _ = _written(task, ravi, TOO_BROAD, "First draft")
    if broad.status == Rule.Status.PENDING:
        signature = _sign(rita, Meaning.REJECTED, _sha_of(broad),
                          TOO_BROAD_REASON)
        rule_reject(rule=broad, user=rita, lock_version=broad.lock_version, reason=TOO_BROAD_REASON,
                    signature=signature)

    advisers, _ = _written(task, ravi, ADVISERS_DRAFT, "First draft")
    if advisers.current_revision.number == 1:
        rule_edit(
            rule=advisers, user=rita, lock_version=advisers.lock_version, reason=ADVISERS_EDIT_REASON,
            text=ADVISERS_EDIT, label="NotMentioned", topic="Compelled disclosure",
            signature=_sign(rita, Meaning.EDITED, _rule_sha(ADVISERS_EDIT, "NotMentioned", "Compelled disclosure"),
                            ADVISERS_EDIT_REASON),
        )

    _written(task, ravi, LEFT_PENDING, "Written from the fixture clauses it cites")

    added = Decision.objects.filter(rule__task=task).count() - n_before
    counts = {status: Rule.objects.filter(task=task, status=status).count() for status in Rule.Status.values}
    stdout.write(
        f"  {TASK}: {counts['approved']} approved, {counts['pending']} pending, {counts['rejected']} rejected "
        f"rules; {added} decisions added by this run\n"
    )
