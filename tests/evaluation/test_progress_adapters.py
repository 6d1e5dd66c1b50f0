"""Every progress adapter a run passes to its work follows the JobProgress protocol, method for method."""
from __future__ import annotations

import inspect

import pytest

from evaluation.runs.shards import ShardProgress
from pldreview.jobs import CountedJobProgress, JobProgress, JobProgressRecorder, NoProgress

METHODS = ("set_total", "set_done", "advance", "note")


ADAPTERS = [JobProgressRecorder, NoProgress, ShardProgress, CountedJobProgress]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_each_adapter_has_every_method_of_the_protocol_with_its_signature(adapter: type) -> None:
    for name in METHODS:
        assert inspect.signature(getattr(adapter, name)) == inspect.signature(getattr(JobProgress, name)), name
