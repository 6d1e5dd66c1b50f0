from __future__ import annotations

from rules.review.diffs import fields_diff, render_word_diff, word_diff
from rules.review.evidence import excerpts, highlight


def test_a_word_diff_shows_only_the_added_words() -> None:
    runs = word_diff("If it may share, then Entailment", "If it may share with staff, then Entailment")
    assert ("insert", " with staff") in runs
    assert not [r for r in runs if r[0] == "delete"]


def test_a_replaced_phrase_reads_as_one_change() -> None:
    html = render_word_diff("If it names employees, then X", "If it lets staff see, then X")
    assert '<del class="diff-del">names employees</del><ins class="diff-add">lets staff see</ins>' in html


def test_the_diff_escapes_html() -> None:
    html = render_word_diff("<b>x</b>", "<script>y</script>")
    assert "<script" not in html and "<b>" not in html and "&lt;" in html


def test_fields_diff_marks_changed_fields_only() -> None:
    diffs = {d.name: d for d in fields_diff({"text": "a", "label": "E"}, {"text": "a", "label": "C"})}
    assert diffs["label"].changed and not diffs["text"].changed


def test_evidence_spans_are_marked_and_escaped() -> None:
    assert highlight("a <b> secret c", [{"start": 6, "end": 12}]) == "a &lt;b&gt; <mark>secret</mark> c"


def test_overlapping_and_invalid_spans_are_merged_or_ignored() -> None:
    html = highlight("abcdefgh", [{"start": 1, "end": 4}, {"start": 3, "end": 6}, {"start": 9, "end": 2}, {"x": 1}])
    assert html == "a<mark>bcdef</mark>gh"


def test_a_long_premise_shows_excerpts_around_the_evidence() -> None:
    text = "x" * 3000 + "THE EVIDENCE" + "y" * 3000
    html = excerpts(text, [{"start": 3000, "end": 3012}])
    assert "<mark>THE EVIDENCE</mark>" in html
    assert html.count("x") < 300 and "…" in html
