"""The frozen test split: the evidence the promotion gate judges cannot be swapped after the first gating.

When a version of a task is first gated the task's test split is frozen: the SHA-256 of its examples' ids,
inputs and gold labels goes on an append-only ``FrozenTestSplit`` row and on the ledger. From then on the
gate judges only runs drawn from that split and fails, naming both hashes, when the examples no longer hash to
it (a relabel or deletion by raw SQL); ``dataset_import`` refuses to add examples to it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from pldreview.ledger import ledger_append, row_facts
from rules.models import Example, FrozenTestSplit, PromptVersion, Split, Task

# The seed every run that gates uses: a run's seed only matters when a limit draws a subset, and a gating
# run has no limit, so one fixed seed for every task leaves nothing to choose.
TASK_SEED = 0


def examples_sha256(rows: Iterable[tuple[int, dict[str, Any], str]]) -> str:
    """Return the SHA-256 of (id, inputs, gold label) rows, given in id order.

    Each line is the example's id and ``Example.hash_content`` recomputed from its inputs and gold label, so
    a label changed behind the services' back (the stored ``content_hash`` left as it was) changes the hash.
    """
    digest = hashlib.sha256()
    for pk, inputs, gold_label in rows:
        digest.update(f"{pk} {Example.hash_content(inputs, gold_label)}\n".encode())
    return digest.hexdigest()


def split_sha256(*, task: Task, split: str = Split.TEST) -> tuple[str, int]:
    """Return the SHA-256 of the task's split as it is now (ids, inputs, gold labels) and its size."""
    rows = Example.objects.filter(task=task, split=split).order_by("id").values_list("id", "inputs", "gold_label")
    counted = 0

    def counting() -> Iterable[tuple[int, dict[str, Any], str]]:
        nonlocal counted
        for row in rows.iterator(chunk_size=500):
            counted += 1
            yield row

    return examples_sha256(counting()), counted


def frozen_test_split(task: Task) -> FrozenTestSplit | None:
    """Return the task's frozen test split, if a version of it has been gated."""
    return FrozenTestSplit.objects.select_related("prompt_version", "frozen_by").filter(task=task).first()


def split_freeze(
    *, task: Task, user: AbstractBaseUser | None, prompt_version: PromptVersion | None = None
) -> FrozenTestSplit | None:
    """Freeze the task's test split the first time a version is gated; return the freeze (None: no test split).

    Idempotent: a task's split is frozen once and the first freeze stays, whatever the split looks like later.
    """
    existing = frozen_test_split(task)
    if existing is not None:
        return existing
    sha, n_examples = split_sha256(task=task)
    if n_examples == 0:
        return None
    freeze = FrozenTestSplit(
        task=task, sha256=sha, n_examples=n_examples, prompt_version=prompt_version,
        frozen_by=user if user is not None and user.is_authenticated else None,
    )
    freeze.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            freeze.save()
            ledger_append(
                event="test_split.frozen", actor=freeze.frozen_by, obj=freeze, facts=row_facts(freeze),
                reason=f"Test split of {task.name} frozen when version "
                       f"{prompt_version.number if prompt_version else '?'} was first gated",
            )
    except IntegrityError:
        # Two first gatings at once: the other one froze it first, and its freeze is the one that stays.
        existing = frozen_test_split(task)
        if existing is None:
            raise
        return existing
    return freeze
