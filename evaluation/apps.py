from __future__ import annotations

from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        # rules never imports evaluation, so evaluation adds its figures to the rule pages from here.
        from evaluation.rule_stats import register
        from evaluation.trends import trend_panel
        from rules.panels import register_task_panel

        register()
        register_task_panel(trend_panel)
