"""Demo steps: compile nda-demo's approved rules once; after the evaluations, put that version in production
once (through the gate, or by a recorded two-Admin override that says why) and issue a token.

The demo tells its story once. On a later run these steps add nothing: they never compile a rule
set reviewers have changed since, never evaluate or promote a version the demo did not make, and
never promote past a production version or a promotion history that already exists.
"""
from __future__ import annotations

from typing import TextIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from evaluation.demo.users import demo_password
from evaluation.models import ApiToken, Promotion, PromotionOverride
from evaluation.production.api_tokens import api_token_create
from evaluation.release.promotion import (
    production_prompt_version,
    promotion_gate,
    promotion_meaning,
    promotion_override_confirm,
    promotion_override_request,
    prompt_version_promote,
)
from pldreview.models import Signature
from pldreview.signatures import Meaning, e_signing, prompt_version_content_sha256, signature_sign
from rules.models import PromptVersion, Task
from rules.prompts.compiler import prompt_version_compile
from rules.review.services import ruleset_rules

DEMO_TASK = "nda-demo"
DEMO_ADMIN = "adam"
# The second Admin, who confirms the demo's override of the gate (four eyes).
DEMO_SECOND_ADMIN = "alex"
DEMO_TOKEN_NAME = "demo"
DEMO_VERSION = 1
PROMOTION_REASON = "Demo: the first reviewed rule set, evaluated on the test split, goes to production."
OVERRIDE_JUSTIFICATION = (
    "Demo model at chance: the bundled 270M student does not beat the baselines or follow its rules better "
    "than chance, so this gate fails honestly. The demo needs a production version to show the API and the "
    "report; no real decisions are made with it."
)


def _task_and_admin(stdout: TextIO) -> tuple[Task, User] | None:
    """Return the demo task and admin, or say which is missing and return None."""
    task = Task.objects.filter(name=DEMO_TASK).first()
    admin = User.objects.filter(username=DEMO_ADMIN).first()
    if task is None or admin is None:
        stdout.write(f"  skipped: {DEMO_TASK} or {DEMO_ADMIN} is missing\n")
        return None
    return task, admin


def demo_version(task: Task) -> PromptVersion | None:
    """Return the version the demo compiled (the task's first), which is the only one its steps act on."""
    return PromptVersion.objects.filter(task=task, number=DEMO_VERSION).first()


def seed_prompt_versions(stdout: TextIO) -> None:
    """Compile nda-demo's approved rule set as adam once; later runs leave the versions to people."""
    found = _task_and_admin(stdout)
    if found is None:
        return
    task, admin = found
    existing = demo_version(task)
    if existing is not None:
        stdout.write(
            f"  {existing} is the demo's version and is already compiled; the demo compiles nothing else "
            "(compile later rule sets on the prompt versions page)\n"
        )
        return
    if not ruleset_rules(task):
        stdout.write(f"  skipped: {DEMO_TASK} has no approved rules to compile\n")
        return
    version, _created = prompt_version_compile(task=task, user=admin, reason="Demo compilation")
    stdout.write(
        f"  compiled {version}: {version.entries.count()} rules, {version.token_count} tokens, "
        f"sha256 {version.sha256[:12]}…\n"
    )


def _sign(user: User, meaning: str, version: PromptVersion) -> Signature:
    """Sign as a demo user with their demo password, over the version's text."""
    return signature_sign(
        user=user, password=demo_password(user.username), meaning=meaning, reason=PROMOTION_REASON,
        content_sha256=prompt_version_content_sha256(version.text),
    )


def _promote_demo_version(stdout: TextIO, version: PromptVersion, admin: User) -> None:
    # adam's first gating of nda-demo freezes its test split (on the ledger, shown on the gate page).
    gate = promotion_gate(prompt_version=version, user=admin)
    if gate.passed:
        signature = _sign(admin, promotion_meaning(version), version)
        promotion = prompt_version_promote(
            prompt_version=version, user=admin, reason=PROMOTION_REASON, signature=signature
        )
        stdout.write(f"  the gate passes: promoted {version} to production (test macro-F1 "
                     f"{promotion.gate.get('candidate_macro_f1'):.3f})\n")
        return
    stdout.write(f"  the gate fails for {version}:\n")
    for problem in gate.problems:
        stdout.write(f"    - {problem}\n")
    second = User.objects.filter(username=DEMO_SECOND_ADMIN).first()
    if second is None:
        stdout.write(f"  not promoted: the second Admin {DEMO_SECOND_ADMIN} is missing to confirm an override\n")
        return
    override = PromotionOverride.objects.filter(
        prompt_version=version, status=PromotionOverride.Status.PENDING
    ).first() or promotion_override_request(
        prompt_version=version, user=admin, reason=PROMOTION_REASON, justification=OVERRIDE_JUSTIFICATION,
        signature=_sign(admin, Meaning.GATE_OVERRIDE_REQUESTED, version),
    )
    promotion = promotion_override_confirm(
        override=override, user=second, signature=_sign(second, Meaning.GATE_OVERRIDE_CONFIRMED, version)
    )
    stdout.write(
        f"  {version} went to production by a recorded override: requested by {override.requested_by}, "
        f"confirmed by {promotion.promoted_by} (“{OVERRIDE_JUSTIFICATION[:40]}…”)\n"
    )


def seed_promotion(stdout: TextIO) -> None:
    """Put the demo's version into production once (gate or two-Admin override); give adam a demo token once."""
    found = _task_and_admin(stdout)
    if found is None:
        return
    task, admin = found
    version = demo_version(task)
    production = production_prompt_version(task)
    if version is None:
        stdout.write(f"  skipped: {DEMO_TASK} has no prompt version\n")
    elif production is not None:
        stdout.write(f"  {production} is already in production; the demo promotes nothing\n")
    elif Promotion.objects.filter(task=task).exists():
        stdout.write(f"  {DEMO_TASK} already has a promotion history; the demo promotes nothing\n")
    elif not version.evaluation_runs.exists():  # type: ignore[attr-defined]
        stdout.write(f"  {version} was not promoted: it has no evaluation yet (run the evaluations step)\n")
    else:
        try:
            with e_signing():  # a refused promotion leaves no signature behind
                _promote_demo_version(stdout, version, admin)
        except ValidationError as exc:
            stdout.write(f"  {version} was not promoted: {' '.join(exc.messages)}\n")
    if ApiToken.objects.filter(user=admin, name=DEMO_TOKEN_NAME, revoked_at__isnull=True).exists():
        stdout.write(f"  {DEMO_ADMIN} already has an API token named {DEMO_TOKEN_NAME!r} (its value was shown "
                     "when it was created; make another on /api-tokens/)\n")
        return
    _token, raw = api_token_create(user=admin, name=DEMO_TOKEN_NAME, created_by=admin)
    stdout.write(f"  API token for {DEMO_ADMIN} (shown this once): {raw}\n")
    stdout.write(
        # scripts/demo says where it serves the app; seed_demo run by hand assumes runserver's default.
        f"  try: curl -s -X POST {settings.PLD_DEMO_BASE_URL}"
        f"/api/v1/tasks/{DEMO_TASK}/classify "
        f"-H 'Authorization: Bearer {raw}' -H 'Content-Type: application/json' "
        """-d '{"premise": "The Recipient may share Confidential Information with its employees.", """
        """"hypothesis": "The receiving party may share confidential information with its employees."}'\n"""
    )
