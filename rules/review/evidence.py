"""Show the evidence behind a rule: ContractNLI spans highlighted inside the premise."""
from __future__ import annotations

from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Characters shown either side of an evidence span when a premise is too long to show whole.
EXCERPT_CONTEXT = 240
LONG_PREMISE = 1500


def _spans(evidence: Any, length: int) -> list[tuple[int, int]]:
    """Return valid, sorted, merged (start, end) spans inside a text of the given length."""
    spans = []
    for item in evidence or []:
        try:
            start, end = int(item["start"]), int(item["end"])
        except (KeyError, TypeError, ValueError):
            continue
        start, end = max(0, start), min(length, end)
        if start < end:
            spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, evidence: Any) -> SafeString:
    """Return the text as HTML with each evidence span inside <mark>."""
    text = text or ""
    out, cursor = [], 0
    for start, end in _spans(evidence, len(text)):
        out.append(str(escape(text[cursor:start])))
        out.append(f"<mark>{escape(text[start:end])}</mark>")
        cursor = end
    out.append(str(escape(text[cursor:])))
    return mark_safe("".join(out))  # noqa: S308 - every piece is escaped above


def excerpts(text: str, evidence: Any) -> SafeString:
    """Return only the passages around the evidence spans, highlighted, joined by ellipses."""
    text = text or ""
    spans = _spans(evidence, len(text))
    if not spans or len(text) <= LONG_PREMISE:
        return highlight(text, evidence)
    windows: list[tuple[int, int]] = []
    for start, end in spans:
        lo, hi = max(0, start - EXCERPT_CONTEXT), min(len(text), end + EXCERPT_CONTEXT)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi)
        else:
            windows.append((lo, hi))
    parts = []
    for lo, hi in windows:
        inside = [{"start": s - lo, "end": e - lo} for s, e in spans if s < hi and e > lo]
        prefix = "… " if lo > 0 else ""
        suffix = " …" if hi < len(text) else ""
        parts.append(f"<p>{prefix}{highlight(text[lo:hi], inside)}{suffix}</p>")
    return mark_safe("".join(parts))  # noqa: S308 - highlight() escapes
