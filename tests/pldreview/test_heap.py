"""A started web process freezes what it loaded, so the collector's full pass walks only what requests create."""
from __future__ import annotations

import gc
import runpy
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pldreview.heap import heap_freeze

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    # The test process is not a server: give its objects back to the collector afterwards.
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Node:
    """An object that can be weakly referenced and put in a reference cycle."""


def _walked(obj: object) -> bool:
    return any(tracked is obj for tracked in gc.get_objects())


def _garbage_cycle() -> weakref.ref[_Node]:
    node = _Node()
    node.me = node  # only the collector frees a cycle
    return weakref.ref(node)


def test_objects_alive_at_the_freeze_are_no_longer_walked_and_later_garbage_is_still_collected() -> None:
    loaded = {"a module's table": [1, 2, 3]}
    assert _walked(loaded)

    frozen = heap_freeze()

    assert frozen >= 1 and gc.get_freeze_count() == frozen
    assert not _walked(loaded)
    # Collection still runs: a cycle made after the freeze is found and freed.
    later = _garbage_cycle()
    gc.collect()
    assert later() is None


def test_garbage_present_at_the_freeze_is_collected_first_not_kept_forever() -> None:
    gc.disable()  # no automatic pass may free it before the freeze does
    try:
        earlier = _garbage_cycle()
        assert earlier() is not None

        heap_freeze()
    finally:
        gc.enable()

    # Freed by the freeze's own collection; frozen, it would have lived as long as the process.
    assert earlier() is None


def test_gunicorn_workers_freeze_once_the_application_is_loaded(settings) -> None:
    settings.PLD_WEB_ROLE = "pages"
    hooks = runpy.run_path(str(GUNICORN_CONF))
    worker = SimpleNamespace(cfg=SimpleNamespace(threads=4), log=SimpleNamespace(warning=lambda *a: None))
    loaded = {"the application": ["views", "urls"]}

    hooks["post_worker_init"](worker)

    assert gc.get_freeze_count() > 0
    assert not _walked(loaded)
