"""The demo steps: compile nda-demo once, promote it once evaluated, and issue adam's demo token once."""
from __future__ import annotations

import io

from evaluation.demo_prompts import seed_promotion, seed_prompt_versions
from evaluation.models import ApiToken, Promotion
from rules.demo import demo_password
from rules.models import PromptVersion
from tests.support.prompt_versions import approve_all, finished_run


def _run(step) -> str:
    out = io.StringIO()
    step(out)
    return out.getvalue()


def test_without_approved_rules_the_steps_say_so(task, admin_user) -> None:
    assert "no approved rules" in _run(seed_prompt_versions)
    assert "no prompt version" in _run(seed_promotion)
    assert not PromptVersion.objects.exists()


def test_the_steps_compile_promote_and_issue_a_token_once(task, admin_user, second_reviewer) -> None:
    # The demo signs the promotion as adam with his demo password.
    admin_user.set_password(demo_password("adam"))
    admin_user.save()
    approve_all(task, second_reviewer)
    assert "compiled nda-demo v1" in _run(seed_prompt_versions)
    assert "unchanged rule set" in _run(seed_prompt_versions)
    version = PromptVersion.objects.get()
    blocked = _run(seed_promotion)
    assert "was not promoted" in blocked and "(shown this once): pld_" in blocked
    finished_run(version, 0.5)
    promoted = _run(seed_promotion)
    assert "promoted nda-demo v1 to production" in promoted and "already has an API token" in promoted
    assert Promotion.objects.get().signature.meaning == "promoted"
    again = _run(seed_promotion)
    assert "already in production" in again
    assert Promotion.objects.count() == 1
    assert ApiToken.objects.filter(user=admin_user, name="demo").count() == 1
