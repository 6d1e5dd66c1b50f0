"""Dataset import: read a file, check it whole, create the task if needed, split and store its examples."""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet

from pldreview.ledger import ledger_append, row_facts
from rules.datasets.frozen_split import frozen_test_split
from rules.datasets.parsers import KNOWN_FORMATS, FieldMap, ImportRefused, ParsedExample, TaskSpec, parse_file
from rules.datasets.splits import split_assign
from rules.models import DatasetImport, Example, Split, Task

BATCH_SIZE = 500
DEFAULT_SPLIT_SEED = 0


def task_define(*, definition: dict[str, Any]) -> Task:
    """Create a task from a definition (name, title, description, labels, input fields) unless it exists."""
    name = str(definition.get("name", ""))
    existing = Task.objects.filter(name=name).first()
    if existing:
        return existing
    task = Task(
        name=name,
        title=definition.get("title", ""),
        description=definition.get("description", ""),
        labels=definition.get("labels", []),
        input_fields=definition.get("input_fields", []),
        shared_context_field=definition.get("shared_context_field", ""),
    )
    task.full_clean()
    with transaction.atomic():
        task.save()
        ledger_append(event="task.created", actor=None, obj=task, facts=row_facts(task), reason="Task defined")
    return task


def _read(path_or_file: str | Path | IO[bytes]) -> tuple[str, bytes]:
    """Return the file's display name and bytes, from a path or an open (uploaded) file."""
    if isinstance(path_or_file, (str, Path)):
        path = Path(path_or_file)
        try:
            return path.name, path.read_bytes()
        except OSError as exc:
            raise ValidationError(f"{path}: cannot read the file ({exc.strerror})") from None
    name = Path(getattr(path_or_file, "name", "") or "upload").name
    return name, path_or_file.read()


