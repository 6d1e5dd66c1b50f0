"""Every service that writes an audited model appends to the ledger, in the same transaction."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from evaluation.models import ApiToken
from evaluation.production.api_tokens import api_token_create, api_token_revoke
from pldreview.ledger import row_facts
from pldreview.ledger_verify import audited_models
from pldreview.models import LedgerEntry
from rules.datasets.dataset_import import dataset_import
from tests.pldreview.ledgerkit import audited_world
from tests.support.signatures import sign_revocation

pytestmark = pytest.mark.django_db


def _snapshots() -> dict[tuple[str, str], list[dict]]:
    found: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in LedgerEntry.objects.order_by("sequence"):
        found[(entry.object_type, entry.object_id)].append(json.loads(entry.payload)["facts"])
    return found


def test_every_history_record_written_by_the_services_has_its_ledger_entry(
    task, reviewer, second_reviewer, admin_user, auditor  # noqa: ANN001
) -> None:
    audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    snapshots = _snapshots()
    checked = 0
    for model in audited_models():
        for record in model.history.order_by("history_date", "history_id"):
            facts = row_facts(record.instance)
            label = model._meta.label_lower
            assert facts in snapshots[(label, str(record.instance.pk))], f"{label} {record.instance.pk}: {facts}"
            checked += 1
        for row in model.objects.all():
            history = model.history.filter(**{model._meta.pk.attname: row.pk}).count()
            label = model._meta.label_lower
            entries = [f for f in snapshots[(label, str(row.pk))] if f.keys() == row_facts(row).keys()]
            assert len(entries) == history, f"{label} {row.pk}: {len(entries)} entries, {history} records"
    assert checked > 20


def test_compile_seal_and_status_changes_are_named_events(task, reviewer, second_reviewer, admin_user, auditor) -> None:  # noqa: ANN001
    world = audited_world(task, reviewer, second_reviewer, admin_user, auditor)
    events = list(LedgerEntry.objects.filter(object_type="rules.promptversion", object_id=str(world.version.pk))
                  .values_list("event", flat=True))
    assert events[:2] == ["prompt_version.compiled", "prompt_version.sealed"]
    assert "promptversion.changed" in events  # production status
    assert LedgerEntry.objects.filter(event="promotion.created", object_id=str(world.promotion.pk)).exists()


def test_api_tokens_created_and_revoked_are_ledgered(admin_user, reviewer) -> None:  # noqa: ANN001
    token, raw_value = api_token_create(user=reviewer, name="ci", created_by=admin_user)
    api_token_revoke(token=token, user=admin_user, signature=sign_revocation(admin_user, token))
    entries = list(LedgerEntry.objects.filter(object_type="evaluation.apitoken", object_id=str(token.pk)))
    assert [e.event for e in entries] == ["api_token.created", "api_token.revoked"]
    facts = [json.loads(e.payload)["facts"] for e in entries]
    assert facts[0]["token_hash"] == ApiToken.hash_token(raw_value) and facts[0]["revoked_at"] is None
    assert facts[1]["revoked_at"] is not None and entries[1].actor_name == admin_user.username


def test_a_dataset_import_is_ledgered_with_the_files_hash(tmp_path, admin_user) -> None:  # noqa: ANN001
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"clause {n}", "label": "A" if n % 2 else "B"}) for n in range(10)))
    record = dataset_import(task_name="tiny", fmt="jsonl", path_or_file=data, user=admin_user, split="train")
    entry = LedgerEntry.objects.get(event="dataset.imported")
    facts = json.loads(entry.payload)["facts"]
    assert facts["source_sha256"] == record.source_sha256 and facts["n_added"] == 10
    assert LedgerEntry.objects.filter(event="task.created", object_id=str(record.task_id)).exists()
