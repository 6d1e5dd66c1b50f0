"""Compile a task's approved rule set into an immutable prompt version for the student.

The prompt reads: the task, its labels, then the approved rules in exactly the order reviewers set
on the rule-set page, each numbered by that position ("Rule 3") so a decision or an auditor can cite
it, with its precedence note, then the answer instruction. A topic heading labels each run of
consecutive rules that share a topic; it never moves a rule (a topic may therefore head more than
one run). The exact rule revisions are recorded at their numbers (``PromptVersionRule.position``),
which is the number the rule-set page, the report and the version diff show.

A version never changes after it is written. The database enforces it (triggers from migration
``rules/0002``): its text, hashes, token count and author cannot be updated, and its rule entries
cannot be added, changed or removed once the version is sealed at the end of compilation.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max

from rules.audit import audited_save
from rules.models import PromptVersion, PromptVersionRule, Rule, RuleRevision, Task
from rules.prompts.tokens import TokenizerError, count_tokens
from rules.review.precedence import precedence_conflicts
from rules.review.services import ruleset_rules

# Bump when the layout below changes: the same rules then compile to a new version.
# 2: rules follow the reviewed order exactly; topics label runs of consecutive rules (1 grouped by topic).
TEMPLATE_VERSION = "2"
NO_TOPIC = "Other rules"


@dataclass(frozen=True)
class CompiledRule:
    """One approved rule at its number in the prompt, with the exact revision compiled."""

    number: int
    rule: Rule
    revision: RuleRevision


@dataclass(frozen=True)
class CompiledPrompt:
    """The text of a prompt and the numbered rule revisions it was built from."""

    text: str
    rules: list[CompiledRule]
    rule_set_hash: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _header(task: Task) -> list[str]:
    lines = []
    if task.description.strip():
        lines += [f"Task: {task.description.strip()}", ""]
    lines.append("Labels:")
    for label in task.labels:
        description = str(label.get("description", "")).strip()
        lines.append(f"- {label['name']}: {description}" if description else f"- {label['name']}")
    return lines


def topic_runs(rules: list[Rule]) -> list[tuple[str, list[Rule]]]:
    """Split rules, in reviewed order, into runs of consecutive rules sharing a topic; never reorder them."""
    runs: list[tuple[str, list[Rule]]] = []
    for rule in rules:
        revision = rule.current_revision
        assert revision is not None
        topic = revision.topic.strip() or NO_TOPIC
        if runs and runs[-1][0] == topic:
            runs[-1][1].append(rule)
        else:
            runs.append((topic, [rule]))
    return runs


def rule_set_hash(*, task: Task, numbered: list[tuple[Rule, RuleRevision]]) -> str:
    """Return the hash of what a compilation depends on: template, task header and ordered rule revisions."""
    payload = {
        "template_version": TEMPLATE_VERSION,
        "header": _header(task),
        "rules": [[rule.pk, revision.pk] for rule, revision in numbered],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prompt_parts(*, task: Task, numbered: list[tuple[Rule, RuleRevision]]) -> list[str]:
    """Return the prompt's text cut into parts: the header, one part per rule (in order), then the answer line.

    Joined, the parts are the compiled text exactly. Each part ends with its line breaks and the next one
    starts with a character that is not a line break, so the tokenizer never merges two parts' characters
    into one token (it would merge a trailing and a leading newline into one ``\\n\\n`` token): tokenizing
    the parts one by one gives the tokens of the whole text, and a prompt without rule k shares the tokens of
    the parts before it (docs/attribution.md).
    """
    owners: list[tuple[int, str]] = [(-1, line) for line in _header(task)]
    owners += [
        (-1, ""),
        (-1, "Rules. Apply the first rule whose condition the input meets; a precedence note says when a rule "
             "gives way to another. Cite a rule by its number."),
    ]
    previous_topic: str | None = None
    for index, (_rule, revision) in enumerate(numbered):
        topic = revision.topic.strip() or NO_TOPIC
        if topic != previous_topic:
            # The blank line before a heading ends the part before it (see the docstring).
            owners += [(owners[-1][0], ""), (index, f"## {topic}")]
            previous_topic = topic
        owners.append((index, f"Rule {index + 1} [{revision.label}]: {' '.join(revision.text.split())}"))
        if revision.precedence_note.strip():
            owners.append((index, f"  Precedence: {' '.join(revision.precedence_note.split())}"))
    owners += [(owners[-1][0], ""), (len(numbered), f"Answer with exactly one label: {', '.join(task.label_names)}.")]
    parts: list[str] = []
    current: int | None = None
    for owner, line in owners:
        if owner != current:
            parts.append("")
            current = owner
        parts[-1] += line + "\n"
    return parts


def prompt_render(*, task: Task, rules: list[Rule]) -> CompiledPrompt:
    """Lay out the task, its labels and the given approved rules (in reviewed order) as a prompt."""
    compiled: list[CompiledRule] = []
    for rule in rules:
        revision = rule.current_revision
        assert revision is not None
        compiled.append(CompiledRule(number=len(compiled) + 1, rule=rule, revision=revision))
    numbered = [(c.rule, c.revision) for c in compiled]
    text = "".join(prompt_parts(task=task, numbered=numbered))
    return CompiledPrompt(text=text, rules=compiled, rule_set_hash=rule_set_hash(task=task, numbered=numbered))


@dataclass(frozen=True)
class Landing:
    """A rule that is new (or revised) since the latest version, at its number, between its neighbours."""

    number: int
    rule: Rule
    revised: bool
    before: Rule | None
    after: Rule | None


@dataclass(frozen=True)
class CompilePreview:
    """What compiling the task now would produce: the order, where new rules land, and what blocks it."""

    task: Task
    rules: list[Rule]
    latest: PromptVersion | None
    landings: list[Landing]
    conflicts: list[str]
    scattered_topics: list[str]

    @property
    def needs_confirmation(self) -> bool:
        """Say whether an Admin must confirm where new or revised rules land before compiling."""
        return bool(self.landings)


def prompt_version_preview(*, task: Task) -> CompilePreview:
    """Show where each rule new or revised since the task's latest version lands, and any precedence conflict."""
    rules = ruleset_rules(task)
    latest = PromptVersion.objects.filter(task=task).order_by("-number").first()
    compiled_before = dict(latest.entries.values_list("rule_id", "revision_id")) if latest else {}
    landings = [
        Landing(number=i + 1, rule=rule, revised=rule.pk in compiled_before,
                before=rules[i - 1] if i > 0 else None, after=rules[i + 1] if i + 1 < len(rules) else None)
        for i, rule in enumerate(rules)
        if compiled_before.get(rule.pk) != rule.current_revision_id
    ]
    runs = [topic for topic, _ in topic_runs(rules)] if all(r.current_revision_id for r in rules) else []
    scattered = sorted({topic for topic in runs if runs.count(topic) > 1})
    return CompilePreview(task=task, rules=rules, latest=latest, landings=landings,
                          conflicts=precedence_conflicts(rules), scattered_topics=scattered)


