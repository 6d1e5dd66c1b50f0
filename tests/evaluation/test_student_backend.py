"""Both students follow the StudentBackend protocol and refuse the same inputs the same way."""
from __future__ import annotations

import inspect

import pytest

from evaluation.student.backend import StudentBackend
from evaluation.student.http_client import ServerStudent
from evaluation.student.in_process import ExampleTooLongError, Student, context_check, labels_check

METHODS = ("classify", "count_tokens", "holds_prefix", "settings", "close")


@pytest.mark.parametrize("backend", [Student, ServerStudent])
def test_each_backend_has_every_method_of_the_protocol_with_its_signature(backend: type) -> None:
    for name in METHODS:
        assert inspect.signature(getattr(backend, name)) == inspect.signature(getattr(StudentBackend, name)), name
    assert backend.backend in {"llama_cpp", "server"}


@pytest.mark.parametrize("labels", [["Yes"], ["Yes", "Yes"], []])
def test_fewer_than_two_distinct_labels_are_refused(labels: list[str]) -> None:
    with pytest.raises(ValueError, match="two distinct labels"):
        labels_check(labels)


def test_a_prompt_longer_than_the_context_is_refused_with_its_size() -> None:
    context_check(needed=512, n_ctx=512)
    with pytest.raises(ExampleTooLongError) as refused:
        context_check(needed=513, n_ctx=512)
    assert refused.value.n_tokens == 513 and refused.value.n_ctx == 512
