"""What reviewers and auditors stumbled on in the browser (issue 14), walked in headless Chromium."""
from __future__ import annotations

from tests.support.browser import BROWSER_MARKS, close_when_idle, log_in, wait_for_swapped_rule
from tests.support.factories import teacher_rule
from tests.support.signatures import sign_edit, sign_writing

pytestmark = BROWSER_MARKS


def test_a_skipped_rule_is_still_listed_and_the_tab_names_the_current_rule(
    browser, live_server, task, reviewer
) -> None:
    first = teacher_rule(task, text="If the clause lets staff see the information, then Entailment", support=9)
    second = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    context, page = log_in(browser, live_server, "rita", f"/rules/{first.pk}/")
    assert page.title().startswith(f"Rule {first.pk} ")
    page.keyboard.press("j")  # skip the first rule
    wait_for_swapped_rule(page, second)
    assert page.title().startswith(f"Rule {second.pk} ")

    page.keyboard.press("r")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'reject-reason'")
    page.keyboard.type("Sharing alone says nothing about who may see it")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-rita")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".nothing-left")
    text = page.locator(".nothing-left").inner_text()
    assert "Nothing left to review" not in text
    assert "1 rule still pending for you" in text
    assert "Rule " not in page.title()

    page.click(".nothing-left a")
    page.wait_for_selector("[data-queue-row]")
    assert first.text in page.locator(".queue-table").inner_text()
    close_when_idle(context, page)


def test_a_reviewer_whose_edit_waits_is_told_so_plainly(browser, live_server, task, reviewer) -> None:
    rule = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    context, page = log_in(browser, live_server, "rita", f"/rules/{rule.pk}/")
    page.keyboard.press("e")
    page.fill("#edit-text", "If the clause lets the recipient share it with its employees, then Entailment")
    page.fill("#edit-reason", "Say with whom")
    page.fill("#edit-password", "pw-rita")
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector(".nothing-left")
    text = page.locator(".nothing-left").inner_text()
    assert "Nothing left to review" not in text
    assert "Nothing left for you to decide" in text and "wait" in text and "another reviewer" in text
    close_when_idle(context, page)


def test_the_history_page_keeps_its_tables_apart_and_its_reasons_whole(browser, live_server, task, reviewer) -> None:
    from rules.review.services import rule_create

    reason = "Covers a gap the teacher missed: " + " ".join(["confidentiality-obligations-survive-termination"] * 6)
    text = "If " + "the recipient keeps it secret " * 12 + ", then Entailment"
    rule = rule_create(task=task, user=reviewer, text=text, label="Entailment", reason=reason,
                       signature=sign_writing(reviewer, text=text, label="Entailment"))
    context, page = log_in(browser, live_server, "rita", f"/rules/{rule.pk}/history/")
    boxes = [page.locator(f"#{name}").bounding_box() for name in ("decisions", "revisions", "records")]
    for upper, lower in zip(boxes, boxes[1:], strict=False):
        assert upper["y"] + upper["height"] <= lower["y"]
    main = page.locator("main").bounding_box()
    for name in ("decisions", "revisions", "records"):
        scroller = page.locator(f"#{name}").locator("xpath=..").bounding_box()
        assert scroller["x"] + scroller["width"] <= main["x"] + main["width"] + 1
    # The reason wraps between words: every line break falls on a space, never inside a word.
    cell = page.locator("#decisions td.why").first
    assert page.evaluate("el => getComputedStyle(el).wordBreak", cell.element_handle()) == "normal"
    assert cell.inner_text() == reason
    assert page.locator("#decisions [data-action=create]").inner_text().count("Written by hand") == 1
    records = page.locator("#records tbody tr")
    assert records.count() == 1 and "Created: " in records.first.inner_text()
    close_when_idle(context, page)


def test_a_second_reviewer_sees_the_revision_waiting_for_her(
    browser, live_server, task, reviewer, second_reviewer
) -> None:
    from rules.review.services import rule_edit

    rule = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned", support=5)
    edited = "If the clause lets the recipient share it with employees, then Entailment"
    rule_edit(rule=rule, user=reviewer, lock_version=rule.lock_version, reason="Say with whom",
              text=edited, label="Entailment", topic="", precedence_note="",
              signature=sign_edit(reviewer, text=edited, label="Entailment"))
    context, page = log_in(browser, live_server, "ravi", "/")
    page.wait_for_selector("#waiting-badge [data-waiting='2']")
    # A new revision appears: the next poll (started here instead of waiting 30 s) says it is new.
    teacher_rule(task, text="If the clause names advisers, then NotMentioned", label="NotMentioned", support=3)
    page.evaluate("htmx.ajax('GET', '/review/waiting/badge/', {source: '#waiting-badge', target: '#waiting-badge'})")
    page.wait_for_selector("#waiting-badge:has-text('1 new')")
    assert page.locator("#waiting-badge [data-waiting]").get_attribute("data-waiting") == "3"
    page.click("main a:has-text('rules awaiting review')")  # the dashboard's count was drawn at load
    page.wait_for_url("**/review/")
    page.click("text=Waiting for me")
    page.wait_for_url("**/review/waiting/")
    assert "If the clause lets the recipient share it with employees" in page.locator("#waiting").inner_text()
    close_when_idle(context, page)

    # rita wrote that revision: it waits for someone else, not for her.
    context, page = log_in(browser, live_server, "rita", "/review/waiting/")
    page.wait_for_selector("#waiting-badge [data-waiting='2']")  # the long-clause and the advisers rules
    assert "share it with employees" not in page.locator("main").inner_text()
    assert "NotMentioned" in page.locator("#waiting").inner_text()
    close_when_idle(context, page)


