"""Readable word-level differences between two versions of a rule, for reviewers and auditors."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Words, punctuation and spaces are separate tokens, so "share," → "share with employees," shows
# only the added words rather than replacing "share,".
_TOKEN = re.compile(r"\w+|[^\w\s]+|\s+")

DIFF_FIELDS = (("text", "Rule"), ("label", "Label"), ("topic", "Topic"), ("precedence_note", "Which rule wins"))


@dataclass(frozen=True)
class FieldDiff:
    """The difference in one field: its title, whether it changed, and the marked-up words."""

    name: str
    title: str
    changed: bool
    html: SafeString


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Return the words of two texts as (op, text) runs, op being "equal", "delete" or "insert"."""
    a, b = _TOKEN.findall(old or ""), _TOKEN.findall(new or "")
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    # A lone space between two changes reads better inside the change: "names employees" → "lets the
    # recipient share" instead of two interleaved changes.
    blocks: list[tuple[str, str, str]] = []
    for op, i1, i2, j1, j2 in opcodes:
        before, after = "".join(a[i1:i2]), "".join(b[j1:j2])
        blocks.append((op, before, after))
    runs: list[tuple[str, str]] = []
    pending_del, pending_ins = "", ""
    for index, (op, before, after) in enumerate(blocks):
        between_changes = 0 < index < len(blocks) - 1 and before.isspace()
        if op == "equal" and not between_changes:
            if pending_del:
                runs.append(("delete", pending_del))
            if pending_ins:
                runs.append(("insert", pending_ins))
            pending_del, pending_ins = "", ""
            runs.append(("equal", before))
            continue
        pending_del += before
        pending_ins += after
    if pending_del:
        runs.append(("delete", pending_del))
    if pending_ins:
        runs.append(("insert", pending_ins))
    return runs


def render_word_diff(old: str, new: str) -> SafeString:
    """Return HTML of a word diff: removed words in <del>, added words in <ins>, the rest escaped."""
    parts = []
    for op, text in word_diff(old, new):
        if op == "delete":
            parts.append(f'<del class="diff-del">{escape(text)}</del>')
        elif op == "insert":
            parts.append(f'<ins class="diff-add">{escape(text)}</ins>')
        else:
            parts.append(str(escape(text)))
    return mark_safe("".join(parts))  # noqa: S308 - every piece is escaped above


def fields_diff(old: object, new: object) -> list[FieldDiff]:
    """Return the diff of each reviewable field between two revisions (or dicts, or rules)."""

    def value(obj: object, name: str) -> str:
        raw = obj.get(name, "") if isinstance(obj, dict) else getattr(obj, name, "")
        return str(raw or "")

    diffs = []
    for name, title in DIFF_FIELDS:
        before, after = value(old, name), value(new, name)
        diffs.append(FieldDiff(name=name, title=title, changed=before != after, html=render_word_diff(before, after)))
    return diffs
