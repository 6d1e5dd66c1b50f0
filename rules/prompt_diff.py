"""Compare two prompt versions: a unified diff of the text and the rules added, removed and changed."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from rules.diffs import FieldDiff, fields_diff
from rules.models import PromptVersion, PromptVersionRule, Rule


@dataclass(frozen=True)
class RuleChange:
    """A rule present in both versions whose revision or number differs."""

    rule: Rule
    old: PromptVersionRule
    new: PromptVersionRule
    fields: list[FieldDiff]

    @property
    def revised(self) -> bool:
        return self.old.revision_id != self.new.revision_id

    @property
    def moved(self) -> bool:
        return self.old.position != self.new.position


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
    for rule_id, new_entry in after.items():
        old_entry = before.get(rule_id)
        if old_entry is None:
            continue
        if old_entry.revision_id == new_entry.revision_id and old_entry.position == new_entry.position:
            diff.unchanged += 1
            continue
        diff.changed.append(RuleChange(
            rule=new_entry.rule, old=old_entry, new=new_entry,
            fields=fields_diff(old_entry.revision, new_entry.revision),
        ))
    return diff
