"""Assign examples to train / dev / test: stratified by label, reproducible for a seed, groups kept whole."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from rules.models import Split

# 60 / 20 / 20. The grouped split uses five folds: three for train, one each for dev and test.
DEV_FRACTION = 0.2
TEST_FRACTION = 0.2
N_FOLDS = 5
_FOLD_SPLITS = (Split.TRAIN, Split.TRAIN, Split.TRAIN, Split.DEV, Split.TEST)


def split_assign(*, labels: Sequence[str], groups: Sequence[str] | None = None, random_state: int) -> list[str]:
    """Return a split name for each example, stratified by label and the same for the same input and seed.

    Parameters
    ----------
    labels : sequence of str
        Gold label of each example, in file order.
    groups : sequence of str, optional
        Group key of each example; examples of one group always land in the same split.
        Ignored when every group has a single member.
    random_state : int
        Seed; recorded with the import so the assignment can be reproduced.

    Returns
    -------
    list of str
        ``"train"``, ``"dev"`` or ``"test"`` for each example.
    """
    n_samples = len(labels)
    if n_samples == 0:
        return []
    y = np.asarray(labels)
    if groups is not None and len(set(groups)) < n_samples:
        return _split_groups(y, np.asarray(groups), random_state)
    return _split_examples(y, random_state)


def _split_examples(y: np.ndarray, random_state: int) -> list[str]:
    """Two stratified train_test_split calls: 60 / 40, then the 40 halved into dev and test."""
    indices = np.arange(len(y))
    try:
        train, rest = train_test_split(
            indices, test_size=DEV_FRACTION + TEST_FRACTION, stratify=y, random_state=random_state
        )
        dev, test = train_test_split(
            rest, test_size=TEST_FRACTION / (DEV_FRACTION + TEST_FRACTION), stratify=y[rest], random_state=random_state
        )
    except ValueError:
        # Too few examples of some label to stratify (e.g. a label seen once): split without it.
        return _split_by_permutation(len(y), random_state)
    assignment = np.empty(len(y), dtype=object)
    assignment[train], assignment[dev], assignment[test] = Split.TRAIN, Split.DEV, Split.TEST
    return [str(s) for s in assignment]


def _split_groups(y: np.ndarray, groups: np.ndarray, random_state: int) -> list[str]:
    """StratifiedGroupKFold with five folds: whole groups per fold, label proportions kept close."""
    if len(np.unique(groups)) < N_FOLDS:
        group_names = sorted(set(groups.tolist()))
        per_group = dict(zip(group_names, _split_by_permutation(len(group_names), random_state), strict=True))
        return [per_group[g] for g in groups.tolist()]
    splitter = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=random_state)
    assignment = np.empty(len(y), dtype=object)
    with warnings.catch_warnings():
        # It warns when a label has fewer members than folds; the split is still valid.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, fold_indices) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            assignment[fold_indices] = _FOLD_SPLITS[fold]
    return [str(s) for s in assignment]


def _split_by_permutation(n_items: int, random_state: int) -> list[str]:
    """Shuffle with the seed and cut 60 / 20 / 20 (used when there is too little data to stratify)."""
    order = np.random.default_rng(random_state).permutation(n_items)
    n_test = round(n_items * TEST_FRACTION)
    n_dev = round(n_items * DEV_FRACTION)
    assignment = [str(Split.TRAIN)] * n_items
    for rank, index in enumerate(order):
        if rank < n_test:
            assignment[index] = str(Split.TEST)
        elif rank < n_test + n_dev:
            assignment[index] = str(Split.DEV)
    return assignment
