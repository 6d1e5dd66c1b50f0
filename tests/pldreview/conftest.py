"""Fixtures the project-package tests share: the audited world of the ledger tests, the guessing tests' clock."""
from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from tests.pldreview.ledgerkit import audited_world


@pytest.fixture
def world(task, reviewer, second_reviewer, admin_user, auditor) -> Any:  # noqa: ANN001 (personas)
    """Every audited kind of record, built through the services (tests/pldreview/ledgerkit.py)."""
    return audited_world(task, reviewer, second_reviewer, admin_user, auditor)


@pytest.fixture
def fresh_cache() -> None:
    """Empty the cache: allauth counts login posts per address in it (30 a minute); earlier tests' must not count."""
    cache.clear()


@pytest.fixture
def long_delays(settings) -> None:  # noqa: ANN001 (pytest-django fixture)
    """Make the first wait a minute (default one second), so the tests' own timing never decides a verdict."""
    settings.PLD_LOGIN_DELAY_SECONDS = 60
