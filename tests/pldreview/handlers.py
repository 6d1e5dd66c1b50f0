"""Job handlers used by the job tests: they store each step as a file so a retry can skip it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pldreview.jobs import JobProgress, job_handlers_register
from pldreview.models import Job


def count_to(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Write one file per step; fail once at ``fail_at``; ask to cancel itself at ``cancel_at``."""
    n = int(job.params.get("n", 3))
    folder = Path(job.params["dir"]) if job.params.get("dir") else None
    progress.set_total(n, "Counting")
    stored = {int(p.name) for p in folder.glob("[0-9]*")} if folder else set()
    progress.set_done(len(stored), f"Resuming with {len(stored)} steps stored" if stored else "")
    for step in range(n):
        if step in stored:
            continue
        if step == job.params.get("fail_at") and folder and not (folder / "failed-once").exists():
            (folder / "failed-once").write_text("x")
            raise RuntimeError(f"step {step} broke")
        if step == job.params.get("cancel_at"):
            # What the cancel button does from another request while this job runs.
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        if folder:
            (folder / str(step)).write_text(str(job.attempts))
        progress.advance(message=f"Step {step + 1} of {n}")
    return {"counted": n, "url": "/tasks/"}


# Kinds named like the old dotted paths, as the apps' own kinds are.
job_handlers_register({"tests.pldreview.handlers.count_to": count_to})
