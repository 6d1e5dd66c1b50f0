"""Where tests find the bundled fixtures and the shared datasets (never committed)."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

SHARED_DATASETS = Path(settings.PLD_DATASETS_DIR)
FIXTURES_DIR = Path(settings.BASE_DIR) / "fixtures"


def requires_shared_datasets(*parts: str) -> pytest.MarkDecorator:
    """Skip a test with a clear reason when ../shared/datasets (or a file in it) is absent."""
    path = SHARED_DATASETS.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (the real datasets are never committed)")
