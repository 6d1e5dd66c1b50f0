"""Writing a rule by hand: only the chosen task's labels are offered, and the rule can cite examples."""
from __future__ import annotations

import pytest

from rules.models import Rule, Task
from tests.support.factories import example

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_task(db: None) -> Task:
    task = Task(name="escalation", title="Escalation", labels=[{"name": "Escalate"}, {"name": "Close"}],
                input_fields=["ticket"])
    task.full_clean()
    task.save()
    return task


def test_with_several_tasks_the_page_asks_for_the_task_before_offering_labels(
    client, task, other_task, reviewer
) -> None:
    client.force_login(reviewer)
    body = client.get("/rules/new/").content.decode()
    assert "For which task?" in body and "Escalate" not in body and 'name="label"' not in body
    body = client.get("/rules/new/?task=escalation").content.decode()
    assert '<option value="Escalate"' in body and '<option value="Entailment"' not in body


def test_a_hand_written_rule_cites_examples_found_by_a_word_and_gets_their_support(client, task, reviewer) -> None:
    staff = example(task, 1, premise="The recipient may share it with its staff.")
    example(task, 2, premise="Oral disclosures are excluded.", gold="Contradiction")
    also = example(task, 3, premise="Staff of affiliates may see it.")
    client.force_login(reviewer)
    fields = {"task": task.name, "text": "If staff may see it, then Entailment", "label": "Entailment", "reason": ""}
    body = client.post("/rules/new/?task=nda-demo", fields | {"action": "find", "find": "staff"}).content.decode()
    assert f'value="{staff.pk}"' in body and f'value="{also.pk}"' in body and "Oral disclosures" not in body
    assert 'value="If staff may see it, then Entailment"' in body or "If staff may see it, then Entailment" in body
    assert not Rule.objects.exists()

    response = client.post("/rules/new/?task=nda-demo",
                           fields | {"action": "save", "examples": [staff.pk, also.pk], "password": "pw-rita"})
    rule = Rule.objects.get()
    assert response.status_code == 302
    assert rule.support == 2 and set(rule.examples.all()) == {staff, also}
    assert rule.label_balance == {"Entailment": 2}


def test_an_example_of_another_task_cannot_be_cited(client, task, other_task, reviewer) -> None:
    stranger = example(other_task, 9, premise="A ticket")
    client.force_login(reviewer)
    fields = {"task": task.name, "text": "If x, then Entailment", "label": "Entailment", "examples": [stranger.pk]}
    response = client.post("/rules/new/?task=nda-demo", fields | {"action": "save", "password": "pw-rita"})
    assert response.status_code == 400 and "is not an example of this task" in response.content.decode()
    assert not Rule.objects.exists()
