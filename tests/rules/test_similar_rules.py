"""Rules like this one (rule page) and search by a sentence when no rule has all its words (review queue)."""
from __future__ import annotations

import pytest

from rules.review.similar import rules_closest_to, similar_rules
from tests.support.factories import teacher_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def rules(task) -> dict[str, object]:
    return {
        "employees": teacher_rule(task, text="If the clause lets the recipient share information with its employees, "
                                  "then Entailment"),
        "staff": teacher_rule(task, text="If the recipient may share the information with employees who need it, "
                              "then Entailment"),
        "return": teacher_rule(task, text="If the clause says nothing about returning materials, then NotMentioned",
                               label="NotMentioned"),
        "court": teacher_rule(task, text="If a court order compels disclosure, then Entailment"),
    }


def test_the_closest_rule_in_meaning_comes_first_and_a_rule_is_not_its_own_match(rules) -> None:
    found = similar_rules(rules["employees"])
    assert found[0].rule == rules["staff"]
    assert rules["employees"] not in [item.rule for item in found]
    assert all(earlier.similarity >= later.similarity for earlier, later in zip(found, found[1:], strict=False))


def test_the_rule_page_lists_similar_rules_with_their_status(client, reviewer, rules) -> None:
    client.force_login(reviewer)
    page = client.get(f"/rules/{rules['employees'].pk}/").content.decode()
    section = page[page.index('id="similar-title"'):page.index("</section>", page.index('id="similar-title"'))]
    assert f'href="/rules/{rules["staff"].pk}/"' in section and "Pending" in section
    assert f'href="/rules/{rules["employees"].pk}/"' not in section


def test_a_sentence_no_rule_matches_word_for_word_is_ranked_by_meaning(client, reviewer, task, rules) -> None:
    sentence = "may the recipient share secrets with its employees"
    top_two = {item.rule for item in rules_closest_to(sentence, task=task)[:2]}
    assert top_two == {rules["employees"], rules["staff"]}

    client.force_login(reviewer)
    page = client.get("/review/", {"task": task.name, "q": sentence}).content.decode()
    assert "No rule has these words; closest in meaning" in page  # no rule has every word ("secrets")
    closest = page[page.index('id="closest-in-meaning"'):]
    assert f'href="/rules/{rules["employees"].pk}/"' in closest and f'href="/rules/{rules["staff"].pk}/"' in closest
    assert f'href="/rules/{rules["return"].pk}/"' not in closest  # shares no word: below the threshold
    # A word search that finds rules shows them, not the meaning list.
    words = client.get("/review/", {"task": task.name, "q": "employees"}).content.decode()
    assert "closest in meaning" not in words
