from __future__ import annotations

from django.apps import AppConfig


class RulesConfig(AppConfig):
    name = "rules"
    verbose_name = "Rules"

    def ready(self) -> None:
        import rules.jobs  # noqa: F401 - registers every job handler of the app
        from pldreview.accounts.panels import register_user_panel
        from pldreview.jobs import job_scope_register
        from rules.membership import jobs_of_visible_tasks, user_tasks_panel

        job_scope_register(jobs_of_visible_tasks)
        register_user_panel(user_tasks_panel)
