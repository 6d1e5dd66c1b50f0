"""Demo steps: compile nda-demo's approved rules; after the evaluations, promote the version and issue a token."""
from __future__ import annotations

import os
from typing import TextIO

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from evaluation.models import ApiToken
from evaluation.promotion import promotion_meaning, prompt_version_promote
from evaluation.tokens import api_token_create
from pldreview.signatures import prompt_version_content_sha256, signature_sign, signing
from rules.compiler import prompt_version_compile
from rules.demo import demo_password
from rules.models import PromptVersion, Task
from rules.services import ruleset_rules

DEMO_TASK = "nda-demo"
DEMO_ADMIN = "adam"
DEMO_TOKEN_NAME = "demo"
PROMOTION_REASON = "Demo: the first reviewed rule set, evaluated on the test split, goes to production."


def _task_and_admin(stdout: TextIO) -> tuple[Task, User] | None:
    """Return the demo task and admin, or say which is missing and return None."""
    task = Task.objects.filter(name=DEMO_TASK).first()
    admin = User.objects.filter(username=DEMO_ADMIN).first()
    if task is None or admin is None:
        stdout.write(f"  skipped: {DEMO_TASK} or {DEMO_ADMIN} is missing\n")
        return None
    return task, admin


def seed_prompt_versions(stdout: TextIO) -> None:
    """Compile nda-demo's approved rule set as adam (an unchanged set keeps its version)."""
    found = _task_and_admin(stdout)
    if found is None:
        return
    task, admin = found
    if not ruleset_rules(task):
        stdout.write(f"  skipped: {DEMO_TASK} has no approved rules to compile\n")
        return
    version, created = prompt_version_compile(task=task, user=admin, reason="Demo compilation")
    state = "compiled" if created else "unchanged rule set, kept"
    stdout.write(
        f"  {state} {version}: {version.entries.count()} rules, {version.token_count} tokens, "
        f"sha256 {version.sha256[:12]}…\n"
    )


def seed_promotion(stdout: TextIO) -> None:
    """Promote nda-demo's newest version to production as adam, and give adam a demo API token once."""
    found = _task_and_admin(stdout)
    if found is None:
        return
    task, admin = found
    version = task.prompt_versions.order_by("-number").first()  # type: ignore[attr-defined]
    if version is None:
        stdout.write(f"  skipped: {DEMO_TASK} has no prompt version\n")
    elif version.status == PromptVersion.Status.PRODUCTION:
        stdout.write(f"  {version} is already in production\n")
    else:
        try:
            with signing():  # a refused promotion leaves no signature behind
                signature = signature_sign(
                    user=admin, password=demo_password(admin.username), meaning=promotion_meaning(version),
                    reason=PROMOTION_REASON, content_sha256=prompt_version_content_sha256(version.text),
                )
                promotion = prompt_version_promote(
                    prompt_version=version, user=admin, reason=PROMOTION_REASON, signature=signature
                )
        except ValidationError as exc:
            stdout.write(f"  {version} was not promoted: {' '.join(exc.messages)}\n")
        else:
            f1 = promotion.gate.get("candidate_macro_f1")
            stdout.write(f"  promoted {version} to production (test macro-F1 {f1:.3f})\n" if f1 is not None
                         else f"  promoted {version} to production\n")
    if ApiToken.objects.filter(user=admin, name=DEMO_TOKEN_NAME, revoked_at__isnull=True).exists():
        stdout.write(f"  {DEMO_ADMIN} already has an API token named {DEMO_TOKEN_NAME!r} (its value was shown "
                     "when it was created; make another on /api-tokens/)\n")
        return
    _token, raw = api_token_create(user=admin, name=DEMO_TOKEN_NAME, created_by=admin)
    stdout.write(f"  API token for {DEMO_ADMIN} (shown this once): {raw}\n")
    stdout.write(
        # scripts/demo says where it serves the app; seed_demo run by hand assumes runserver's default.
        f"  try: curl -s -X POST {os.environ.get('PLD_DEMO_BASE_URL', 'http://127.0.0.1:8000')}"
        f"/api/v1/tasks/{DEMO_TASK}/classify "
        f"-H 'Authorization: Bearer {raw}' -H 'Content-Type: application/json' "
        """-d '{"premise": "The Recipient may share Confidential Information with its employees.", """
        """"hypothesis": "The receiving party may share confidential information with its employees."}'\n"""
    )
