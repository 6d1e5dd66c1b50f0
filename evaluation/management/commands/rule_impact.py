"""Measure each rule's impact on a prompt version's decisions (leave-one-out), in the foreground, resumably."""
from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from evaluation.models import RuleImpactRun
from evaluation.runs.impact import rule_impact_create, rule_impact_sentence
from evaluation.runs.impact_runs import rule_impact_job_for_command
from pldreview.jobs import job_execute
from pldreview.models import Job
from rules.models import PromptVersion, Split


class Command(BaseCommand):
    help = (
        "Decide a sample of a split with a prompt version's whole rule set and with each rule left out; report "
        "per rule the decisions it changes, right→wrong, wrong→right and the change in macro-F1 (95% CI). "
        "Run it again with the same arguments to resume an interrupted run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", type=int, help="The id of a compiled prompt version")
        parser.add_argument("--split", default=Split.DEV, choices=[Split.DEV, Split.TEST, Split.TRAIN])
        parser.add_argument("--sample", type=int, help="Decide at most N examples (whole shared contexts first)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--model", help="A GGUF file (default: PLD_STUDENT_MODEL_PATH or the bundled model)")
        parser.add_argument("--json", action="store_true", help="Print the results as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        version = PromptVersion.objects.filter(pk=options["version"]).first()
        if version is None:
            raise CommandError(f"There is no prompt version with id {options['version']}.")
        run = (
            RuleImpactRun.objects.filter(prompt_version=version, split=options["split"], sample=options["sample"],
                                         seed=options["seed"])
            .exclude(status=RuleImpactRun.Status.FINISHED).order_by("-created_at").first()
        )
        if run is None:
            try:
                run = rule_impact_create(prompt_version=version, split=options["split"], sample=options["sample"],
                                         seed=options["seed"], model_path=options["model"])
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
        else:
            self.stdout.write(f"Resuming rule impact {run.pk} ({run.decisions.count()} decisions stored)")
        job = rule_impact_job_for_command(run)
        job = job_execute(job.pk)
        run.refresh_from_db()
        if job.state != Job.State.SUCCEEDED or run.status != RuleImpactRun.Status.FINISHED:
            raise CommandError(f"Rule impact {run.pk} {run.status}: {job.error or job.message or run.error} "
                               "(run the command again to resume)")
        if options["json"]:
            self.stdout.write(json.dumps({"run_id": run.pk, **run.results}, ensure_ascii=False))
            return
        results = run.results
        self.stdout.write(f"Rule impact {run.pk} of {version}: {results['full']['n']} examples of {run.split}, "
                          f"macro-F1 with every rule {results['full']['macro_f1']:.3f}")
        if results.get("warning"):
            self.stdout.write(self.style.WARNING(results["warning"]))
        for row in results["rules"]:
            self.stdout.write(f"  Rule {row['number']} [{row['label']}]: {rule_impact_sentence(row)}")
        summary = results["set"]
        self.stdout.write(f"Changes nothing: {summary['dead_weight'] or 'none'}; hurts: {summary['hurts'] or 'none'}; "
                          f"carries most decisions: {summary['carries'] or 'none'}")