@transaction.atomic
def prompt_version_compile(
    *, task: Task, user: AbstractBaseUser | None, reason: str = ""
) -> tuple[PromptVersion, bool]:
    """Compile the task's approved rule set; return (version, created) — an unchanged set returns its version."""
    if user is not None and not user.has_perm("rules.compile_prompt"):
        raise PermissionDenied("Only Admins compile prompt versions.")
    # Serialises compilations of one task, so two clicks cannot take the same number.
    task = Task.objects.select_for_update().get(pk=task.pk)
    rules = ruleset_rules(task)
    if not rules:
        raise ValidationError(
            f"Task {task.name} has no approved rules, so there is nothing to compile. "
            "Approve at least one rule in the review queue first."
        )
    missing = [rule.pk for rule in rules if rule.current_revision_id is None]
    if missing:
        raise ValidationError(f"Approved rules without a revision cannot be compiled: {missing}.")
    conflicts = precedence_conflicts(rules)
    if conflicts:
        # The student applies the first rule that matches: an order that breaks a note changes its decisions.
        raise ValidationError(
            ["The rule set's order contradicts its precedence notes, so it was not compiled:", *conflicts,
             "Ask a reviewer to propose an order that keeps them, on the rule-set page."]
        )
    compiled = prompt_render(task=task, rules=rules)
    existing = PromptVersion.objects.filter(task=task, rule_set_hash=compiled.rule_set_hash).first()
    if existing is not None:
        return existing, False
    try:
        counted = count_tokens(compiled.text)
    except TokenizerError as exc:
        raise ValidationError(f"The prompt's tokens could not be counted: {exc}") from exc
    number = (PromptVersion.objects.filter(task=task).aggregate(n=Max("number"))["n"] or 0) + 1
    version = PromptVersion(
        task=task,
        number=number,
        text=compiled.text,
        sha256=compiled.sha256,
        rule_set_hash=compiled.rule_set_hash,
        template_version=TEMPLATE_VERSION,
        token_count=counted.n_tokens,
        tokenizer=counted.tokenizer,
        status=PromptVersion.Status.DRAFT,
        compiled_by=user,
    )
    audited_save(version, user=user, reason=reason or f"Compiled from {len(compiled.rules)} approved rules",
                 event="prompt_version.compiled")
    entries = [
        PromptVersionRule(prompt_version=version, rule=c.rule, revision=c.revision, position=c.number)
        for c in compiled.rules
    ]
    for entry in entries:
        entry.full_clean(exclude=["prompt_version"])
    PromptVersionRule.objects.bulk_create(entries)
    # Sealing is the last write: from here the database refuses any change to the entries.
    version.sealed = True
    audited_save(version, user=user, reason="Sealed: its rule entries are final", update_fields=["sealed"],
                 event="prompt_version.sealed")
    return version, True
