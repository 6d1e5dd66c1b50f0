"""Where a newly approved rule joins the rule set, and whether the set's order keeps its precedence notes.

The student applies the first rule whose condition the input meets, so the order decides outcomes. Reviewers
set it through four-eyes order proposals; this module decides the one place a rule takes on its own when it
is first approved, and reads the two precedence notes the compiler can check:

- a note that starts "Use last" (or "Apply last") asks the rule to come after every other rule;
- a note that starts "Use first" (or "Apply first") asks it to come before every other rule.

Any other note is advice to the student and is not checked.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

FIRST = "first"
LAST = "last"
_ANCHOR = re.compile(r"^\s*(?:use|apply)\s+(?:(?:this|it|the rule)\s+)?(first|last)\b", re.IGNORECASE)


class RuleLike(Protocol):
    """What placement reads of a rule: its topic and precedence note (a Rule mirrors its current revision)."""

    pk: int | None
    topic: str
    precedence_note: str


def precedence_anchor(note: str) -> str:
    """Return "first" or "last" when the precedence note asks for that end of the rule set, else ''."""
    match = _ANCHOR.match(note or "")
    return match.group(1).lower() if match else ""


def _same_topic(a: str, b: str) -> bool:
    return bool(a.strip()) and a.strip().casefold() == b.strip().casefold()


def placement_index(rules: Sequence[RuleLike], new: RuleLike) -> int:
    """Return the index in ``rules`` (compile order) at which a newly approved rule joins the set.

    A "use first" rule goes after the other first rules; a "use last" rule goes at the end. Any other rule
    goes right after the last rule of its own topic that is not a last rule; without such a rule, before
    the trailing "use last" rules.
    """
    anchors = [precedence_anchor(r.precedence_note) for r in rules]
    anchor = precedence_anchor(new.precedence_note)
    if anchor == LAST:
        return len(rules)
    if anchor == FIRST:
        return sum(1 for a in anchors if a == FIRST)
    first_last = next((i for i, a in enumerate(anchors) if a == LAST), len(rules))
    same = [i for i, r in enumerate(rules[:first_last]) if _same_topic(r.topic, new.topic)]
    if same:
        return same[-1] + 1
    return first_last


def precedence_conflicts(rules: Sequence[RuleLike]) -> list[str]:
    """Return, in plain words, each rule whose "use first" or "use last" note its place in the order breaks."""
    anchors = [precedence_anchor(r.precedence_note) for r in rules]
    problems = []
    for index, (rule, anchor) in enumerate(zip(rules, anchors, strict=True)):
        number = index + 1
        if anchor == LAST:
            after = [i + 1 for i, a in enumerate(anchors) if i > index and a != LAST]
            if after:
                problems.append(f"Rule {number} (id {rule.pk}) says “use last”, but rule {after[0]} comes after it.")
        elif anchor == FIRST:
            before = [i + 1 for i, a in enumerate(anchors) if i < index and a != FIRST]
            if before:
                problems.append(f"Rule {number} (id {rule.pk}) says “use first”, but rule {before[0]} comes before it.")
    return problems
