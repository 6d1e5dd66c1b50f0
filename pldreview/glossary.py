"""The words of the app in plain language: one line for the hover/focus tip, the technical name for "details"."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    key: str
    term: str
    plain: str
    technical: str = ""


TERMS = [
    Term("support", "Support", "How many labelled examples the rule was drawn from or cites."),
    Term("micro_rule", "Micro-rule", "The one-line rule the teacher wrote for a single example, before grouping."),
    Term("precedence", "Which rule wins",
         "When two rules point to different labels, this note says which one applies.", "Precedence note"),
    Term("four_eyes", "Four eyes",
         "Two different people: whoever wrote a revision cannot be the one who approves it."),
    Term("right_on_examples", "Right on its examples",
         "Of the examples this rule covers, how many the student model labelled correctly in the latest evaluation."),
    Term("at_least", "At least (95% sure)",
         "The share of right answers we can be 95% sure of; with few examples it is low even when all are right.",
         "Wilson score interval, lower bound at 95% confidence"),
    Term("accuracy", "Accuracy", "The share of examples labelled correctly."),
    Term("macro_f1", "Score (macro-F1)",
         "How well the student finds every label, averaged so rare labels count as much as common ones; "
         "1 is perfect, 0 is never right.", "Macro-averaged F1"),
    Term("interval", "95% range",
         "Where the true score lies, 95% of the time, given how many examples were tested.",
         "95% confidence interval (bootstrap over the test examples)"),
    Term("zero_shot", "No rules (zero-shot)",
         "The student with the task description only, without rules: the rules must do better than this."),
    Term("majority", "Always the commonest label",
         "Answering every example with the most frequent label: the floor any useful prompt must clear.",
         "Majority-class baseline"),
    Term("latency", "Time per example", "How long the student takes to label one example; p50 is the typical "
         "case, p95 the slow end."),
    Term("precision", "Precision", "Of the examples the student gave this label, the share that truly have it."),
    Term("recall", "Recall", "Of the examples that truly have this label, the share the student found."),
    Term("clustering", "Grouping similar micro-rules",
         "Micro-rules that say nearly the same thing are grouped automatically; each group becomes one "
         "candidate rule. Micro-rules that fit no group are kept and can be promoted by hand.",
         "DBSCAN on the cosine distance of TF-IDF vectors (paper: eps 0.4, min_samples 6)"),
    Term("signature", "Signed report",
         "A digital seal on the PDF that shows which PLD Review installation issued it and that nothing changed "
         "since.", "PAdES signature, validated with pyHanko"),
    Term("e_signature", "Electronic signature",
         "A person signs a decision by typing their password again (and their second factor); the record shows "
         "their name, the time and what the signature means. Not the seal on a PDF report.",
         "21 CFR Part 11 electronic signature (§11.50, §11.200)"),
    Term("review_log", "Review log",
         "Every decision reviewers made on the rules of a task and on their order, with who, when and why; "
         "auditors download it as CSV or JSON. Not the decision log."),
    Term("decision_log", "Decision log",
         "Every label the production prompt gave through the classify API or command, with the version that "
         "gave it. Not the review log."),
    Term("finished", "Finished, succeeded",
         "The same stage in two places: an evaluation run is finished, a background job has succeeded, when its "
         "work is done and its results are saved."),
]
GLOSSARY = {term.key: term for term in TERMS}
