"""Compare two prompt versions: a unified diff of the text and the rules added, removed and changed.

Rules are numbered by position, so adding a rule renumbers every rule after it. Renumbering alone
is not a change of a rule: a rule counts as moved only when its order relative to the rules both
versions share changed (which changes precedence), found as the rules outside the longest common
subsequence of the two orders.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from rules.models import PromptVersion, PromptVersionRule, Rule
from rules.review.diffs import FieldDiff, fields_diff


@dataclass(frozen=True)
class RuleChange:
    """A rule present in both versions whose revision or number differs."""

    rule: Rule
    old: PromptVersionRule
    new: PromptVersionRule
    fields: list[FieldDiff]
    moved: bool = False

    @property
    def revised(self) -> bool:
        return self.old.revision_id != self.new.revision_id


@dataclass
class PromptDiff:
    """What changed from one prompt version to another."""

    old: PromptVersion
    new: PromptVersion
    text_lines: list[tuple[str, str]] = field(default_factory=list)
    added: list[PromptVersionRule] = field(default_factory=list)
    removed: list[PromptVersionRule] = field(default_factory=list)
    changed: list[RuleChange] = field(default_factory=list)
    unchanged: int = 0
    # Same revision, same relative order, only a new number (rules were added or removed before it).
    renumbered: int = 0

    @property
    def unified(self) -> str:
        return "\n".join(line for _kind, line in self.text_lines)

    @property
    def identical(self) -> bool:
        return self.old.sha256 == self.new.sha256


def _entries(version: PromptVersion) -> dict[int, PromptVersionRule]:
    rows = PromptVersionRule.objects.filter(prompt_version=version).select_related("rule", "revision")
    return {entry.rule_id: entry for entry in rows.order_by("position")}


def _line_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "add", "-": "del"}.get(line[:1], "same")


def prompt_version_diff(*, old: PromptVersion, new: PromptVersion, context: int = 2) -> PromptDiff:
    """Return the text diff and the rule-level differences between two versions of a task's prompt."""
    diff = PromptDiff(old=old, new=new)
    lines = difflib.unified_diff(
        old.text.splitlines(), new.text.splitlines(), fromfile=f"v{old.number}", tofile=f"v{new.number}",
        lineterm="", n=context,
    )
    diff.text_lines = [(_line_kind(line), line) for line in lines]
    before, after = _entries(old), _entries(new)
    diff.removed = [entry for rule_id, entry in before.items() if rule_id not in after]
    diff.added = [entry for rule_id, entry in after.items() if rule_id not in before]
    moved = moved_rules([r for r in before if r in after], [r for r in after if r in before])
    for rule_id, new_entry in after.items():
        old_entry = before.get(rule_id)
        if old_entry is None:
            continue
        if old_entry.revision_id == new_entry.revision_id and rule_id not in moved:
            diff.unchanged += 1
            diff.renumbered += old_entry.position != new_entry.position
            continue
        diff.changed.append(RuleChange(
            rule=new_entry.rule, old=old_entry, new=new_entry,
            fields=fields_diff(old_entry.revision, new_entry.revision), moved=rule_id in moved,
        ))
    return diff


def moved_rules(old_order: list[int], new_order: list[int]) -> set[int]:
    """Return the shared rules whose relative order changed: those outside a longest common subsequence."""
    matcher = difflib.SequenceMatcher(a=old_order, b=new_order, autojunk=False)
    kept = {old_order[block.a + i] for block in matcher.get_matching_blocks() for i in range(block.size)}
    return set(new_order) - kept
