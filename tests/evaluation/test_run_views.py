"""Evaluation pages: list, start form, results with heatmap and failures, live progress, cancel/resume, compare."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from evaluation.models import EvaluationRun, Prediction
from evaluation.runs.execution import evaluation_run_finish
from pldreview.models import Job
from rules.models import Example, Task
from tests.support.factories import add_examples


def _login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def _run(task: Task, examples: list[Example], decided: list[str], **fields: Any) -> EvaluationRun:
    """Build a finished run whose predictions are the given labels, with its metrics computed for real."""
    run = EvaluationRun.objects.create(
        task=task, mode=fields.pop("mode", "zero-shot"), model_path="/models/x.gguf", model_sha256="a" * 64,
        model_name="Gemma 3 270m", quantization="Q4_K_M", n_examples=len(examples), prompt_text="Rules here.",
        status=fields.pop("status", EvaluationRun.Status.FINISHED), options={"example_ids": [e.pk for e in examples]},
        **fields,
    )
    for example, label in zip(examples, decided, strict=False):
        Prediction.objects.create(
            run=run, example=example, label=label, probabilities={label: 0.9} if label else {},
            correct=label == example.gold_label, latency_ms=12.5, prompt_tokens=40, tokens_processed=30,
        )
    evaluation_run_finish(run=run)
    run.save()
    return run


@pytest.fixture
def examples(task: Task) -> list[Example]:
    rows = [(f"Clause {i} about confidentiality.", f"Hypothesis {i}.", label)
            for i, label in enumerate(["Entailment", "Contradiction", "NotMentioned"] * 4)]
    return add_examples(task, rows)


# --- list -------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, db: None) -> None:
    response = client.get("/evaluations/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_user_without_a_role_is_forbidden(client: Client, outsider: Any) -> None:
    assert _login(client, outsider).get("/evaluations/").status_code == 403


def test_the_list_shows_each_run_with_its_macro_f1(
    client: Client, reviewer: Any, task: Task, examples: list[Example], django_assert_max_num_queries: Any
) -> None:
    for _ in range(3):
        _run(task, examples, [e.gold_label for e in examples])
    _login(client, reviewer)
    with django_assert_max_num_queries(8):
        response = client.get("/evaluations/")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count("1.000") == 3
    assert "Start an evaluation" not in body  # reviewers read, admins start


def test_the_list_has_a_clear_empty_state(client: Client, admin_user: Any, task: Task) -> None:
    body = _login(client, admin_user).get("/evaluations/?task=nda-demo").content.decode()
    assert "No evaluation runs for this task yet" in body
    assert 'href="/evaluations/start/?task=nda-demo"' in body


# --- start ------------------------------------------------------------------------------------


def test_only_admins_may_start_a_run(client: Client, reviewer: Any, auditor: Any) -> None:
    assert _login(client, reviewer).get("/evaluations/start/").status_code == 403
    assert _login(client, auditor).post("/evaluations/start/", {"task": "x"}).status_code == 403


def test_the_start_form_explains_a_missing_rules_prompt(
    client: Client, admin_user: Any, task: Task, examples: list[Example]
) -> None:
    response = _login(client, admin_user).post(
        "/evaluations/start/", {"task": task.name, "mode": "pld", "split": "test", "seed": 0, "k_shot": 4}
    )
    assert response.status_code == 200
    assert "A pld run needs a prompt version or a pasted rules prompt." in response.content.decode()
    assert not EvaluationRun.objects.exists()


def test_the_start_form_reports_a_split_without_examples(
    client: Client, admin_user: Any, task: Task, examples: list[Example]
) -> None:
    response = _login(client, admin_user).post(
        "/evaluations/start/", {"task": task.name, "mode": "zero-shot", "split": "dev", "seed": 0, "k_shot": 4}
    )
    assert response.status_code == 200
    assert "no examples in its dev split" in response.content.decode()


def test_starting_a_run_queues_its_job_and_opens_its_page(
    client: Client, admin_user: Any, task: Task, examples: list[Example]
) -> None:
    response = _login(client, admin_user).post(
        "/evaluations/start/",
        {"task": task.name, "mode": "pld", "split": "test", "seed": 1, "k_shot": 4, "limit": 5,
         "prompt_text": "1. If the clause forbids it, the label is Contradiction."},
    )
    run = EvaluationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/evaluations/{run.pk}/"
    assert run.status == EvaluationRun.Status.QUEUED and run.n_examples == 5 and run.created_by == admin_user
    assert Job.objects.get(pk=run.job_id).params == {"run_id": run.pk}


# --- results ----------------------------------------------------------------------------------


def test_the_results_page_shows_the_metrics_and_a_readable_confusion_matrix(
    client: Client, reviewer: Any, task: Task, examples: list[Example]
) -> None:
    decided = [e.gold_label for e in examples[:9]] + ["Entailment", "Entailment", ""]
    run = _run(task, examples, decided)
    body = _login(client, reviewer).get(f"/evaluations/{run.pk}/").content.decode()
    assert "Macro-F1" in body and "95% CI" in body
    assert 'class="eval-confusion"' in body
    assert "heat-10 diag" in body  # all Entailment examples decided Entailment
    assert 'title="4 of 4 Entailment examples decided Entailment (100%)"' in body
    assert "1 example did not fit" in body
    assert "refused" in body
    assert "Gemma 3 270m" in body and "Q4_K_M" in body


def test_failures_show_their_inputs_and_are_paginated(
    client: Client, reviewer: Any, task: Task, db: None
) -> None:
    rows = [(f"Clause number {i}.", f"Hypothesis number {i}.", "Entailment") for i in range(25)]
    many = add_examples(task, rows)
    run = _run(task, many, ["Contradiction"] * 25)
    _login(client, reviewer)
    first = client.get(f"/evaluations/{run.pk}/").content.decode()
    assert "25 examples decided wrongly or refused" in first and "page 1 of 2" in first
    assert "Clause number 0." in first and "Clause number 24." not in first
    fragment = client.get(f"/evaluations/{run.pk}/?part=failures&page=2", HTTP_HX_REQUEST="true")
    text = fragment.content.decode()
    assert "Clause number 24." in text and "<html" not in text and 'id="run-failures"' in text


def test_a_running_run_polls_its_progress_as_a_fragment(
    client: Client, reviewer: Any, task: Task, examples: list[Example]
) -> None:
    run = _run(task, examples[:3], ["Entailment"] * 3, status=EvaluationRun.Status.RUNNING)
    run.n_examples = 12
    run.save()
    _login(client, reviewer)
    page = client.get(f"/evaluations/{run.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "3 of 12 examples decided" in page
    fragment = client.get(f"/evaluations/{run.pk}/?part=progress", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode() and "3 of 12" in fragment.content.decode()
    # The heading's badge comes with each poll (out of band), so it says what the progress bar shows.
    assert '<span id="run-status" class="badge badge-running" hx-swap-oob="true">Running</span>' in (
        fragment.content.decode()
    )
    assert page.count('id="run-status"') == 1 and "hx-swap-oob" not in page
    run.status = EvaluationRun.Status.FINISHED
    run.save()
    done = client.get(f"/evaluations/{run.pk}/?part=progress", HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and done["HX-Refresh"] == "true"  # stop polling, show the results


def test_an_adherence_warning_is_shown_prominently(
    client: Client, reviewer: Any, task: Task, examples: list[Example]
) -> None:
    run = _run(task, examples, [e.gold_label for e in examples], mode="pld")
    run.adherence = {"n": 12, "chance": 0.3333, "rule_adherence": 0.1, "swap": {}, "warning": "Not better than chance."}
    run.rule_adherence = 0.1
    run.save()
    body = _login(client, reviewer).get(f"/evaluations/{run.pk}/").content.decode()
    assert 'role="alert"><strong>Rule adherence warning.</strong> Not better than chance.' in body


# --- cancel and resume ------------------------------------------------------------------------


def test_reviewers_cannot_cancel_a_run(client: Client, reviewer: Any, task: Task, examples: list[Example]) -> None:
    run = _run(task, examples, [], status=EvaluationRun.Status.QUEUED)
    assert _login(client, reviewer).post(f"/evaluations/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.QUEUED


def test_an_admin_cancels_then_resumes_a_run(
    client: Client, admin_user: Any, task: Task, examples: list[Example]
) -> None:
    run = _run(task, examples, [], status=EvaluationRun.Status.QUEUED)
    _login(client, admin_user)
    assert client.post(f"/evaluations/{run.pk}/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.CANCELLED
    page = client.get(f"/evaluations/{run.pk}/").content.decode()
    assert f'action="/evaluations/{run.pk}/resume/"' in page
    assert client.post(f"/evaluations/{run.pk}/resume/").status_code == 302
    run.refresh_from_db()
    assert run.status == EvaluationRun.Status.QUEUED and run.job is not None


def test_resuming_a_finished_run_is_refused_with_a_message(
    client: Client, admin_user: Any, task: Task, examples: list[Example]
) -> None:
    run = _run(task, examples, [e.gold_label for e in examples])
    response = _login(client, admin_user).post(f"/evaluations/{run.pk}/resume/", follow=True)
    assert "nothing to resume" in response.content.decode()


# --- compare ----------------------------------------------------------------------------------


def test_compare_shows_metric_changes_and_flipped_examples(
    client: Client, auditor: Any, task: Task, examples: list[Example]
) -> None:
    gold = [e.gold_label for e in examples]
    before = _run(task, examples, ["Entailment"] * 12)
    after = _run(task, examples, ["Contradiction"] + gold[1:], mode="pld")
    body = _login(client, auditor).get(f"/evaluations/compare/?a={before.pk}&b={after.pk}").content.decode()
    delta = round(after.metrics["macro_f1"] - before.metrics["macro_f1"], 4)
    assert f"+{delta}" in body and "delta-better" in body
    # Before, only the four Entailment examples were right; after, all but the first are.
    assert "Right → wrong (1)" in body
    assert "Wrong → right (8)" in body
    assert f"#{examples[0].pk}</a>" in body


def test_compare_without_a_choice_explains_what_to_do(client: Client, reviewer: Any, db: None) -> None:
    body = _login(client, reviewer).get("/evaluations/compare/").content.decode()
    assert "Pick a run before and a run after" in body


# --- how to reproduce: the prompt's hash against its version's -----------------------------------


def test_how_to_reproduce_shows_both_hashes_and_says_what_differs(
    client: Client, reviewer: Any, admin_user: Any, second_reviewer: Any, task: Task, examples: list[Example]
) -> None:
    import hashlib

    from evaluation.student.prompts import pld_rules
    from tests.support.prompt_versions import approve_all, compiled

    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    read = pld_rules(task=task, prompt_text=version.text)  # what a pld run gives the student
    run = _run(task, examples, [e.gold_label for e in examples], mode="pld", prompt_version=version,
               prompt_sha256=hashlib.sha256(read.encode()).hexdigest(), prompt_tokens=version.token_count - 1)
    run.prompt_text = read
    run.save()
    body = _login(client, reviewer).get(f"/evaluations/{run.pk}/").content.decode()
    assert version.sha256[:17] in body and run.prompt_sha256[:17] in body
    assert f"{version.token_count} tokens" in body and f"{version.token_count - 1} tokens" in body
    assert "without its leading and trailing whitespace (the final line break)" in body

    same = _run(task, examples, [e.gold_label for e in examples], mode="pld", prompt_version=version,
                prompt_sha256=version.sha256, prompt_tokens=version.token_count)
    same.prompt_text = version.text
    same.save()
    body = _login(client, reviewer).get(f"/evaluations/{same.pk}/").content.decode()
    assert "(the same as" in body and "prompt-difference" not in body


def test_the_results_page_says_whether_the_rules_prefix_was_restored_or_recomputed(
    client: Client, reviewer: Any, task: Task, examples: list[Example]
) -> None:
    labels = [e.gold_label for e in examples]
    restored = _run(task, examples, labels)
    restored.options = {**restored.options, "prefix": "restored"}
    restored.save()
    recomputed = _run(task, examples, labels)
    recomputed.options = {**recomputed.options, "prefix": "recomputed"}
    recomputed.save()
    _login(client, reviewer)
    body = client.get(f"/evaluations/{restored.pk}/").content.decode()
    assert "Rules prefix" in body and "restored from a saved state" in body
    body = client.get(f"/evaluations/{recomputed.pk}/").content.decode()
    assert "Rules prefix" in body and "recomputed by llama.cpp in this run" in body
