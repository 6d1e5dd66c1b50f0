"""Does the student obey its rules? A counterfactual check run after every pld evaluation.

On a sample of the run's examples the student decides three times: under the prompt as compiled,
under the same prompt with each rule's label swapped (every label moved one place along the
task's label list, so no rule keeps its label), and with no rules at all. A student that follows
its rules moves its decision with the swapped label; one that ignores them keeps deciding the
same way. ``rule_adherence`` is the share of sampled examples whose decision under the swapped
rules is exactly the swap of the original decision. A student guessing at random would get
1/len(labels); at or below that the results carry a warning.
"""
from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from evaluation.student import prompts
from evaluation.student.in_process import decide
from pldreview.jobs import JobProgress
from rules.models import Example

if TYPE_CHECKING:
    from evaluation.models import EvaluationRun
    from evaluation.student.backend import StudentBackend

SAMPLE_SIZE = 20


def label_pattern(labels: list[str]) -> re.Pattern[str]:
    """Match any label name as a whole word (hyphens count as part of a word: anti-stereotype)."""
    names = sorted(labels, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")


def label_swap(labels: list[str]) -> dict[str, str]:
    """Return the permutation that moves every label one place along the list (a swap for two)."""
    return {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}


def counterfactual_rules(*, text: str, labels: list[str], rule_texts: list[str] | None = None) -> tuple[str, int]:
    """Return the rules text with every rule's label swapped, and how many lines changed.

    A rule line names some labels but not all of them; lines that list every label (the label
    definitions, the answer instruction) are left alone. With ``rule_texts`` (a prompt version's
    rule revisions) only lines that belong to one of those rules are changed.
    """
    pattern = label_pattern(labels)
    swap = label_swap(labels)
    anchors = [t.strip()[:40] for t in (rule_texts or []) if t.strip()]
    changed = 0
    out = []
    for line in text.splitlines(keepends=True):
        named = set(pattern.findall(line))
        is_rule = bool(named) and len(named) < len(labels)
        if is_rule and anchors:
            is_rule = any(anchor in line for anchor in anchors) or _near_anchor(out, anchors)
        if is_rule:
            line = pattern.sub(lambda m: swap[m.group(1)], line)
            changed += 1
        out.append(line)
    return "".join(out), changed


def _near_anchor(previous_lines: list[str], anchors: list[str]) -> bool:
    # A compiled rule may put its label on the line after its condition.
    return bool(previous_lines) and any(anchor in previous_lines[-1] for anchor in anchors)


def _sample(ids: list[int], *, size: int, seed: int) -> list[int]:
    """Draw whole shared contexts in a seeded order until ``size`` examples; keep the run's order.

    Each condition re-reads the context of every sampled example, so sampling whole documents
    keeps a ContractNLI check to a few documents instead of one per example.
    """
    groups: dict[str, list[int]] = {}
    keys = dict(Example.objects.filter(pk__in=ids).values_list("pk", "group_key"))
    for example_id in ids:
        groups.setdefault(keys.get(example_id) or f"#{example_id}", []).append(example_id)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    chosen: set[int] = set()
    for key in order:
        if len(chosen) >= size:
            break
        chosen.update(groups[key][: size - len(chosen)])
    return [i for i in ids if i in chosen]


def _rule_texts(run: EvaluationRun) -> list[str]:
    if run.prompt_version_id is None:
        return []
    entries = run.prompt_version.entries.select_related("revision").order_by("position")
    return [entry.revision.text for entry in entries]


def adherence_check(
    *, run: EvaluationRun, student: StudentBackend, sample_size: int | None = None, progress: JobProgress | None = None
) -> dict[str, Any]:
    """Measure how often the student's decisions follow its rules' labels on a sample of the run."""
    labels = run.task.label_names
    size = sample_size or int(run.options.get("adherence_sample", SAMPLE_SIZE))
    ids: list[int] = list(run.options.get("example_ids", []))
    sample_ids = _sample(ids, size=size, seed=run.seed)
    examples = Example.objects.in_bulk(sample_ids)
    original = {p.example_id: p.label for p in run.predictions.filter(example_id__in=sample_ids)}
    swapped_text, n_changed = counterfactual_rules(
        text=run.prompt_text, labels=labels, rule_texts=_rule_texts(run) or None
    )
    result: dict[str, Any] = {
        "n": 0,
        "chance": round(1.0 / len(labels), 4),
        "rule_lines_swapped": n_changed,
        "swap": label_swap(labels),
    }
    if n_changed == 0:
        result.update(
            rule_adherence=None,
            warning="No rule line names a label, so the counterfactual check could not be run.",
        )
        return result
    from evaluation.student.in_process import ExampleTooLongError

    counter: dict[int, str] = {}
    bare: dict[int, str] = {}
    no_rules_text = prompts.no_rules(task=run.task)
    for name, rules_text, store in (("swapped", swapped_text, counter), ("no", no_rules_text, bare)):
        for n_done, example_id in enumerate(sample_ids):
            if progress is not None:
                progress.note(f"Checking rule adherence ({name} rules): {n_done} of {len(sample_ids)}")
            if not original.get(example_id):
                continue  # refused or not predicted
            try:
                decision = decide(run=run, student=student, inputs=examples[example_id].inputs, rules_text=rules_text)
            except ExampleTooLongError:
                continue
            store[example_id] = decision.label
    scored = [i for i in sample_ids if i in counter and i in bare]
    swap = label_swap(labels)
    n = len(scored)
    followed = sum(1 for i in scored if counter[i] == swap[original[i]])
    unchanged = sum(1 for i in scored if counter[i] == original[i])
    same_as_bare = sum(1 for i in scored if bare[i] == original[i])

    def accuracy(decisions: dict[int, str]) -> float | None:
        return round(sum(1 for i in scored if decisions[i] == examples[i].gold_label) / n, 4) if n else None

    adherence = round(followed / n, 4) if n else None
    result.update(
        n=n,
        rule_adherence=adherence,
        unchanged_under_swap=round(unchanged / n, 4) if n else None,
        agreement_with_no_rules=round(same_as_bare / n, 4) if n else None,
        accuracy_with_rules=accuracy(original),
        accuracy_with_swapped_rules=accuracy(counter),
        accuracy_without_rules=accuracy(bare),
        example_ids=scored,
    )
    if adherence is not None and adherence <= result["chance"]:
        result["warning"] = (
            f"The student does not follow its rules better than chance: with every rule's label swapped, "
            f"only {followed} of {n} decisions moved with the rules ({adherence:.0%}; chance is "
            f"{result['chance']:.0%}). Its decisions cannot be attributed to the approved rules."
        )
    elif n and result["accuracy_with_swapped_rules"] is not None and (
        result["accuracy_with_swapped_rules"] > (result["accuracy_with_rules"] or 0)
    ):
        result["warning"] = (
            "The student scored better with deliberately swapped rules than with the true ones on the sample: "
            "it does not reliably follow its rules."
        )
    return result
