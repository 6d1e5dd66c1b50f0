"""Import a dataset file into a task from the command line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rules.datasets.dataset_import import dataset_import, import_summary, task_define
from rules.datasets.parsers import DEFAULT_LABEL_FIELD, FORMATS, FieldMap
from rules.models import Split


class Command(BaseCommand):
    help = (
        "Import a dataset file into a task (created if it does not exist). The file is imported whole or "
        "refused whole; examples already stored are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The dataset file")
        parser.add_argument("--task", required=True, help="Task name (a slug), e.g. contractnli-test")
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--split", choices=Split.values, help="Put every example in this split")
        where.add_argument(
            "--split-seed", type=int, help="Split 60/20/20 train/dev/test, stratified, with this seed (default 0)"
        )
        parser.add_argument(
            "--field", action="append", default=[], metavar="TASK_FIELD=COLUMN",
            help="jsonl/csv: read the task field from this column (repeatable); default: same-named columns",
        )
        parser.add_argument("--label-field", default=DEFAULT_LABEL_FIELD, help="jsonl/csv: the gold label column")
        parser.add_argument("--id-field", default="", help="jsonl/csv: a record id column (kept as the source ref)")
        parser.add_argument("--group-field", default="", help="jsonl/csv: rows with equal values stay in one split")
        parser.add_argument(
            "--task-definition", type=Path,
            help="JSON file with name, title, description, labels and input_fields, used to create the task",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["task_definition"]:
                definition = json.loads(options["task_definition"].read_text())
                definition["name"] = options["task"]
                task_define(definition=definition)
            field_map = FieldMap.parse(
                options["field"],
                label=options["label_field"],
                id=options["id_field"],
                group=options["group_field"],
            )
            record = dataset_import(
                task_name=options["task"],
                fmt=options["fmt"],
                path_or_file=options["path"],
                split=options["split"],
                split_seed=options["split_seed"],
                field_map=field_map,
            )
        except (ValidationError, OSError, json.JSONDecodeError) as exc:
            raise CommandError(_message(exc)) from exc
        summary = import_summary(record)
        how = f"split {record.split}" if record.split else f"split seed {record.split_seed}"
        self.stdout.write(
            self.style.SUCCESS(
                f"{record.source_name} → task {record.task.name}: {record.n_records:,} records, "
                f"{record.n_added:,} added, {record.n_skipped:,} already present ({how})."
            )
        )
        if record.n_added:
            labels = ", ".join(f"{name} {n:,}" for name, n in summary["labels"].items())
            splits = ", ".join(f"{name} {n:,}" for name, n in summary["splits"].items())
            self.stdout.write(f"Added by label: {labels}")
            self.stdout.write(f"Added by split: {splits}")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)
