# Written by hand: the SQLite full-text index of the review search (rules/search.py), kept in sync by triggers.
# One FTS5 row per thing a rule can be found by: the rule itself (text, topic, label, which-rule-wins note),
# each decision on it (reviewer's username and reason) and each cited example (its text). Triggers keep it in
# step with every write, whichever code path makes it (services, admin, raw SQL). PostgreSQL needs no index
# table: search_rules() builds its tsvector in the query.
from django.db import migrations

CREATE = [
    "CREATE VIRTUAL TABLE rules_search USING fts5(rule_id UNINDEXED, kind UNINDEXED, ref UNINDEXED, body,"
    " tokenize = 'unicode61 remove_diacritics 2')",
    """CREATE TRIGGER rules_search_rule_insert AFTER INSERT ON rules_rule BEGIN
         INSERT INTO rules_search (rule_id, kind, ref, body)
         VALUES (NEW.id, 'rule', NEW.id, NEW.text || ' ' || NEW.topic || ' ' || NEW.label || ' ' || NEW.precedence_note);
       END""",
    """CREATE TRIGGER rules_search_rule_update AFTER UPDATE OF text, topic, label, precedence_note ON rules_rule BEGIN
         DELETE FROM rules_search WHERE rule_id = OLD.id AND kind = 'rule';
         INSERT INTO rules_search (rule_id, kind, ref, body)
         VALUES (NEW.id, 'rule', NEW.id, NEW.text || ' ' || NEW.topic || ' ' || NEW.label || ' ' || NEW.precedence_note);
       END""",
    """CREATE TRIGGER rules_search_rule_delete AFTER DELETE ON rules_rule BEGIN
         DELETE FROM rules_search WHERE rule_id = OLD.id;
       END""",
    """CREATE TRIGGER rules_search_decision_insert AFTER INSERT ON rules_decision BEGIN
         INSERT INTO rules_search (rule_id, kind, ref, body)
         VALUES (NEW.rule_id, 'decision', NEW.id,
                 COALESCE((SELECT username FROM auth_user WHERE id = NEW.reviewer_id), '') || ' ' || NEW.reason);
       END""",
    """CREATE TRIGGER rules_search_decision_delete AFTER DELETE ON rules_decision BEGIN
         DELETE FROM rules_search WHERE kind = 'decision' AND ref = OLD.id;
       END""",
    """CREATE TRIGGER rules_search_example_insert AFTER INSERT ON rules_rule_examples BEGIN
         INSERT INTO rules_search (rule_id, kind, ref, body)
         VALUES (NEW.rule_id, 'example', NEW.example_id,
                 COALESCE((SELECT inputs FROM rules_example WHERE id = NEW.example_id), ''));
       END""",
    """CREATE TRIGGER rules_search_example_delete AFTER DELETE ON rules_rule_examples BEGIN
         DELETE FROM rules_search WHERE kind = 'example' AND rule_id = OLD.rule_id AND ref = OLD.example_id;
       END""",
    # What existed before the index.
    """INSERT INTO rules_search (rule_id, kind, ref, body)
       SELECT id, 'rule', id, text || ' ' || topic || ' ' || label || ' ' || precedence_note FROM rules_rule""",
    """INSERT INTO rules_search (rule_id, kind, ref, body)
       SELECT d.rule_id, 'decision', d.id, COALESCE(u.username, '') || ' ' || d.reason
       FROM rules_decision d LEFT JOIN auth_user u ON u.id = d.reviewer_id""",
    """INSERT INTO rules_search (rule_id, kind, ref, body)
       SELECT re.rule_id, 'example', re.example_id, COALESCE(e.inputs, '')
       FROM rules_rule_examples re JOIN rules_example e ON e.id = re.example_id""",
]
DROP = [
    "DROP TRIGGER IF EXISTS rules_search_rule_insert",
    "DROP TRIGGER IF EXISTS rules_search_rule_update",
    "DROP TRIGGER IF EXISTS rules_search_rule_delete",
    "DROP TRIGGER IF EXISTS rules_search_decision_insert",
    "DROP TRIGGER IF EXISTS rules_search_decision_delete",
    "DROP TRIGGER IF EXISTS rules_search_example_insert",
    "DROP TRIGGER IF EXISTS rules_search_example_delete",
    "DROP TABLE IF EXISTS rules_search",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        for statement in statements:
            schema_editor.execute(statement)
    return run


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0006_decision_create_label_written_by_hand"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
