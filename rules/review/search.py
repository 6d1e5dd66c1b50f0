"""Free-text search of rules: by rule text, topic, label, cited example text, reviewer and decision reason.

One function for every page (queue, rule set, review log). On SQLite it reads the FTS5 table
``rules_search`` that triggers keep in sync (migration 0004_rule_search_index); on PostgreSQL it builds a
weighted tsvector in the query (django.contrib.postgres.search). Either way: one query, best match first.
"""
from __future__ import annotations

import re

from django.db import connection
from django.db.models import F, FloatField, OuterRef, QuerySet, Subquery, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce

from rules.models import Decision, Example, Rule, Task

# Letters and digits only: no query syntax of either database gets through.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 12


def search_words(query: str) -> list[str]:
    """Return the words of a query, ignoring punctuation and operators, at most MAX_WORDS of them."""
    return _WORD.findall(query or "")[:MAX_WORDS]


def search_rules(task: Task | None, query: str, rules: QuerySet[Rule] | None = None) -> QuerySet[Rule]:
    """Return the rules (of the task, or all) matching every word of the query, best match first.

    Each rule carries ``search_order``: ascending is best first on either database.
    """
    rules = Rule.objects.all() if rules is None else rules
    if task is not None:
        rules = rules.filter(task=task)
    words = search_words(query)
    if not words:
        # Punctuation or operators alone ("-", "..") search for nothing; the column callers order by must still exist.
        return rules.none().annotate(search_order=Value(0.0, output_field=FloatField()))
    if connection.vendor == "postgresql":
        return _search_postgresql(rules, words)
    return _search_sqlite(rules, words)


def _fts5_word(word: str) -> str:
    # Quoted, so no FTS5 operator gets through; a prefix, so "shar" finds "sharing".
    return '"' + word.replace('"', '""') + '"*'


def _search_sqlite(rules: QuerySet[Rule], words: list[str]) -> QuerySet[Rule]:
    # The index has one row per rule, decision and cited example; a rule matches when each word is in one of its
    # rows (a word of the text and a word of a reason together find it).
    for word in words:
        rules = rules.filter(
            pk__in=RawSQL("SELECT rule_id FROM rules_search WHERE rules_search MATCH %s", [_fts5_word(word)])
        )
    # bm25 is lower for a better match; a rule ranks by its best row (bm25 may not sit inside an aggregate).
    rank = RawSQL(
        "SELECT bm25(rules_search) FROM rules_search WHERE rules_search MATCH %s"
        " AND rules_search.rule_id = rules_rule.id ORDER BY bm25(rules_search) LIMIT 1",
        [" OR ".join(_fts5_word(word) for word in words)],
    )
    return rules.annotate(search_order=Coalesce(rank, Value(0.0), output_field=FloatField())).order_by(
        "search_order", "-support", "id"
    )


def _search_postgresql(rules: QuerySet[Rule], words: list[str]) -> QuerySet[Rule]:
    from django.contrib.postgres.aggregates import StringAgg
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    def joined(queryset: QuerySet, expression: F | Cast) -> Subquery:
        text = (
            queryset.order_by().values("rule")
            .annotate(all=StringAgg(expression, " ", output_field=TextField())).values("all")
        )
        return Coalesce(Subquery(text, output_field=TextField()), Value(""), output_field=TextField())

    decisions = Decision.objects.filter(rule=OuterRef("pk"))
    reviewers = joined(decisions, Cast("reviewer__username", TextField()))
    reasons = joined(decisions, Cast("reason", TextField()))
    example_text = Coalesce(
        Subquery(
            Example.objects.filter(rules=OuterRef("pk")).order_by().values("rules")
            .annotate(all=StringAgg(Cast("inputs", TextField()), " ", output_field=TextField())).values("all"),
            output_field=TextField(),
        ),
        Value(""),
        output_field=TextField(),
    )
    vector = (
        SearchVector(Cast("text", TextField()), weight="A", config="simple")
        + SearchVector(
            Cast("topic", TextField()), Cast("label", TextField()), Cast("precedence_note", TextField()),
            weight="B", config="simple",
        )
        + SearchVector(reviewers, reasons, weight="C", config="simple")
        + SearchVector(example_text, weight="D", config="simple")
    )
    # Every word must match, each as a prefix ("shar" finds "sharing"), like the SQLite search.
    terms = " & ".join(f"{word}:*" for word in words)
    search = SearchQuery(terms, search_type="raw", config="simple")
    return (
        rules.annotate(search_vector=vector)
        .filter(search_vector=search)
        .annotate(search_order=-SearchRank(F("search_vector"), search))
        .order_by("search_order", "-support", "id")
    )

