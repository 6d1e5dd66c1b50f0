"""Keep the garbage collector's full pass short in a long-running web process (docs/production.md, "No collector
pauses").

A started process holds about 250,000 objects the collector tracks: Django, its apps, every imported module and
the student's wrappers, all alive until the process ends. Python's full collection walks every one of them, and
it holds the GIL while it does: 130-165 ms on this project's machines, during which no request thread answers
and the decision thread cannot hand the student its next batch. Under the classify benchmark's load one came once
or twice a minute in each web process (docs/benchmarks.md, "Collector pauses").

Objects alive once a process has started will never be garbage, so they are frozen: moved to the collector's
permanent generation, which it never walks. Later collections walk only what requests created.
"""
from __future__ import annotations

import gc


def heap_freeze() -> int:
    """Collect what is garbage now, then exempt every object still alive from later collections.

    Call it once a process has loaded what it keeps (gunicorn's ``post_worker_init``; the API's student preload).
    Calling it again freezes what was loaded since. Returns how many objects are frozen in all.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