def test_access_denied_has_the_menu_an_explanation_and_a_way_back(browser, live_server, task, auditor) -> None:
    context, page = log_in(browser, live_server, "aude", "/review/")
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    response = page.goto(f"{live_server.url}/rules/new/", referer=f"{live_server.url}/review/")
    assert response.status == 403
    assert page.locator("nav[aria-label=Main] a", has_text="Tasks").count() == 1
    assert "Access denied" in page.title()
    text = page.locator("main").inner_text()
    assert "Auditor" in text or "auditor" in text
    page.click("text=Back to the previous page")
    page.wait_for_url(f"{live_server.url}/review/")
    page.goto(f"{live_server.url}/rules/new/")
    assert page.locator("text=Back to the previous page").count() == 0
    page.click("text=Back to the overview")
    page.wait_for_url(f"{live_server.url}/")
    assert missing == []  # no favicon or other 404 on the way
    close_when_idle(context, page)


def test_a_new_token_has_a_copy_button_and_revoking_asks_first(browser, live_server, admin_user) -> None:
    from evaluation.models import ApiToken

    context, page = log_in(browser, live_server, admin_user.username, "/api-tokens/")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.fill("#id_name", "contract intake")
    page.click("text=Create token")
    page.wait_for_selector("#raw-token")
    raw = page.locator("#raw-token").inner_text().strip()
    page.click("[data-copy=raw-token]")
    page.wait_for_selector(".copy-status:has-text('Copied.')")
    assert page.evaluate("navigator.clipboard.readText()") == raw

    page.goto(f"{live_server.url}/api-tokens/")
    page.click("text=Revoke…")
    page.wait_for_selector("text=Revoke the token “contract intake”?")
    assert ApiToken.objects.get().revoked_at is None
    page.click("text=Keep it")
    page.wait_for_url("**/api-tokens/")
    assert ApiToken.objects.get().revoked_at is None
    page.click("text=Revoke…")
    page.fill("#id_password", "pw-adam")
    page.click("button:has-text('Sign and revoke the token')")
    page.wait_for_selector("text=Revoked token")
    assert ApiToken.objects.get().revoked_at is not None
    close_when_idle(context, page)


def test_search_finds_a_rule_by_a_word_of_its_reason(browser, live_server, task, reviewer, second_reviewer) -> None:
    from rules.review.services import rule_edit

    rule = teacher_rule(task, text="If the clause mentions sharing, then Entailment", support=7)
    teacher_rule(task, text="If the clause is long, then NotMentioned", label="NotMentioned", support=5)
    edited = "If the clause lets the recipient share with employees, then Entailment"
    rule_edit(rule=rule, user=second_reviewer, lock_version=rule.lock_version, reason="Advisers are a different case",
              text=edited, label="Entailment", topic="", precedence_note="",
              signature=sign_edit(second_reviewer, text=edited, label="Entailment"))
    context, page = log_in(browser, live_server, "rita", "/review/")
    page.fill("#f-q", "advisers")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('[data-queue-row]').length === 1")
    assert "share with employees" in page.locator(".queue-table").inner_text()
    assert "q=advisers" in page.url
    close_when_idle(context, page)


def test_a_hand_written_rule_offers_its_tasks_labels_and_cites_examples(browser, live_server, task, reviewer) -> None:
    from rules.models import Rule
    from tests.support.factories import example

    example(task, 1, premise="The recipient may share the plan with its staff.")
    example(task, 2, premise="Staff of affiliates may see it.")
    context, page = log_in(browser, live_server, "rita", "/review/")
    page.click("text=Write a rule")
    page.wait_for_selector("#id_label")
    labels = page.locator("#id_label option").all_inner_texts()
    assert labels == task.label_names
    page.fill("#id_text", "If staff may see it, then Entailment")
    page.fill("#find-examples", "staff")
    page.keyboard.press("Enter")
    page.wait_for_selector(".found-examples input[type=checkbox]")
    assert page.input_value("#id_text") == "If staff may see it, then Entailment"
    for box in page.locator(".found-examples input[type=checkbox]").all():
        box.check()
    page.fill("#id_password", "pw-rita")
    page.click("text=Sign and save the rule")
    page.wait_for_selector("article[data-rule-id]")
    rule = Rule.objects.get()
    assert rule.support == 2
    assert "2 examples" in page.locator("article.rule").inner_text()
    close_when_idle(context, page)


def test_a_runs_status_badge_follows_its_progress(browser, live_server, task, reviewer) -> None:
    from evaluation.models import EvaluationRun, Prediction
    from tests.support.factories import add_examples

    examples = add_examples(task, [(f"Clause {i}.", f"Hypothesis {i}.", "Entailment") for i in range(4)])
    run = EvaluationRun.objects.create(
        task=task, mode="zero-shot", model_path="/models/x.gguf", model_sha256="a" * 64, model_name="Gemma 3 270m",
        quantization="Q4_K_M", n_examples=4, prompt_text="Rules here.", status=EvaluationRun.Status.QUEUED,
        options={"example_ids": [e.pk for e in examples]},
    )
    context, page = log_in(browser, live_server, "rita", f"/evaluations/{run.pk}/")
    assert page.inner_text("#run-status") == "Queued"

    # A worker picks the run up and decides two examples; the open page polls every 2 s.
    EvaluationRun.objects.filter(pk=run.pk).update(status=EvaluationRun.Status.RUNNING)
    for e in examples[:2]:
        Prediction.objects.create(run=run, example=e, label="Entailment", probabilities={"Entailment": 0.9},
                                  correct=True, latency_ms=12.5, prompt_tokens=40, tokens_processed=30)
    page.wait_for_selector("#run-progress:has-text('2 of 4 examples decided')")
    assert page.inner_text("#run-status") == "Running"
    assert page.locator("#run-status").count() == 1
    close_when_idle(context, page)
