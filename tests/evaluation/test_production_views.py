"""The production page, its export, the logged decisions and feedback into the feedback split."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from evaluation.models import ClassifyCall, DecisionFeedback
from evaluation.production.decision_log import PURGED, decision_feedback_give, decisions_purge, inputs_sha256
from evaluation.production.drift import population_stability_index, production_watch
from pldreview.models import LedgerEntry
from rules.models import Example, Split
from tests.support.factories import NDA_ROWS, ClassifyCallFactory, add_examples
from tests.support.prompt_versions import approve_all, compiled, finished_run, promote_by_override

INPUTS = {"premise": "The Recipient may keep one archival copy.", "hypothesis": "The party must destroy all copies."}


@pytest.fixture
def version(task, admin_user, second_admin, second_reviewer):
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    examples = add_examples(task, NDA_ROWS, split="test")
    # The gate predicted each label equally often.
    finished_run(version, 0.7, predictions=[(ex, ex.gold_label) for ex in examples])
    promote_by_override(version, admin=admin_user, second_admin=second_admin)
    return version


def _log(version, *, label="Entailment", top=0.8, days_ago=0.0, inputs=INPUTS, retention="full") -> ClassifyCall:
    return ClassifyCallFactory(
        prompt_version=version, created_at=timezone.now() - timedelta(days=days_ago), label=label,
        top_probability=top, input_retention=retention, inputs=inputs if retention != "hash" else {},
        input_sha256=inputs_sha256(inputs),
    )


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    labels = ["A", "B", "C"]
    even = {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    assert population_stability_index(even, even, labels) == pytest.approx(0.0)
    moved = {"A": 0.8, "B": 0.1, "C": 0.1}
    # (0.8-1/3)ln(2.4) + 2 (0.1-1/3)ln(0.3)
    assert population_stability_index(even, moved, labels) == pytest.approx(0.9700, abs=1e-3)
    assert population_stability_index(even, {"A": 1.0}, labels) > population_stability_index(even, moved, labels)


def test_the_watch_alerts_on_a_day_whose_labels_moved(version, settings) -> None:
    settings.PLD_DRIFT_MIN_CALLS = 10
    for _ in range(10):  # two days ago: everything Entailment
        _log(version, label="Entailment", days_ago=2)
    for label in ["Entailment", "Contradiction", "NotMentioned"] * 4:  # today: like the gate
        _log(version, label=label)
    _log(version, label="Contradiction", days_ago=1)  # too few calls to judge
    watch = production_watch(task=version.task)
    assert watch.reference == pytest.approx({"Entailment": 1 / 3, "Contradiction": 1 / 3, "NotMentioned": 1 / 3})
    assert [day.calls for day in watch.days] == [10, 1, 12]
    assert watch.days[1].psi is None and watch.days[2].psi == pytest.approx(0.0)
    assert watch.alerts == [watch.days[0]] and watch.days[0].psi > settings.PLD_DRIFT_PSI_THRESHOLD


def test_the_production_page_shows_charts_table_and_alert_to_auditors(client, auditor, version, settings,
                                                                        django_assert_max_num_queries) -> None:
    settings.PLD_DRIFT_MIN_CALLS = 5
    for _ in range(6):
        _log(version, label="NotMentioned", top=0.5)
    client.force_login(auditor)
    with django_assert_max_num_queries(15):
        response = client.get("/tasks/nda-demo/production/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    assert '<title>Calls per latency bucket</title>' in html
    assert '<title>Calls per day</title>' in html and 'role="img" aria-label="Calls per day: 6 calls' in html
    assert "The label distribution has moved" in html and 'role="alert"' in html
    assert "<td class=\"num\">0.500</td>" in html  # mean top probability in the table


def test_reviewers_do_not_watch_production_but_see_logged_decisions(client, reviewer, version) -> None:
    call = _log(version)
    client.force_login(reviewer)
    assert client.get("/tasks/nda-demo/production/").status_code == 403
    assert client.get("/tasks/nda-demo/production/export.csv").status_code == 403
    response = client.get("/tasks/nda-demo/calls/")
    assert response.status_code == 200 and str(call.request_id)[:8] in response.content.decode()


def test_a_decision_without_feedback_says_who_may_give_it(client, admin_user, version) -> None:
    call = _log(version)
    client.force_login(admin_user)
    page = client.get(f"/calls/{call.pk}/").content.decode()
    assert "Reviewers can mark it wrong on this page" in page
    assert f'action="/calls/{call.pk}/feedback/"' not in page


def test_the_filters_narrow_the_export(client, admin_user, version) -> None:
    old, new = _log(version, days_ago=3), _log(version, label="Contradiction")
    client.force_login(admin_user)
    today = timezone.localdate().isoformat()
    response = client.get(f"/tasks/nda-demo/production/export.csv?start={today}")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["request_id"] for row in rows] == [str(new.request_id)]
    assert json.loads(rows[0]["inputs"]) == INPUTS and rows[0]["prompt_sha256"] == version.sha256
    data = json.loads(b"".join(client.get("/tasks/nda-demo/production/export.json").streaming_content))
    assert {c["request_id"] for c in data["calls"]} == {str(old.request_id), str(new.request_id)}
    assert data["summary"]["psi_threshold"] == 0.2
    # The two days between are shown with no calls, not skipped.
    assert [d["calls"] for d in data["summary"]["days"]] == [1, 0, 0, 1]
    assert data["summary"]["days"][1]["mean_top_probability"] is None
    assert client.get("/tasks/nda-demo/production/?start=2030-01-02&end=2030-01-01").status_code == 200


def test_a_reviewer_marks_a_decision_wrong_and_it_becomes_a_feedback_example(client, reviewer, version) -> None:
    call = _log(version, label="Entailment")
    client.force_login(reviewer)
    response = client.post(f"/calls/{call.pk}/feedback/", {"correct_label": "Contradiction",
                                                            "reason": "Keeping a copy contradicts destroying all."})
    assert response.status_code == 302
    feedback = DecisionFeedback.objects.get()
    example = feedback.example
    assert (example.split, example.gold_label, example.inputs) == (Split.FEEDBACK, "Contradiction", INPUTS)
    assert example.source_ref == str(call.request_id)
    assert (feedback.given_by, feedback.prompt_version, feedback.logged_label) == (reviewer, version, "Entailment")
    entry = LedgerEntry.objects.get(event="decision_feedback.created")
    assert entry.actor == reviewer and "contradicts" in entry.payload
    page = client.get("/tasks/nda-demo/?split=feedback").content.decode()
    assert f"/examples/{example.pk}/" in page
    # On the record: a second statement on the same call is refused.
    with pytest.raises(ValidationError, match="already has feedback"):
        decision_feedback_give(call=call, correct_label="NotMentioned", reason="x", user=reviewer)


def test_feedback_needs_a_different_label_a_reason_and_kept_text(client, reviewer, auditor, version) -> None:
    call = _log(version)
    hashed = _log(version, retention="hash")
    client.force_login(reviewer)
    assert client.post(f"/calls/{call.pk}/feedback/", {"correct_label": "Contradiction", "reason": " "}
                       ).status_code == 400
    assert client.post(f"/calls/{call.pk}/feedback/", {"correct_label": "Entailment", "reason": "x"}
                       ).status_code == 400
    response = client.post(f"/calls/{hashed.pk}/feedback/", {"correct_label": "Contradiction", "reason": "x"})
    assert response.status_code == 400 and "only a hash" in response.content.decode()
    client.force_login(auditor)
    assert client.post(f"/calls/{call.pk}/feedback/", {"correct_label": "Contradiction", "reason": "x"}
                       ).status_code == 403
    assert not Example.objects.filter(split=Split.FEEDBACK).exists()


def test_a_feedback_example_follows_its_calls_retention(reviewer, version) -> None:
    call = _log(version, days_ago=40)
    feedback = decision_feedback_give(call=call, correct_label="Contradiction", reason="Copy kept", user=reviewer)
    facts = decisions_purge(older_than_days=30, actor=None)
    assert facts["calls_deleted"] == 1 and facts["feedback_examples_blanked"] == 1
    feedback.refresh_from_db()
    example = Example.objects.get(pk=feedback.example_id)
    assert set(example.inputs.values()) == {PURGED} and example.gold_label == "Contradiction"
    assert feedback.call is None and feedback.request_id == call.request_id


def test_a_logged_decision_and_its_feedback_cannot_be_changed_by_any_door(reviewer, version) -> None:
    from django.db import DatabaseError, connection, transaction

    refused = DatabaseError  # SQLite: IntegrityError; PostgreSQL: the trigger's exception
    call = _log(version)
    feedback = decision_feedback_give(call=call, correct_label="Contradiction", reason="Copy kept", user=reviewer)
    call.label = "Contradiction"
    with pytest.raises(refused), transaction.atomic():
        call.save()
    with pytest.raises(refused), transaction.atomic():
        ClassifyCall.objects.filter(pk=call.pk).update(top_probability=0.99)
    # Nor can anyone make a server's approximate decision look exact, or in-process, after the fact.
    with pytest.raises(refused), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE evaluation_classifycall SET approximation = '', student_backend = 'llama_cpp'")
    with pytest.raises(refused), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE evaluation_decisionfeedback SET correct_label = 'NotMentioned'")
    # The signature, once the signing service gives one, may be added.
    DecisionFeedback.objects.filter(pk=feedback.pk).update(signature_ref="signature:1")
    call.refresh_from_db()
    feedback.refresh_from_db()
    assert (call.label, feedback.correct_label, feedback.signature_ref) == ("Entailment", "Contradiction",
                                                                            "signature:1")


def test_an_admin_sets_a_tasks_retention_with_a_reason_and_auditors_cannot(client, admin_user, auditor, task) -> None:
    from evaluation.models import DecisionLogPolicy
    from evaluation.production.decision_log import decision_policy

    client.force_login(auditor)
    assert client.post("/tasks/nda-demo/production/retention/", {"input_retention": "hash", "reason": "x"}
                       ).status_code == 403
    assert 'action="/tasks/nda-demo/production/retention/"' not in client.get("/tasks/nda-demo/production/"
                                                                              ).content.decode()
    client.force_login(admin_user)
    assert client.post("/tasks/nda-demo/production/retention/", {"input_retention": "hash", "reason": ""}
                       ).status_code == 400
    response = client.post("/tasks/nda-demo/production/retention/",
                           {"input_retention": "hash", "retention_days": 90, "reason": "Inputs hold personal data"})
    assert response.status_code == 302
    assert decision_policy(task) == ("hash", 90)
    policy = DecisionLogPolicy.objects.get(task=task)
    assert policy.history.get().history_user == admin_user
    assert LedgerEntry.objects.filter(event="decisionlogpolicy.created", actor=admin_user).exists()
