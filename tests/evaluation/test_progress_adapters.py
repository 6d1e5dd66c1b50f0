"""Every progress adapter a run passes to its work follows the JobProgress protocol, method for method."""
from __future__ import annotations

import inspect

import pytest

from evaluation.runs.execution import _ShardProgress
from evaluation.runs.worker import _RunJobProgress
from pldreview.jobs import JobProgress, JobProgressRecorder, NoProgress

METHODS = ("set_total", "set_done", "advance", "note")


@pytest.mark.parametrize("adapter", [JobProgressRecorder, NoProgress, _ShardProgress, _RunJobProgress])
def test_each_adapter_has_every_method_of_the_protocol_with_its_signature(adapter: type) -> None:
    for name in METHODS:
        assert inspect.signature(getattr(adapter, name)) == inspect.signature(getattr(JobProgress, name)), name