def _decode(source: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(source, f"byte {exc.start}", "the file is not UTF-8 text") from None


def _check_duplicates(source: str, examples: list[ParsedExample]) -> list[str]:
    """Return the examples' content hashes; refuse a file that holds the same example twice."""
    seen: dict[str, ParsedExample] = {}
    seen_inputs: dict[tuple[str, str], ParsedExample] = {}
    hashes = []
    for example in examples:
        digest = example.content_hash
        if digest in seen:
            raise ImportRefused(source, example.source_ref, f"duplicate of {seen[digest].source_ref}")
        seen[digest] = example
        inputs_key = (Example.hash_content(example.inputs, ""), example.identity)
        other = seen_inputs.get(inputs_key)
        if other is not None:
            raise ImportRefused(
                source,
                example.source_ref,
                f"same inputs as {other.source_ref} with a different label ({example.label!r} vs {other.label!r})",
            )
        seen_inputs[inputs_key] = example
        hashes.append(digest)
    return hashes


def _task_for(
    *, task_name: str, fmt: str, spec: TaskSpec | None, examples: list[ParsedExample], source: str
) -> tuple[Task, bool]:
    """Return the existing task (checked against the file) or a new, unsaved one defined by it."""
    task = Task.objects.filter(name=task_name).first()
    if task is not None:
        missing = [name for name in task.input_fields if name not in examples[0].inputs]
        extra = [name for name in examples[0].inputs if name not in task.input_fields]
        if missing or extra:
            raise ImportRefused(
                source, "", f"its fields {sorted(examples[0].inputs)} do not match task {task.name}'s "
                f"input fields {task.input_fields}"
            )
        known = set(task.label_names)
        for example in examples:
            if example.label not in known:
                raise ImportRefused(
                    source, example.source_ref,
                    f"unknown label {example.label!r} (task {task.name} has {', '.join(task.label_names)})",
                )
        return task, False
    if spec is None:
        # jsonl / csv: the labels are those the data uses, in order of first appearance.
        labels = list(dict.fromkeys(example.label for example in examples))
        spec = TaskSpec(
            title=task_name,
            description="",
            labels=[{"name": label, "description": ""} for label in labels],
            input_fields=list(examples[0].inputs),
        )
    task = Task(
        name=task_name,
        title=spec.title,
        description=spec.description,
        labels=[dict(label) for label in spec.labels],
        input_fields=list(spec.input_fields),
        shared_context_field=spec.shared_context_field,
    )
    try:
        task.full_clean()
    except ValidationError as exc:
        messages = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        raise ValidationError(f"Cannot create task {task_name!r} from {source}: {messages}") from None
    return task, True


def _split_groups(task: Task, examples: list[ParsedExample]) -> list[str]:
    """Return the unit each example is split with: its group, merged across groups with the same shared text."""
    shared = task.shared_context_field
    groups = []
    for index, example in enumerate(examples):
        if shared and example.group_key:
            # ContractNLI test.json holds one contract under two document ids; it must not sit in two splits.
            groups.append(hashlib.sha256(example.inputs[shared].encode()).hexdigest())
        else:
            groups.append(example.group_key or f"#{index}")
    return groups


@transaction.atomic
def dataset_import(
    *,
    task_name: str,
    fmt: str,
    path_or_file: str | Path | IO[bytes],
    split: str | None = None,
    split_seed: int | None = None,
    field_map: FieldMap | None = None,
    user: AbstractBaseUser | None = None,
) -> DatasetImport:
    """Import a whole dataset file into a task, or refuse it whole; re-importing adds nothing.

    With ``split`` every new example goes to that split; otherwise the file is split 60/20/20,
    stratified by label and grouped by group key, with ``split_seed`` (default 0).
    """
    if split and split_seed is not None:
        raise ValidationError("Give either a split or a split seed, not both.")
    if split and split not in Split.values:
        raise ValidationError(f"Unknown split {split!r}; choose one of {', '.join(Split.values)}.")
    if split == Split.FEEDBACK:
        raise ValidationError("The feedback split holds only Reviewers' feedback on production decisions.")
    if fmt in KNOWN_FORMATS and field_map and field_map.fields:
        raise ValidationError(f"The {fmt} format fixes its fields; a field mapping only applies to jsonl and csv.")
    source, raw = _read(path_or_file)
    text = _decode(source, raw)
    existing_task = Task.objects.filter(name=task_name).first()
    if existing_task and field_map:
        unknown = [name for name in field_map.fields if name not in existing_task.input_fields]
        if unknown:
            raise ValidationError(
                f"The field mapping names {', '.join(unknown)}, which task {task_name} does not have "
                f"(its input fields: {', '.join(existing_task.input_fields)})."
            )
    parsed = parse_file(
        text,
        fmt=fmt,
        source=source,
        field_map=field_map,
        task_fields=existing_task.input_fields if existing_task else None,
    )
    hashes = _check_duplicates(source, parsed.examples)
    task, created = _task_for(
        task_name=task_name, fmt=fmt, spec=parsed.task_spec, examples=parsed.examples, source=source
    )
    if created:
        task.save()
        ledger_append(event="task.created", actor=user, obj=task, facts=row_facts(task),
                      reason=f"Created by importing {source[:200]}")

    if split:
        assignment = [split] * len(parsed.examples)
        seed = None
    else:
        seed = DEFAULT_SPLIT_SEED if split_seed is None else split_seed
        groups = _split_groups(task, parsed.examples)
        assignment = split_assign(labels=[e.label for e in parsed.examples], groups=groups, random_state=seed)

    # An example that is already stored keeps its split and its original import.
    stored = set(Example.objects.filter(task=task).values_list("content_hash", flat=True))
    record = DatasetImport(
        task=task,
        format=fmt,
        source_name=source[:500],
        source_sha256=hashlib.sha256(raw).hexdigest(),
        split=split or "",
        split_seed=seed,
        n_records=len(parsed.examples),
        imported_by=user if user is not None and user.pk else None,
    )
    record.full_clean()
    record.save()
    new = [
        Example(
            task=task,
            inputs=example.inputs,
            gold_label=example.label,
            split=assigned,
            source_file=source[:500],
            source_ref=example.source_ref[:200],
            content_hash=digest,
            group_key=example.group_key[:200],
            evidence=example.evidence,
            dataset_import=record,
        )
        for example, digest, assigned in zip(parsed.examples, hashes, assignment, strict=True)
        if digest not in stored
    ]
    _refuse_into_frozen_test_split(task, new, source)
    Example.objects.bulk_create(new, batch_size=BATCH_SIZE)
    record.n_added = len(new)
    record.n_skipped = len(parsed.examples) - len(new)
    record.save(update_fields=["n_added", "n_skipped"])
    ledger_append(event="dataset.imported", actor=user, obj=record, facts=row_facts(record),
                  reason=f"Imported {record.n_added} new examples from {source[:200]}")
    return record


def _refuse_into_frozen_test_split(task: Task, new: list[Example], source: str) -> None:
    """Refuse the whole import when it would add examples to a test split the promotion gate has frozen."""
    into_test = sum(1 for example in new if example.split == Split.TEST)
    frozen = frozen_test_split(task) if into_test and task.pk else None
    if frozen is None:
        return
    raise ValidationError(
        f"{source}: {into_test} new example(s) would go into the test split of task {task.name}, which was frozen "
        f"on {frozen.created_at:%Y-%m-%d %H:%M} UTC when a version was first gated (SHA-256 {frozen.sha256}). "
        "The gate's evidence must not change under it: import them into train or dev (a fixed split), or "
        "define a new task for a new test split."
    )


def import_summary(record: DatasetImport) -> dict[str, dict[str, int]]:
    """Return what an import added, by label (in the task's order) and by split, for messages and output."""
    added = Example.objects.filter(dataset_import=record)
    labels = _count(added, "gold_label")
    splits = _count(added, "split")
    return {
        "labels": {name: labels[name] for name in record.task.label_names if name in labels},
        "splits": {name: splits[name] for name in Split.values if name in splits},
    }


def _count(queryset: QuerySet[Example], field: str) -> Counter[str]:
    return Counter({row[field]: row["n"] for row in queryset.values(field).annotate(n=Count("id")).order_by()})
